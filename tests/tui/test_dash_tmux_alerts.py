"""The Alerts screen of ``llmgw dash --url`` driven in tmux while an ``amtool`` storm fires alerts
through a real Alertmanager (Debian ``prometheus-alertmanager``) into a real ``llmgw serve``,
whose worker classifies them through its router to a real ``llmgw emulate openai``.

A person watches the list grow live and coloured by severity, filters it by severity and text,
opens an alert (timeline, the classification marked as AI output), acknowledges it and asks for
a re-classification (each confirmed; the audit log says so with source ``tui``), sees the storm
resolve, and reads the list at 80x24. The panes go to ``docs/tui-capture-alerts.txt``. Every wait
is bounded; its own tmux server (``-L``); skipped without tmux or Alertmanager unless CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI
from tests.tmux import Tmux, pane_size
from tests.tui.test_dash_tmux_remote import _port, _wait_http

LLMGW = str(Path(sys.executable).with_name("llmgw"))
DOCS = Path(__file__).resolve().parents[2] / "docs"
EMU_KEY = "sk-emu-tmux-alerts"
WEBHOOK_TOKEN = "whk-tmux-alerts-0123456789abcdef"
STORM = [  # (alertname, severity, instances): 19 occurrences in all
    ("HighCPU", "critical", 6),
    ("DiskFull", "warning", 6),
    ("ApiErrors", "error", 4),
    ("CertExpiry", "info", 3),
]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (apt-get install -y prometheus-alertmanager)"
        if IN_CI:
            pytest.fail(msg + " (CI=true: required)")
        pytest.skip(msg)
    return path


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An emulator, a server classifying alerts through it, an Alertmanager delivering to the
    server's webhook, an admin key; everything stopped at the end."""
    am_bin, amtool = _tool("prometheus-alertmanager"), _tool("amtool")
    emu_port, port, am_port = _port(), _port(), _port()
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n\n'
        "[usage]\nflush_interval = 0.05\n\n"
        f'[alerts]\nwebhook_token = "{WEBHOOK_TOKEN}"\npoll_interval = 0.2\n\n'
        '[aliases]\nalerts-classifier = ["openai/gpt-4o-mini"]\n\n'
        '[[providers]]\nname = "openai"\nkind = "openai"\napi_key_env = "EMU_KEY"\n'
        f'base_url = "http://127.0.0.1:{emu_port}/v1"\nmodels = ["gpt-4o-mini"]\n'
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")},
        "LLMGW_HOME": os.environ["LLMGW_HOME"],
        "EMU_KEY": EMU_KEY,
    }

    def llmgw(*args: str) -> str:
        return subprocess.run(
            [LLMGW, "--config", str(cfg), *args],
            capture_output=True, text=True, timeout=120, check=True, env=env,
        ).stdout  # fmt: skip

    llmgw("users", "create", "-e", "ops@example.com", "--role", "admin")
    admin = json.loads(llmgw("keys", "create", "-n", "ops", "--user", "ops@example.com", "--json"))
    token_file = tmp_path / "webhook-token"
    token_file.write_text(WEBHOOK_TOKEN)
    am_cfg = tmp_path / "am.yml"
    am_cfg.write_text(
        "route:\n  receiver: llmgw\n  group_by: [alertname]\n"
        "  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: llmgw\n    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{port}/alerts/webhook\n"
        "        send_resolved: true\n        max_alerts: 0\n"
        "        http_config:\n          authorization:\n            type: Bearer\n"
        f"            credentials_file: {token_file}\n"
    )
    check = subprocess.run([amtool, "check-config", str(am_cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for name, argv in (
            ("emulator", [LLMGW, "emulate", "openai", "--port", str(emu_port),
                          "--api-key", EMU_KEY]),
            ("serve", [LLMGW, "--config", str(cfg), "serve", "--port", str(port)]),
            ("alertmanager", [am_bin, f"--config.file={am_cfg}",
                              f"--storage.path={tmp_path / 'am'}",
                              f"--web.listen-address=127.0.0.1:{am_port}",
                              "--cluster.listen-address=",
                              f"--web.external-url=http://127.0.0.1:{am_port}"]),
        ):  # fmt: skip
            log = (tmp_path / f"{name}.log").open("wb")
            logs.append(log)
            procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
        _wait_http(f"http://127.0.0.1:{emu_port}/v1/models", procs[0])
        _wait_http(f"http://127.0.0.1:{port}/readyz", procs[1])
        _wait_http(f"http://127.0.0.1:{am_port}/-/ready", procs[2])
        yield {
            "url": f"http://127.0.0.1:{port}",
            "am": f"http://127.0.0.1:{am_port}",
            "amtool": amtool,
            "admin": str(admin["key"]),
            "home": os.environ["LLMGW_HOME"],
        }
    finally:
        _stop(procs)
        for log in logs:
            log.close()


def _amtool(stack: dict[str, str], name: str, severity: str, node: int, *extra: str) -> None:
    """``amtool alert add``: Alertmanager then notifies the webhook on its own schedule."""
    done = subprocess.run(
        [stack["amtool"], f"--alertmanager.url={stack['am']}", "alert", "add", name,
         f"severity={severity}", "job=node", f"instance=node{node}:9100",
         f"--annotation=summary={name} on node{node}",
         f"--annotation=description={name} fired by the tmux storm", *extra],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_alerts_screen_in_tmux_during_an_amtool_storm(stack: dict[str, str]) -> None:
    tmux = Tmux("alerts")
    keys = tmux.keys

    def wait_for(check: Callable[[str], bool] | str, what: str, limit: float = 90) -> str:
        return tmux.wait_for(check, what, limit)  # an amtool storm on a loaded machine is slow

    url, admin = stack["url"], stack["admin"]
    captures: list[tuple[str, str]] = []

    def resize(width: int, height: int) -> None:
        # Manual: a detached session would otherwise go back to default-size (80x24).
        for args in (
            ("set-option", "-g", "window-size", "manual"),
            ("resize-window", "-t", "dash", "-x", str(width), "-y", str(height)),
        ):
            tmux.run(*args)
        size = tmux.run(
            "display-message", "-p", "-t", "dash", "#{window_width}x#{window_height}"
        ).strip()
        assert size == f"{width}x{height}", size

    def counts(pane: str) -> tuple[int, int]:
        found = re.search(r"(\d+)\+? alerts, (\d+) firing", pane)
        return (int(found.group(1)), int(found.group(2))) if found else (-1, -1)

    start = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fired: list[tuple[str, str, int]] = []

    def storm() -> None:  # amtool, one alert after the other, interleaved
        for node in range(1, max(n for _, _, n in STORM) + 1):
            for name, severity, count in STORM:
                if node <= count:
                    _amtool(stack, name, severity, node, f"--start={start}")
                    fired.append((name, severity, node))

    cmd = f"{LLMGW} dash --url {url} --interval 0.5; echo EXIT=$?; sleep 60"
    tmux.start(cmd, size=(160, 48), env={"LLMGW_HOME": str(stack["home"]), "LLMGW_TOKEN": admin})
    sender = threading.Thread(target=storm, daemon=True)
    try:
        wait_for("Providers", "the dashboard")
        resize(160, 48)
        keys("8")
        shown = wait_for("status: any", "the Alerts screen")
        assert pane_size(shown) == (160, 48), shown  # drawn at the pane's size, not 80x24
        sender.start()
        # The list grows while the storm goes on; the classifier's answers come in.
        first = wait_for(lambda s: counts(s)[0] >= 2, "the first alerts")
        total = sum(n for _, _, n in STORM)
        later = wait_for(
            lambda s: counts(s)[0] > counts(first)[0] and "AI critical" in s, "more, classified"
        )
        captures.append(("Alerts (8) during the amtool storm: the list grows live", later))
        sender.join(120)
        assert not sender.is_alive() and len(fired) == total
        shown = wait_for(
            lambda s: counts(s) == (total, total) and "pending" not in s,
            "every alert stored and classified",
        )
        captures.append((f"Alerts (8) after the storm: {total} firing, all classified", shown))

        # Severity filter: critical only (asked of the server).
        keys("v")
        shown = wait_for(
            lambda s: "severity: critical" in s and counts(s) == (6, 6) and "DiskFull" not in s,
            "only critical alerts",
        )
        captures.append(("v: severity critical", shown))
        keys("v", "v", "v", "v")  # error, warning, info, any
        wait_for(lambda s: "severity: any" in s and counts(s)[0] == total, "every severity")

        # Text filter: one node's alerts.
        keys("/")
        wait_for("text in the name", "the filter box")
        keys("-l", "node5")
        shown = wait_for(
            lambda s: "text: node5" in s and counts(s)[0] == 2, "the two alerts of node5"
        )
        assert "HighCPU" in shown and "DiskFull" in shown and "ApiErrors" not in shown
        captures.append(("/ node5: the alerts that mention node5", shown))
        keys("Enter")  # back to the table, the filter kept
        time.sleep(1)  # the focus moves once the Enter is handled; the next one is the table's

        # Open the first (HighCPU or DiskFull on node5): timeline and classification.
        keys("Enter")
        shown = wait_for(
            lambda s: (
                "AI-generated classification" in s
                and re.search(r"\d\d:\d\d:\d\d  fired", s) is not None
                and re.search(r"\d\d:\d\d:\d\d  classified  by llm", s) is not None
            ),
            "the open alert with its timeline",
        )
        assert "AI output, verify before acting" in shown
        assert "gpt-4o-mini" in shown and "not acknowledged" in shown
        opened = re.search(r"#(\d+) (HighCPU|DiskFull)", shown)
        assert opened is not None, shown
        alert_id, name = int(opened.group(1)), opened.group(2)
        captures.append(("Enter: the alert, its timeline and its AI classification", shown))

        # Acknowledge, confirmed in the dialog, with a note.
        keys("a")
        shown = wait_for(f"Acknowledge #{alert_id} {name}", "the acknowledge dialog")
        captures.append(("a: the acknowledgement asks first", shown))
        keys("-l", "on it from tmux")
        keys("Enter")
        shown = wait_for("acknowledged by ops@example.com", "the acknowledgement")
        assert "note: on it from tmux" in shown

        # Re-classify, confirmed.
        keys("c")
        wait_for(f"Re-classify #{alert_id} {name}?", "the re-classify confirmation")
        keys("y")
        shown = wait_for(
            lambda s: "reclassify_requested" in s and s.count("classified  by llm") >= 2,
            "the new classification",
        )
        captures.append(("a, then c: acknowledged and classified again", shown))

        # The record and the audit log, as the API reports them.
        auth = {"Authorization": f"Bearer {admin}"}
        one = httpx.get(f"{url}/api/alerts/{alert_id}", headers=auth, timeout=10).json()
        assert one["acked_by"] == "ops@example.com" and one["note"] == "on it from tmux"
        audit = httpx.get(
            f"{url}/admin/v1/audit", params={"action": "alerts.*"}, headers=auth, timeout=10
        ).json()["data"]
        assert sorted((a["action"], a["target"], a["source"]) for a in audit) == [
            ("alerts.ack", str(alert_id), "tui"),
            ("alerts.reclassify", str(alert_id), "tui"),
        ]

        # The storm resolves: the list says so.
        keys("Escape")  # back to the list
        keys("Escape")  # clear the text filter
        wait_for(lambda s: counts(s)[0] == total and "text: any" in s, "the whole list again")
        end = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for name, severity, count in STORM[:2]:
            for node in range(1, count + 1):
                _amtool(stack, name, severity, node, f"--start={start}", f"--end={end}")
        shown = wait_for(lambda s: counts(s) == (total, total - 12), "12 alerts resolved")
        assert "resolved" in shown
        captures.append(("HighCPU and DiskFull resolved through amtool", shown))

        # The same screen at 80x24.
        resize(80, 24)
        keys("s")  # firing only
        shown = wait_for(
            lambda s: "status: firing" in s and counts(s) == (total - 12, total - 12),
            "the firing alerts at 80x24",
        )
        assert pane_size(shown) == (80, 24), shown
        captures.append(("At 80x24, s: firing only", shown))
        keys("q")
        wait_for("EXIT=0", "a clean exit", 30)
    finally:
        tmux.close()
    out = [
        "# llmgw dash --url, Alerts screen (8), while amtool fires alerts through a real\n"
        "# Alertmanager into llmgw serve (classified through its router by llmgw emulate openai);\n"
        "# tmux 160x48, then 80x24; captured by tests/tui/test_dash_tmux_alerts.py\n"
    ]
    for title, pane in captures:
        out.append(f"\n## {title}\n\n{pane.rstrip()}\n")
    text = "".join(out)
    assert admin not in text and WEBHOOK_TOKEN not in text  # AUTH-7: no secret in the captures
    (DOCS / "tui-capture-alerts.txt").write_text(text)
