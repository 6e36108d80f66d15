"""Retention per status: resolved occurrences, occurrences still firing, raw deliveries and
expired cache rows go after their own setting, in batches of ``alerts.retention_batch``, with
their events and jobs; the counts reach ``llmgw_alert_retention_deleted_total``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.alerts.cache import CACHE
from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.retention import run_retention
from llmgw.alerts.stats import AlertStats
from llmgw.alerts.store import ALERTS, DELIVERIES, EVENTS, JOBS, AlertStore
from llmgw.config import AlertsSettings
from tests.alerts.amdata import T0, am_alert, am_payload, later


def _count(engine: Engine, table: sa.Table, *where: Any) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
        )


def test_each_status_goes_after_its_own_setting_in_batches(engine: Engine) -> None:
    settings = AlertsSettings(
        retention_resolved_days=10,
        retention_firing_days=30,
        retention_deliveries_days=5,
        retention_batch=3,
    )
    # 7 alerts resolved at T0+1h, 4 firing last seen at T0, 2 firing last seen at T0+20 days
    store = AlertStore(engine, settings, now=lambda: T0)
    old = [am_alert(f"Old{i}", starts=later(i)) for i in range(7)]
    store.ingest(parse_delivery(am_payload(*old, *(am_alert(f"Stuck{i}") for i in range(4)))))
    store.now = lambda: T0 + timedelta(hours=1)
    resolved = [{**a, "status": "resolved", "endsAt": "2026-11-22T04:19:07Z"} for a in old]
    store.ingest(parse_delivery(am_payload(*resolved)))
    store.now = lambda: T0 + timedelta(days=20)
    store.ingest(parse_delivery(am_payload(*(am_alert(f"Live{i}") for i in range(2)))))
    with engine.begin() as conn:
        conn.execute(sa.insert(CACHE), [
            {"key": "gone", "result": {}, "created_at": T0, "expires_at": T0 + timedelta(days=1)},
            {"key": "kept", "result": {}, "created_at": T0, "expires_at": T0 + timedelta(days=99)},
        ])  # fmt: skip
    assert _count(engine, ALERTS) == 13 and _count(engine, DELIVERIES) == 3
    stats = AlertStats()

    # day 8: nothing is old enough but the deliveries of day 0 (5 days) and the expired cache row
    out = run_retention(engine, settings, stats, now=lambda: T0 + timedelta(days=8))
    assert out == {"resolved": 0, "firing": 0, "deliveries": 2, "cache": 1}
    # day 12: the 7 resolved ones (10 days after they resolved) go, in batches of 3
    out = run_retention(engine, settings, stats, now=lambda: T0 + timedelta(days=12))
    assert out["resolved"] == 7 and out["firing"] == 0
    assert _count(engine, ALERTS, ALERTS.c.status == "resolved") == 0
    # day 31: the 4 stuck firing ones (30 days after their last delivery); the live 2 stay
    out = run_retention(engine, settings, stats, now=lambda: T0 + timedelta(days=31))
    assert out["firing"] == 4
    names = {r.alertname for r in _rows(engine)}
    assert names == {"Live0", "Live1"}
    # events and jobs went with their occurrences
    ids = {r.id for r in _rows(engine)}
    with engine.connect() as conn:
        assert {r.alert_id for r in conn.execute(sa.select(EVENTS.c.alert_id))} == ids
        assert {r.alert_id for r in conn.execute(sa.select(JOBS.c.alert_id))} == ids
    assert _count(engine, CACHE) == 1
    assert stats.retention_deleted == {"resolved": 7, "firing": 4, "deliveries": 3}


def test_unset_keeps_that_status_forever(engine: Engine) -> None:
    settings = AlertsSettings(
        retention_resolved_days=None, retention_firing_days=None, retention_deliveries_days=None
    )
    store = AlertStore(engine, settings, now=lambda: T0)
    store.ingest(parse_delivery(am_payload(am_alert(), am_alert("Other", status="resolved"))))
    out = run_retention(engine, settings, now=lambda: T0 + timedelta(days=3650))
    assert out == {"resolved": 0, "firing": 0, "deliveries": 0, "cache": 0}
    assert _count(engine, ALERTS) == 2 and _count(engine, DELIVERIES) == 1


def _rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(ALERTS.c.id, ALERTS.c.alertname)))
