"""End to end: the real Alertmanager (Debian 0.25) -> ``llmgw serve`` -> classification through
the router -> the PagerDuty, Slack and Rootly emulators, fire then resolve; and ``kill -9`` of
the gateway while its three requests are in flight publishes nothing twice and loses nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from tests.alerts.amdata import WEBHOOK_TOKEN, am_alert, am_payload, later
from tests.alerts.conftest import CHANNEL, Emulators
from tests.alerts.test_alertmanager_e2e import (  # noqa: F401
    _alertmanager,
    _am_config,
    _port,
    _rows,
    _serve,
    _tool,
    _until,
    _wait,
    procs,
)

LLMGW = str(Path(sys.executable).with_name("llmgw"))
pytestmark = pytest.mark.slow


def _config(
    tmp_path: Path, db_url: str, emulators: Emulators, extra: str = "", tail: str = ""
) -> Path:
    t = emulators.targets()
    lines = [f'[database]\nurl = "{db_url}"\n', "[alerts]", f'webhook_token = "{WEBHOOK_TOKEN}"',
             "poll_interval = 0.2", "publish_backoff = 0.2", extra, ""]  # fmt: skip
    for target in t:
        lines.append("[[alerts.targets]]")
        lines += [f'{k} = "{v}"' for k, v in target.items()]
        lines.append("")
    cfg = tmp_path / "config.toml"
    cfg.write_text("\n".join(lines) + tail)
    return cfg


def _pubs(db_url: str, action: str, state: str = "sent") -> list[dict[str, Any]]:
    rows = _rows(db_url, "SELECT * FROM alert_publications ORDER BY id")
    return [r for r in rows if r["action"] == action and r["state"] == state]


def test_alertmanager_to_pagerduty_slack_and_rootly_fire_then_resolve(
    tmp_path: Path,
    home: Path,
    llm: Any,
    emulators: Emulators,
    procs: list[subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    am_bin, amtool = _tool("prometheus-alertmanager"), _tool("amtool")
    db_url = f"sqlite:///{home / 'llmgw.db'}"
    eng = make_engine(db_url)
    upgrade(eng)
    eng.dispose()
    gw_port, am_port = _port(), _port()
    tail = (
        '[aliases]\nalerts-classifier = ["openai/gpt-4o-mini"]\n\n'
        f'[[providers]]\nname = "openai"\nkind = "openai"\nbase_url = "{llm.base_url}"\n'
        'models = ["gpt-4o-mini"]\n'
    )
    cfg = _config(tmp_path, db_url, emulators, 'mode = "enriched"', tail)
    log = tmp_path / "serve.log"
    gw = _serve(cfg, home, gw_port, log)
    procs.append(gw)
    _wait(f"http://127.0.0.1:{gw_port}/readyz", gw, log)
    am_url = _alertmanager(am_bin, _am_config(tmp_path, gw_port), tmp_path, "am", am_port, procs)
    start = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def amtool_add(*extra_args: str) -> None:
        r = subprocess.run(
            [amtool, f"--alertmanager.url={am_url}", "alert", "add", "HighCPU",
             "instance=node1:9100", "job=node", "severity=critical",
             "--annotation=summary=CPU high on node1", f"--start={start}", *extra_args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr

    amtool_add()
    fired = _until(lambda: len(_pubs(db_url, "fire")) == 3 and _pubs(db_url, "fire"), 60)
    (alert,) = _rows(db_url, "SELECT * FROM alerts")
    assert alert["fingerprint"] == "03e24befa7b11611" and alert["cls_status"] == "ok"
    amtool_add(f"--end={datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    resolved = _until(lambda: len(_pubs(db_url, "resolve")) == 3 and _pubs(db_url, "resolve"), 60)
    time.sleep(2.5)  # any further flush of Alertmanager arrives before counting
    ext = {r["target"]: r["external_id"] for r in fired}
    key = f"am-03e24befa7b11611-{int(datetime.fromisoformat(start.replace('Z', '+00:00')).timestamp())}"
    # PagerDuty: trigger then resolve with one dedup_key; the trigger carries the classification
    events = [r.body for r in emulators.received("pd")]
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", key),
        ("resolve", key),
    ]
    cls = alert["classification"]
    assert events[0]["payload"]["class"] == cls["category"]
    assert events[0]["payload"]["custom_details"]["ai_generated"]["model"] == "openai/gpt-4o-mini"
    assert ext["pd"] == key and [a.status for a in emulators.emu("pd").alerts] == ["resolved"]
    # Slack: the message, then its update and the reply in its thread
    original, reply = emulators.emu("slack").messages
    assert ext["slack"] == f"{CHANNEL}:{original.ts}"
    assert original.edited == 1 and original.text.startswith("[RESOLVED] HighCPU")
    assert reply.thread_ts == original.ts and "RESOLVED" in reply.text
    # Rootly: create, then resolve on the stored id
    ((rid, ralert),) = emulators.emu("rootly").alerts.items()
    assert ext["rootly"] == rid and ralert.status == "resolved"
    assert [(r.method, r.path) for r in emulators.received("rootly")] == [
        ("POST", "/v1/alerts"), ("POST", f"/v1/alerts/{rid}/resolve")]  # fmt: skip
    assert all(r["attempts"] == 1 for r in fired + resolved)


def test_kill_9_mid_publication_publishes_nothing_twice(
    tmp_path: Path,
    home: Path,
    emulators: Emulators,
    procs: list[subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    db_url = f"sqlite:///{home / 'llmgw.db'}"
    eng = make_engine(db_url)
    upgrade(eng)
    eng.dispose()
    # every target holds the first request for 3 s; the gateway waits up to 20 s for an answer
    for name in ("pd", "slack", "rootly"):
        emulators.emu(name).faults.set("timeout", 1)
    cfg = _config(
        tmp_path, db_url, emulators, 'mode = "transparent"\nlease_seconds = 2\npublish_timeout = 20'
    )
    port = _port()
    log = tmp_path / "serve.log"
    gw = _serve(cfg, home, port, log)
    procs.append(gw)
    _wait(f"http://127.0.0.1:{port}/readyz", gw, log)
    hook = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    url = f"http://127.0.0.1:{port}/alerts/webhook"
    assert httpx.post(url, json=am_payload(), headers=hook).status_code == 200
    _until(lambda: all(emulators.emu(n).faults.fired == 1 for n in ("pd", "slack", "rootly")), 30)
    sending = _rows(db_url, "SELECT target, state FROM alert_publications")
    assert sorted(r["state"] for r in sending) == ["sending"] * 3  # all three in flight
    gw.send_signal(signal.SIGKILL)
    gw.wait(10)

    gw = _serve(cfg, home, port, log)
    procs.append(gw)
    _wait(f"http://127.0.0.1:{port}/readyz", gw, log)
    fired = _until(lambda: len(_pubs(db_url, "fire")) == 3 and _pubs(db_url, "fire"), 30)
    resolved = am_alert(status="resolved", ends=later(60))
    assert httpx.post(url, json=am_payload(resolved), headers=hook).status_code == 200
    _until(lambda: len(_pubs(db_url, "resolve")) == 3, 30)
    time.sleep(3.5)  # the held requests are answered (500) and logged by now
    assert {r["target"]: r["attempts"] for r in fired} == {"pd": 2, "slack": 2, "rootly": 2}
    (pd_alert,) = emulators.emu("pd").alerts  # one incident: the held trigger never counted
    assert (pd_alert.status, pd_alert.events) == ("resolved", ["trigger", "resolve"])
    original, reply = emulators.emu("slack").messages  # one message and its thread reply
    assert reply.thread_ts == original.ts
    (ralert,) = emulators.emu("rootly").alerts.values()
    assert ralert.status == "resolved"
    pd_hits = emulators.received("pd")
    assert [r.status for r in pd_hits].count(202) == 2 and len(pd_hits) == 3
    gw.terminate()
    gw.wait(30)
