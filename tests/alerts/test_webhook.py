"""``POST /alerts/webhook``: Alertmanager's delivery contract (IN-6) and the history it builds."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from llmgw.alerts.payload import am_fingerprint, parse_delivery
from llmgw.config import Settings
from llmgw.errors import InvalidRequest
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from tests.alerts.amdata import T0, am_alert, am_payload, later
from tests.alerts.test_classification import HOOK, running
from tests.conftest import PG_ADMIN_DSN


def rows(db_url: str, sql: str) -> list[dict[str, Any]]:
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql)).mappings()]
    finally:
        eng.dispose()


def test_fingerprint_matches_alertmanager() -> None:
    """The vectors from Alertmanager's own tests and a live 0.25 server."""
    assert am_fingerprint({"job": "foo", "severity": "warning"}) == "9266ef3da838ad95"
    assert am_fingerprint({"job": "foo", "severity": "critical"}) == "3b15fd163d36582e"
    labels = {
        "alertname": "HighCPU",
        "instance": "node1:9100",
        "job": "node",
        "severity": "critical",
    }
    assert am_fingerprint(labels) == "03e24befa7b11611"
    assert am_fingerprint({}) == "cbf29ce484222325"


def test_parsing_is_lenient_but_checks_what_matters() -> None:
    body = am_payload()
    body["notification_reason"] = "first notification"
    body["routeLabels"] = {"x": "y"}
    body["alerts"][0]["somethingNew"] = 1
    body["alerts"][0]["startsAt"] = "2026-11-22T05:19:07.741228728+02:00"  # nanoseconds, offset
    d = parse_delivery(body)
    a = d.alerts[0]
    assert a.starts_at == T0 and a.ends_at is None  # 0001-01-01 means "still firing"
    assert a.fingerprint == "03e24befa7b11611"
    # HA peers differ only in externalURL (and newer versions add notification_reason)
    other = dict(body, externalURL="http://127.0.0.1:29093", notification_reason="x")
    assert parse_delivery(other).digest == d.digest
    for bad in (
        {**body, "version": "3"},
        {**body, "alerts": "nope"},
        {**body, "alerts": [{"status": "firing", "labels": {}}]},
        {**body, "alerts": [{**body["alerts"][0], "status": "pending"}]},
        {**body, "alerts": [{**body["alerts"][0], "startsAt": "yesterday"}]},
    ):
        with pytest.raises(InvalidRequest):
            parse_delivery(bad)


async def test_in6_auth_version_size(
    alert_settings: Callable[..., Settings], home: Any, hook_auth: dict[str, str]
) -> None:
    """IN-6: no or a wrong bearer is 401, an API-key-shaped token too; version != 4 is 400;
    an oversized body is 413; nothing is stored for any of them."""
    url = f"sqlite:///{home / 'a.db'}"
    async with running(alert_settings(url, max_body_bytes=4096)) as (_, c):
        body = am_payload()
        assert (await c.post(HOOK, json=body)).status_code == 401
        r = await c.post(HOOK, json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_webhook_token"
        assert "whk-test" not in r.text
        r = await c.post(HOOK, json={**body, "version": "3"}, headers=hook_auth)
        assert r.status_code == 400 and "version" in r.json()["error"]["message"]
        assert (await c.post(HOOK, content=b"{nope", headers=hook_auth)).status_code == 400
        big = am_payload(*(am_alert(f"A{i}") for i in range(40)))
        assert (await c.post(HOOK, json=big, headers=hook_auth)).status_code == 413
    assert rows(url, "SELECT * FROM alert_deliveries") == []
    assert rows(url, "SELECT * FROM alerts") == []


async def test_webhook_not_configured_is_404(home: Any) -> None:
    settings = Settings(home=home, database={"url": f"sqlite:///{home / 'b.db'}"})
    async with running(settings) as (_, c):
        r = await c.post(HOOK, json=am_payload(), headers={"Authorization": "Bearer x"})
        assert r.status_code == 404
        assert "webhook_token" in r.json()["error"]["message"] + str(r.json()["error"])


async def test_in6_same_notification_three_times_and_from_two_peers_is_processed_once(
    db_url: str, alert_settings: Callable[..., Settings], hook_auth: dict[str, str]
) -> None:
    """IN-6: retries and the HA pair's second copy answer 2xx and change nothing."""
    async with running(alert_settings(db_url)) as (_, c):
        body = am_payload(am_alert(), am_alert("DiskFull", labels={"severity": "warning"}))
        answers = [await c.post(HOOK, json=body, headers=hook_auth) for _ in range(3)]
        peer = dict(body, externalURL="http://127.0.0.1:29093")
        answers.append(await c.post(HOOK, json=peer, headers=hook_auth))
        assert [r.status_code for r in answers] == [200] * 4
        assert [r.json()["duplicate"] for r in answers] == [False, True, True, True]
        assert answers[0].json()["new"] == 2
    alerts = rows(db_url, "SELECT * FROM alerts ORDER BY alertname")
    assert [(a["alertname"], a["status"], a["notifications"]) for a in alerts] == [
        ("DiskFull", "firing", 1),
        ("HighCPU", "firing", 1),
    ]
    (delivery,) = rows(db_url, "SELECT * FROM alert_deliveries")
    assert delivery["copies"] == 4 and delivery["alert_count"] == 2
    events = rows(db_url, "SELECT kind FROM alert_events WHERE kind = 'fired'")
    assert len(events) == 2
    jobs = rows(db_url, "SELECT step FROM alert_jobs WHERE step = 'classify'")
    assert jobs == [{"step": "classify"}] * 2


async def test_oversized_and_odd_label_values_are_stored_not_retried_forever(
    db_url: str, alert_settings: Callable[..., Settings], hook_auth: dict[str, str]
) -> None:
    """IN-6: a delivery that can never be stored must not be answered 5xx (Alertmanager would
    retry it forever): a severity longer than its indexed column, a huge alertname and a NUL in
    a label are kept in the labels whole and cut only in the indexed copies."""
    severity = "critical-" + "x" * 91
    name = "N" * 300
    async with running(alert_settings(db_url)) as (_, c):
        body = am_payload(
            am_alert(name, labels={"severity": severity, "team": "a\x00b"}),
            am_alert("Plain", labels={"severity": ""}),
        )
        r = await c.post(HOOK, json=body, headers=hook_auth)
        assert r.status_code == 200, r.text
        assert r.json()["new"] == 2
        again = await c.post(
            HOOK,
            json=am_payload(
                am_alert(
                    name,
                    labels={"severity": severity, "team": "a\x00b"},
                    annotations={"summary": "repeat"},
                )
            ),
            headers=hook_auth,
        )
        assert again.status_code == 200, again.text
    stored = rows(db_url, "SELECT alertname, severity, labels FROM alerts ORDER BY alertname")
    assert [(a["alertname"], a["severity"]) for a in stored] == [
        (name[:200], severity[:32]),
        ("Plain", None),
    ]
    labels = stored[0]["labels"]
    labels = json.loads(labels) if isinstance(labels, str) else labels
    assert labels["severity"] == severity
    assert labels["team"] == "a\ufffdb"  # PostgreSQL cannot hold NUL: U+FFFD on both backends


async def test_occurrences_transitions_fire_counts_and_flapping(
    db_url: str, alert_settings: Callable[..., Settings], hook_auth: dict[str, str]
) -> None:
    async with running(alert_settings(db_url, flapping_count=3, flapping_window=3600)) as (_, c):

        async def send(*alerts: dict[str, Any]) -> dict[str, Any]:
            r = await c.post(HOOK, json=am_payload(*alerts), headers=hook_auth)
            assert r.status_code == 200, r.text
            return dict(r.json())

        for n in range(3):  # fire, resolve, fire again (a new startsAt each time)
            start = later(n * 600)
            assert (await send(am_alert(starts=start)))["new"] == 1
            # a repeat with a re-templated annotation updates the occurrence, no new one
            again = am_alert(starts=start, annotations={"summary": f"still high {n}"})
            assert (await send(again))["new"] == 0
            done = am_alert(status="resolved", starts=start, ends=later(n * 600 + 300))
            assert (await send(done))["resolved"] == 1
            assert (await send(done))["duplicate"] is True
        # a stale firing copy of a resolved occurrence does not re-open it
        stale = am_alert(starts=later(0), annotations={"summary": "late copy"})
        assert (await send(stale))["resolved"] == 0
    alerts = rows(db_url, "SELECT * FROM alerts ORDER BY starts_at")
    assert [a["status"] for a in alerts] == ["resolved"] * 3
    assert [a["fire_count"] for a in alerts] == [1, 2, 3]
    assert [a["flapping"] for a in alerts] == [False, False, True]
    # the newest copy's annotations win (the resolve); the stale firing copy changed nothing
    first = alerts[0]["annotations"]
    first = json.loads(first) if isinstance(first, str) else first
    assert first["summary"] == "HighCPU on node1"
    assert all(a["ends_at"] is not None for a in alerts)
    kinds = rows(
        db_url,
        f"SELECT kind FROM alert_events WHERE alert_id = {alerts[2]['id']}"
        " AND kind IN ('fired', 'flapping', 'resolved') ORDER BY id",
    )
    assert [k["kind"] for k in kinds] == ["fired", "flapping", "resolved"]


@pytest.mark.postgres
# pg_terminate_backend kills pooled connections under SQLAlchemy; the psycopg objects it drops
# are garbage-collected unclosed (a ResourceWarning at an unpredictable later point).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_in6_database_down_is_503_then_the_retry_is_stored(
    pg_url: str, alert_settings: Callable[..., Settings], hook_auth: dict[str, str]
) -> None:
    """IN-6: a storage failure answers 503 (Alertmanager retries), never 2xx; once the
    database is back the retried delivery is stored exactly once."""
    eng = make_engine(pg_url)
    upgrade(eng)
    eng.dispose()
    name = pg_url.rsplit("/", 1)[1]
    async with running(alert_settings(pg_url)) as (_, c):
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            try:
                r = await c.post(HOOK, json=am_payload(), headers=hook_auth)
                assert r.status_code == 503
                assert r.json()["error"]["code"] == "storage_unavailable"
                assert "retry-after" in r.headers
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        r = await c.post(HOOK, json=am_payload(), headers=hook_auth)
        assert r.status_code == 200 and r.json()["new"] == 1
    gc.collect()  # while this test's warning filters apply
    assert len(rows(pg_url, "SELECT * FROM alerts")) == 1


@pytest.mark.parametrize("token", [None, "whk-some-token-0123456789"])
async def test_an_unconfigured_classifier_is_named_only_when_the_webhook_is_on(
    home: Any, token: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """``llmgw serve`` with no ``[alerts]`` at all says nothing about ``alerts.model``."""
    db_url = f"sqlite:///{home / 'quiet.db'}"
    alerts: dict[str, Any] = {"webhook_token": token} if token else {}
    settings = Settings(home=home, database={"url": db_url}, alerts=alerts)
    with caplog.at_level("WARNING", logger="llmgw.alerts"):
        async with running(settings):
            pass
    warned = [r for r in caplog.records if "alerts-classifier" in r.getMessage()]
    assert len(warned) == (1 if token else 0)
