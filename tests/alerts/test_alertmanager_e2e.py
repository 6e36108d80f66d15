"""The real Alertmanager (Debian ``prometheus-alertmanager`` 0.25) delivers to a real
``llmgw serve``: alerts fired and resolved with ``amtool`` on an HA pair of two Alertmanagers
show up once each with their transitions, classified through the router to the emulated
provider, with the usage row attributed to the alert service (IN-6 end to end)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from tests.alerts.amdata import WEBHOOK_TOKEN
from tests.conftest import IN_CI

LLMGW = str(Path(sys.executable).with_name("llmgw"))
pytestmark = pytest.mark.slow


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (apt-get install -y prometheus-alertmanager)"
        if IN_CI:
            pytest.fail(msg + " (CI=true: required)")
        pytest.skip(msg)
    return path


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(log.read_text(errors="replace")[-3000:])
        time.sleep(0.1)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    yield running
    for p in running:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _rows(db_url: str, sql: str) -> list[dict[str, Any]]:
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            out = []
            for r in conn.execute(sa.text(sql)).mappings():
                row = dict(r)
                for k, v in row.items():
                    if isinstance(v, str) and v[:1] == "{":
                        row[k] = json.loads(v)
                out.append(row)
            return out
    finally:
        eng.dispose()


def _until(check: Any, limit: float = 90.0) -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.25)


def _serve(cfg: Path, home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``llmgw --config CFG serve --port PORT`` with ``LLMGW_HOME=home``, appending to ``log``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")},
        "LLMGW_HOME": str(home),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [LLMGW, "--config", str(cfg), "serve", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _am_config(tmp_path: Path, gw_port: int) -> Path:
    """An Alertmanager config sending every group to the gateway's webhook with its token."""
    token_file = tmp_path / "token"
    token_file.write_text(WEBHOOK_TOKEN)
    am_cfg = tmp_path / "am.yml"
    am_cfg.write_text(
        "global:\n  resolve_timeout: 5m\n"
        "route:\n  receiver: llmgw\n  group_by: [alertname]\n"
        "  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: llmgw\n    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{gw_port}/alerts/webhook\n"
        "        send_resolved: true\n        max_alerts: 0\n"
        "        http_config:\n          authorization:\n            type: Bearer\n"
        f"            credentials_file: {token_file}\n"
    )
    return am_cfg


def _alertmanager(
    am_bin: str, am_cfg: Path, tmp_path: Path, name: str, port: int,
    procs: list[subprocess.Popen[bytes]],
) -> str:  # fmt: skip
    """A ready Alertmanager on ``port`` (storage and log named ``name``); its URL."""
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        am = subprocess.Popen(
            [am_bin, f"--config.file={am_cfg}", f"--storage.path={tmp_path / name}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
             f"--web.external-url={url}"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    procs.append(am)
    _wait(f"{url}/-/ready", am, log)
    return url


def test_real_alertmanager_ha_pair_fire_and_resolve(
    tmp_path: Path, home: Path, llm: Any, procs: list[subprocess.Popen[bytes]]
) -> None:
    am_bin, amtool = _tool("prometheus-alertmanager"), _tool("amtool")
    db_url = f"sqlite:///{home / 'llmgw.db'}"
    eng = make_engine(db_url)
    upgrade(eng)
    eng.dispose()
    gw_port = _port()
    (tmp_path / "config.toml").write_text(
        f'[database]\nurl = "{db_url}"\n\n'
        "[alerts]\n"
        f'webhook_token = "{WEBHOOK_TOKEN}"\npoll_interval = 0.2\n\n'
        '[aliases]\nalerts-classifier = ["openai/gpt-4o-mini"]\n\n'
        "[[providers]]\n"
        'name = "openai"\nkind = "openai"\n'
        f'base_url = "{llm.base_url}"\n'
        'models = ["gpt-4o-mini"]\n'
        '[providers.prices."gpt-4o-mini"]\ninput = 0.15\noutput = 0.60\n'
    )
    log = tmp_path / "serve.log"
    gw = _serve(tmp_path / "config.toml", home, gw_port, log)
    procs.append(gw)
    _wait(f"http://127.0.0.1:{gw_port}/readyz", gw, log)

    am_cfg = _am_config(tmp_path, gw_port)
    check = subprocess.run([amtool, "check-config", str(am_cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    urls = []
    for i in range(2):  # an HA pair: each one gets the alerts and notifies on its own
        urls.append(_alertmanager(am_bin, am_cfg, tmp_path, f"am{i}", _port(), procs))

    start = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = ["HighCPU", "instance=node1:9100", "job=node", "severity=critical"]

    def amtool_add(*extra: str) -> None:
        for url in urls:
            r = subprocess.run(
                [amtool, f"--alertmanager.url={url}", "alert", "add", *labels,
                 "--annotation=summary=CPU high on node1", f"--start={start}", *extra],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr

    amtool_add()
    (alert,) = _until(lambda: _rows(db_url, "SELECT * FROM alerts WHERE cls_status = 'ok'"))
    assert alert["fingerprint"] == "03e24befa7b11611"  # Alertmanager's own, as sent
    end = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    amtool_add(f"--end={end}")
    _until(lambda: _rows(db_url, "SELECT id FROM alerts WHERE status = 'resolved'"))
    time.sleep(3)  # let any further flush of either peer arrive before counting
    alerts = _rows(db_url, "SELECT * FROM alerts")
    assert len(alerts) == 1, alerts  # one occurrence, whatever both peers sent
    kinds = [e["kind"] for e in _rows(db_url, "SELECT kind FROM alert_events ORDER BY id")]
    assert kinds.count("fired") == 1 and kinds.count("resolved") == 1
    deliveries = _rows(db_url, "SELECT copies, external_url FROM alert_deliveries")
    assert sum(d["copies"] for d in deliveries) > len(
        deliveries
    )  # the peer's copies were duplicates
    cls = alerts[0]["classification"]
    assert cls["model"] == "openai/gpt-4o-mini"
    gw.terminate()
    gw.wait(30)
    usage = _rows(db_url, "SELECT * FROM usage")
    assert [(u["endpoint"], u["provider"], u["metadata"]["service"]) for u in usage] == [
        ("alerts", "openai", "alerts")
    ]
    assert llm.stats.requests == 1


def test_silences_from_the_real_alertmanager_show_on_the_history(
    tmp_path: Path, home: Path, procs: list[subprocess.Popen[bytes]], cli: Any
) -> None:
    """A firing alert silenced with ``amtool silence add`` shows as silenced (who, until when,
    why) in the history and the CLI; expiring the silence clears it. Alertmanager never sends
    this in a webhook: llmgw asks its API (``alerts.alertmanager_urls``)."""
    am_bin, amtool = _tool("prometheus-alertmanager"), _tool("amtool")
    db_url = f"sqlite:///{home / 'llmgw.db'}"
    eng = make_engine(db_url)
    upgrade(eng)
    eng.dispose()
    gw_port, am_port = _port(), _port()
    am_url = f"http://127.0.0.1:{am_port}"
    (tmp_path / "config.toml").write_text(
        f'[database]\nurl = "{db_url}"\n\n[alerts]\nmode = "transparent"\n'
        f'webhook_token = "{WEBHOOK_TOKEN}"\npoll_interval = 0.2\n'
        f'alertmanager_urls = ["{am_url}"]\nsilence_interval = 1\n'
    )
    log = tmp_path / "serve.log"
    gw = _serve(tmp_path / "config.toml", home, gw_port, log)
    procs.append(gw)
    _wait(f"http://127.0.0.1:{gw_port}/readyz", gw, log)
    _alertmanager(am_bin, _am_config(tmp_path, gw_port), tmp_path, "am", am_port, procs)

    def amt(*args: str) -> str:
        r = subprocess.run([amtool, f"--alertmanager.url={am_url}", *args],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    amt("alert", "add", "DiskFull", "instance=node1:9100", "severity=warning",
        "--annotation=summary=disk full on node1")  # fmt: skip
    (alert,) = _until(lambda: _rows(db_url, "SELECT * FROM alerts"))
    assert alert["suppressed"] is None
    silence = amt("silence", "add", "alertname=DiskFull", "--duration=1h",
                  "--comment=disk swap tonight", "--author=ops@example.com")  # fmt: skip
    (row,) = _until(
        lambda: _rows(db_url, "SELECT suppressed FROM alerts WHERE suppressed IS NOT NULL")
    )
    sup = row["suppressed"]
    assert sup["state"] == "silenced" and sup["inhibited_by"] == []
    (by,) = sup["silenced_by"]
    assert (by["id"], by["created_by"], by["comment"]) == (
        silence,
        "ops@example.com",
        "disk swap tonight",
    )
    env_db = {"LLMGW_DATABASE__URL": db_url}
    shown = cli("alerts", "show", str(alert["id"]), env=env_db)
    assert shown.exit_code == 0, shown.stderr
    assert "SILENCED" in shown.stdout and "disk swap tonight" in shown.stdout
    listed = cli("alerts", "list", env={**env_db, "COLUMNS": "200"})
    assert "silenced" in listed.stdout
    amt("silence", "expire", silence)
    _until(lambda: _rows(db_url, "SELECT id FROM alerts WHERE suppressed IS NULL"))
    kinds = [e["kind"] for e in _rows(db_url, "SELECT kind FROM alert_events ORDER BY id")]
    assert kinds.count("silenced") == 1 and kinds.count("unsilenced") == 1
    assert kinds.index("silenced") < kinds.index("unsilenced")
