"""Publishing from a running gateway to the Slack, PagerDuty and Rootly emulators (real HTTP
servers speaking the products' wire formats): fire then resolve on every target, each fault's
documented retry or give-up, a 404 disabling its target, and a publication whose answer was lost
in a crash never sent twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.publishers import records
from llmgw.alerts.publishers.step import Publishing, PublishStep, dedup_key
from llmgw.alerts.queries import AlertHistory
from llmgw.alerts.queue import ClaimedJob
from llmgw.alerts.stats import AlertStats
from llmgw.alerts.store import AlertStore
from llmgw.config import Settings
from llmgw.emulators import pagerduty, rootly, slack
from llmgw.emulators.runner import serve_in_thread
from llmgw.server.app import gateway_of
from llmgw.storage.db import make_engine
from tests.alerts.amdata import am_alert, am_payload, later
from tests.alerts.conftest import CHANNEL, Emulators
from tests.alerts.test_classification import query, running, until

HOOK = "/alerts/webhook"


def _settings(
    alert_settings: Callable[..., Settings], db_url: str, emus: Emulators, **kw: Any
) -> Settings:
    kw.setdefault("targets", emus.targets())
    kw.setdefault("publish_backoff", 0.2)
    kw.setdefault("publish_timeout", 1.0)
    return alert_settings(db_url, mode="transparent", **kw)


def _pubs(db_url: str, action: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    rows = query(db_url, "SELECT * FROM alert_publications ORDER BY id")
    return {(r["target"], r["action"]): r for r in rows if action in (None, r["action"])}


def _settled(db_url: str, n: int, action: str) -> Callable[[], Any]:
    def check() -> Any:
        rows = _pubs(db_url, action)
        done = [r for r in rows.values() if r["state"] in ("sent", "failed", "unknown")]
        return rows if len(done) >= n else None

    return check


async def test_fire_then_resolve_reaches_every_target_once(
    db_url: str, alert_settings: Callable[..., Settings], hook_auth: dict[str, str],
    emulators: Emulators,
) -> None:  # fmt: skip
    settings = _settings(alert_settings, db_url, emulators)
    fire = am_alert()
    async with running(settings) as (_app, c):
        assert (await c.post(HOOK, json=am_payload(fire), headers=hook_auth)).status_code == 200
        fired = await until(_settled(db_url, 3, "fire"))
        resolved = am_alert(status="resolved", ends=later(60))
        assert (await c.post(HOOK, json=am_payload(resolved), headers=hook_auth)).status_code == 200
        done = await until(_settled(db_url, 3, "resolve"))
    (alert,) = query(db_url, "SELECT * FROM alerts")
    key = f"am-{fire['fingerprint']}-{int(later(0).timestamp())}"
    assert {k: (r["state"], r["attempts"]) for k, r in {**fired, **done}.items()} == {
        (t, a): ("sent", 1) for t in ("pd", "slack", "rootly") for a in ("fire", "resolve")
    }
    # PagerDuty: trigger then resolve, one dedup_key
    events = [r.body for r in emulators.received("pd")]
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", key),
        ("resolve", key),
    ]
    assert events[0]["payload"]["severity"] == "critical"
    assert events[0]["payload"]["custom_details"]["labels"]["alertname"] == "HighCPU"
    (pd_alert,) = emulators.emu("pd").alerts
    assert (pd_alert.dedup_key, pd_alert.status) == (key, "resolved")
    assert fired[("pd", "fire")]["external_id"] == key
    # Slack: the message, then it is updated and a reply lands in its thread
    sl = emulators.emu("slack")
    assert [r.path for r in emulators.received("slack")] == [
        "/api/chat.postMessage", "/api/chat.update", "/api/chat.postMessage"]  # fmt: skip
    original, reply = sl.messages
    assert fired[("slack", "fire")]["external_id"] == f"{CHANNEL}:{original.ts}"
    assert original.edited == 1 and original.text.startswith("[RESOLVED] HighCPU")
    assert original.history[0]["text"].startswith("[FIRING] HighCPU")
    assert reply.thread_ts == original.ts and "RESOLVED" in reply.text
    # Rootly: create, then resolve on the stored id
    rt = emulators.received("rootly")
    ((rid, ralert),) = emulators.emu("rootly").alerts.items()
    assert [(r.method, r.path) for r in rt] == [
        ("POST", "/v1/alerts"),
        ("POST", f"/v1/alerts/{rid}/resolve"),
    ]
    assert rt[0].body["data"]["attributes"]["deduplication_key"] == key
    assert ralert.status == "resolved" and fired[("rootly", "fire")]["external_id"] == rid
    kinds = [
        e["kind"]
        for e in query(db_url, f"SELECT kind FROM alert_events WHERE alert_id = {alert['id']}")
    ]
    assert kinds.count("published") == 6


@pytest.mark.parametrize("fault", ["429", "500", "timeout"])
async def test_transient_faults_are_retried_then_sent(
    fault: str, alert_settings: Callable[..., Settings], hook_auth: dict[str, str],
    emulators: Emulators, home: Any,
) -> None:  # fmt: skip
    db_url = f"sqlite:///{home / 'p.db'}"
    for name in ("pd", "slack", "rootly"):
        emulators.emu(name).faults.set(fault, 1, retry_after=1)
    settings = _settings(alert_settings, db_url, emulators)
    async with running(settings) as (_app, c):
        assert (await c.post(HOOK, json=am_payload(), headers=hook_auth)).status_code == 200
        rows = await until(_settled(db_url, 3, "fire"), limit=30)
    assert {t: (r["state"], r["attempts"]) for (t, _), r in rows.items()} == {
        t: ("sent", 2) for t in ("pd", "slack", "rootly")
    }
    if fault == "timeout":  # the emulators answer the held request later; give them the time
        await asyncio.sleep(3.2)
    for name, path in (
        ("pd", "/v2/enqueue"),
        ("slack", "/api/chat.postMessage"),
        ("rootly", "/v1/alerts"),
    ):
        got = emulators.received(name, path)
        ok = [r for r in got if 200 <= r.status < 300]
        bad = [r for r in got if r.status == (500 if fault == "timeout" else int(fault))]
        assert (len(ok), len(bad)) == (1, 1), (name, [(r.status, r.note) for r in got])
        if fault == "429":  # Retry-After: 1 was honoured
            assert ok[0].at - bad[0].at >= 0.95, name
    assert len(emulators.emu("pd").alerts) == 1 and len(emulators.emu("rootly").alerts) == 1
    assert len(emulators.emu("slack").messages) == 1


async def test_400_gives_up_at_once_and_404_disables_the_target(
    alert_settings: Callable[..., Settings], hook_auth: dict[str, str],
    emulators: Emulators, home: Any,
) -> None:  # fmt: skip
    db_url = f"sqlite:///{home / 'p.db'}"
    for name in ("pd", "slack", "rootly"):
        emulators.emu(name).faults.set("400", 1)
    settings = _settings(alert_settings, db_url, emulators)
    async with running(settings) as (app, c):
        assert (await c.post(HOOK, json=am_payload(), headers=hook_auth)).status_code == 200
        rows = await until(_settled(db_url, 3, "fire"))
        assert {t: (r["state"], r["attempts"]) for (t, _), r in rows.items()} == {
            t: ("failed", 1) for t in ("pd", "slack", "rootly")
        }
        assert rows[("slack", "fire")]["error"] == "HTTP 200: invalid_arguments"
        assert rows[("pd", "fire")]["http_status"] == 400
        await asyncio.sleep(1.0)  # no retry comes
        assert [len(emulators.received(n)) for n in ("pd", "slack", "rootly")] == [1, 1, 1]
        # the resolve of an alert whose fire failed goes nowhere
        resolved = am_alert(status="resolved", ends=later(60))
        assert (await c.post(HOOK, json=am_payload(resolved), headers=hook_auth)).status_code == 200
        await until(
            lambda: query(
                db_url,
                "SELECT id FROM alert_jobs WHERE step = 'publish_resolve' AND state = 'done'",
            )
        )
        assert [len(emulators.received(n)) for n in ("pd", "slack", "rootly")] == [1, 1, 1]

        emulators.emu("pd").faults.set("404", 1)
        second = am_alert("DiskFull")
        assert (await c.post(HOOK, json=am_payload(second), headers=hook_auth)).status_code == 200
        await until(lambda: _pubs(db_url).get(("pd", "fire")) and len(
            [r for r in query(db_url, "SELECT * FROM alert_publications WHERE target = 'pd'")
             if r["state"] == "failed"]) == 2)  # fmt: skip
        live = gateway_of(app).alerts.publishing.targets.get("pd")
        assert live.health() == "disabled" and live.disabled.startswith("HTTP 404")
        third = am_alert("MemoryFull")
        assert (await c.post(HOOK, json=am_payload(third), headers=hook_auth)).status_code == 200
        await until(
            lambda: len(query(db_url, "SELECT * FROM alert_publications WHERE target = 'pd'")) == 3
        )
        await asyncio.sleep(0.3)
        last = query(db_url, "SELECT * FROM alert_publications WHERE target = 'pd' ORDER BY id")[-1]
        assert last["state"] == "failed" and last["attempts"] == 0
        assert last["error"].startswith("target disabled: HTTP 404")
        assert len(emulators.received("pd")) == 2  # nothing sent to the disabled target


async def test_a_publication_cut_off_by_a_crash_is_never_sent_twice(
    db_url: str, alert_settings: Callable[..., Settings], emulators: Emulators
) -> None:
    """Every row is left ``sending`` as a kill -9 mid-request leaves it. Where the earlier
    request did arrive (PagerDuty, Rootly, the Slack bot) the next attempt adopts it; where it
    cannot be asked (a Slack webhook) nothing is sent again."""
    settings = _settings(
        alert_settings, db_url, emulators, targets=emulators.targets(slack_webhook=True)
    )
    engine = make_engine(db_url)
    stats = AlertStats()
    store = AlertStore(engine, settings.alerts)
    (alert_id,) = store.ingest(parse_delivery(am_payload())).new_ids
    history = AlertHistory(engine)
    alert = history.get(alert_id)
    key = dedup_key(alert)
    async with httpx.AsyncClient() as http:  # what the request cut off by the crash delivered
        r = await http.post(f"{emulators.pd.url}/v2/enqueue", json={
            "routing_key": pagerduty.DEFAULT_ROUTING_KEY, "event_action": "trigger", "dedup_key": key,
            "payload": {"summary": "s", "source": "node1", "severity": "critical"}})  # fmt: skip
        assert r.status_code == 202
        r = await http.post(f"{emulators.rootly.url}/v1/alerts", headers={
            "Authorization": f"Bearer {rootly.DEFAULT_API_KEY}"}, json={"data": {"type": "alerts",
            "attributes": {"source": "alertmanager", "summary": "s", "deduplication_key": key}}})  # fmt: skip
        assert r.status_code == 201
        rid = r.json()["data"]["id"]
        r = await http.post(f"{emulators.slack.url}/api/chat.postMessage", headers={
            "Authorization": f"Bearer {slack.DEFAULT_BOT_TOKEN}"}, json={"channel": CHANNEL, "text": "x",
            "metadata": {"event_type": "llmgw_alert", "event_payload": {"key": key}}})  # fmt: skip
        ts = r.json()["ts"]
    for name, kind in (
        ("pd", "pagerduty"),
        ("rootly", "rootly"),
        ("slack", "slack"),
        ("slack-hook", "slack"),
    ):
        records.begin(engine, alert_id, name, kind, "fire", store.now())
    before = {n: len(emulators.received(n)) for n in ("pd", "slack", "rootly")}
    publishing = Publishing(engine, settings.alerts, stats)
    try:
        step = PublishStep(publishing, history, "fire")
        result = await step(ClaimedJob(1, alert_id, "publish", 2))
    finally:
        await publishing.aclose()
    assert type(result).__name__ == "Done"
    rows = _pubs(db_url, "fire")
    assert {t: (r["state"], r["external_id"]) for (t, _), r in rows.items()} == {
        "pd": ("sent", key),  # sent again: PagerDuty deduplicates by dedup_key
        "rootly": ("sent", rid),  # found in the alert list: not created again
        "slack": ("sent", f"{CHANNEL}:{ts}"),  # found in the channel's history
        "slack-hook": ("unknown", None),  # cannot be asked: not sent again
    }
    assert (
        len(emulators.emu("pd").alerts) == 1 and emulators.emu("pd").alerts[0].status == "triggered"
    )
    assert len(emulators.emu("rootly").alerts) == 1
    assert len(emulators.emu("slack").messages) == 1
    after = {n: len(emulators.received(n)) for n in ("pd", "slack", "rootly")}
    assert after["pd"] == before["pd"] + 1 and after["rootly"] == before["rootly"]
    engine.dispose()


async def test_per_target_rate_limit_spaces_the_messages(
    alert_settings: Callable[..., Settings], hook_auth: dict[str, str],
    emulators: Emulators, home: Any,
) -> None:  # fmt: skip
    """Three alerts at once to one Slack channel at 60 a minute: about a second apart, and the
    emulator (1/s per channel after a burst of 4) never has to refuse one."""
    db_url = f"sqlite:///{home / 'p.db'}"
    target = {**emulators.targets()[1], "rate_per_minute": 60}
    settings = _settings(alert_settings, db_url, emulators, targets=[target])
    names = ("A", "B", "C")
    async with running(settings) as (_app, c):
        body = am_payload(*(am_alert(n) for n in names))
        assert (await c.post(HOOK, json=body, headers=hook_auth)).status_code == 200
        sent = "SELECT id FROM alert_publications WHERE state = 'sent'"
        await until(lambda: len(query(db_url, sent)) == 3, limit=30)
    got = emulators.received("slack", "/api/chat.postMessage")
    assert [r.status for r in got] == [200, 200, 200]
    gaps = [b.at - a.at for a, b in zip(got, got[1:], strict=False)]
    assert all(g >= 0.9 for g in gaps), gaps


async def test_a_target_failing_every_time_is_given_up_after_max_attempts(
    alert_settings: Callable[..., Settings], hook_auth: dict[str, str],
    emulators: Emulators, home: Any,
) -> None:  # fmt: skip
    db_url = f"sqlite:///{home / 'p.db'}"
    emulators.emu("pd").faults.set("500")  # every request
    # A generous timeout: on a loaded machine an answer slower than the default 1 s would end an
    # attempt as a timeout, not the 500 this test counts (the attempts stay 3 either way).
    settings = _settings(alert_settings, db_url, emulators, targets=emulators.targets()[:1],
                         publish_max_attempts=3, publish_backoff=0.05,
                         publish_timeout=10.0)  # fmt: skip
    async with running(settings) as (_app, c):
        assert (await c.post(HOOK, json=am_payload(), headers=hook_auth)).status_code == 200
        rows = await until(_settled(db_url, 1, "fire"), limit=60)
    row = rows[("pd", "fire")]
    assert (row["state"], row["attempts"], row["http_status"]) == ("failed", 3, 500)
    assert row["error"].startswith("gave up after 3 attempts: HTTP 500")
    assert len(emulators.received("pd")) == 3


def test_targets_publish_test_and_publications_through_the_api_and_cli(
    alert_settings: Callable[..., Settings], hook_auth: dict[str, str],
    emulators: Emulators, home: Any, cli: Any,
) -> None:  # fmt: skip
    """``llmgw --url alerts targets`` lists config and discovered targets with their health
    and no credential; ``publish-test`` fires and resolves on the emulator; an alert's
    publications are on the API; a discovered target set live shows up and one that does not
    validate is reported, never its values (AUTH-6 on the new routes)."""
    from llmgw.server import create_app
    from tests.alerts.test_api_cli import _keys

    db_url = f"sqlite:///{home / 'p.db'}"
    settings = _settings(alert_settings, db_url, emulators, targets=emulators.targets()[:2])
    app = create_app(settings)
    srv = serve_in_thread(app)
    try:
        admin, user = _keys(db_url)
        env = {"LLMGW_URL": srv.url, "LLMGW_TOKEN": admin, "COLUMNS": "200"}
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            for method, path in (("GET", "/api/alerts/targets"), ("POST", "/api/alerts/targets/pd/test"),
                                 ("GET", "/api/alerts/1/publications")):  # fmt: skip
                assert http.request(method, path).status_code == 401
                r = http.request(method, path, headers={"Authorization": f"Bearer {user}"})
                assert r.status_code == 403
            service = gateway_of(app).alerts
            refused = service.set_discovered_targets("kubernetes", {
                "alerting/rootly": emulators.targets()[2],
                "alerting/pd": {**emulators.targets()[0], "events_url": "http://elsewhere"},
                "alerting/bad": {"type": "rootly", "name": "bad", "base_url": "s3cr3t-url"},
            })  # fmt: skip
            assert list(refused) == ["alerting/bad"] and "s3cr3t" not in str(refused)
            out = cli("alerts", "targets", "--json", env=env)
            assert out.exit_code == 0, out.stderr
            listed = {t["name"]: t for t in json.loads(out.stdout)["data"]}
            assert {n: t["source"] for n, t in listed.items()} == {
                "pd": "config", "slack": "config", "rootly": "kubernetes:alerting/rootly"}  # fmt: skip
            assert listed["pd"]["events_url"].startswith(emulators.pd.url)  # config won
            for secret in (
                pagerduty.DEFAULT_ROUTING_KEY,
                slack.DEFAULT_BOT_TOKEN,
                rootly.DEFAULT_API_KEY,
            ):
                assert secret not in out.stdout
            table = cli("alerts", "targets", env=env)
            assert "kubernetes:alerting/rootly" in table.stdout and "refused" in table.stderr

            out = cli("alerts", "publish-test", "rootly", env=env)
            assert out.exit_code == 0, out.stdout + out.stderr
            assert (
                "fire: sent (HTTP 201)" in out.stdout and "resolve: sent (HTTP 200)" in out.stdout
            )
            (ralert,) = emulators.emu("rootly").alerts.values()
            assert ralert.status == "resolved" and ralert.attributes["summary"].startswith(
                "LlmgwPublishTest"
            )
            emulators.emu("pd").faults.set("400", 1)
            out = cli("alerts", "publish-test", "pd", env=env)
            assert out.exit_code == 1 and "fire: failed (HTTP 400)" in out.stdout
            assert cli("alerts", "publish-test", "nope", env=env).exit_code != 0

            auth = {"Authorization": f"Bearer {admin}"}
            assert http.post(HOOK, json=am_payload(), headers=hook_auth).status_code == 200
            for _ in range(400):
                pubs = http.get("/api/alerts/1/publications", headers=auth).json()["data"]
                if len([p for p in pubs if p["state"] == "sent"]) == 3:
                    break
                time.sleep(0.05)
            assert sorted(p["target"] for p in pubs) == ["pd", "rootly", "slack"]
            shown = cli("alerts", "show", "1", env=env)
            assert (
                "publications:" in shown.stdout
                and "rootly (rootly): sent, 1 attempt(s) HTTP 201" in shown.stdout
            )
            assert http.get("/api/alerts/99/publications", headers=auth).status_code == 404
    finally:
        srv.stop()
