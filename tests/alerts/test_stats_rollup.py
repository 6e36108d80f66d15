"""The hourly counts behind ``stats()`` (migration 0018) stay equal to counting the occurrences
one by one through what changes them: new alerts, repeats in later hours, resolves, re-fires,
classifications, a re-classify, acknowledgements and retention's deletes; on SQLite and
PostgreSQL (where the triggers are statement-level and the delivery is one statement)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.queries import AlertHistory
from llmgw.alerts.retention import run_retention
from llmgw.alerts.store import ALERTS, AlertStore
from llmgw.alerts.summary import DELTA, HOURLY, fold
from llmgw.config import AlertsSettings
from tests.alerts.amdata import T0, am_alert, am_payload, later


def _hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _rollup(engine: Engine) -> Counter[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(HOURLY)).all()
    return Counter(
        {(r.seen_hour, r.start_hour, r.status, r.severity, r.category, r.cls_status): r.n
         for r in rows if r.n}
    )  # fmt: skip


def _raw(engine: Engine) -> Counter[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ALERTS)).all()
    return Counter(
        (_hour(r.last_seen), _hour(r.starts_at), r.status, r.severity or "", r.category or "",
         r.cls_status)
        for r in rows
    )  # fmt: skip


def _raw_stats(engine: Engine, since: datetime) -> dict[str, Any]:
    """What ``stats()`` must say, counted from the rows."""
    with engine.connect() as conn:
        rows = [r for r in conn.execute(sa.select(ALERTS)).all() if r.last_seen >= since]
    out: dict[str, Any] = {
        "by_status": Counter(r.status for r in rows),
        "by_severity": Counter(r.severity or "none" for r in rows),
        "by_category": Counter(r.category or "none" for r in rows),
        "by_classification": Counter(r.cls_status for r in rows),
        "total": len(rows),
    }
    hours: dict[str, Counter[str]] = {}
    for r in rows:
        hours.setdefault(r.starts_at.strftime("%Y-%m-%dT%H:00:00Z"), Counter())[
            r.severity or "none"
        ] += 1
    out["over_time"] = [{"t": t, **hours[t]} for t in sorted(hours)]
    fires = Counter(r.fingerprint for r in rows)
    out["top_flapping"] = sorted((fp, n) for fp, n in fires.items() if n > 1)
    return {k: dict(v) if isinstance(v, Counter) else v for k, v in out.items()}


def _check(engine: Engine, h: AlertHistory) -> None:
    # stats() first, with the changes not folded yet (PostgreSQL), then the fold's result
    _check_stats(engine, h)
    fold(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DELTA)).scalar() == 0
    assert _rollup(engine) == _raw(engine)
    _check_stats(engine, h)


def _check_stats(engine: Engine, h: AlertHistory) -> None:
    for since in (T0 - timedelta(days=1), T0 + timedelta(minutes=150), _hour(T0) + timedelta(
        hours=3), T0 + timedelta(hours=5, minutes=1)):  # fmt: skip
        got = h.stats(since=since)
        want = _raw_stats(engine, since)
        got["top_flapping"] = sorted((t["fingerprint"], t["fires"]) for t in got["top_flapping"])
        assert {k: got[k] for k in want} == want, since


def _deliver(engine: Engine, at: datetime, *alerts: dict[str, Any]) -> None:
    AlertStore(engine, AlertsSettings(), now=lambda: at).ingest(parse_delivery(am_payload(*alerts)))


def test_the_hourly_counts_equal_a_raw_count_through_every_change(engine: Engine) -> None:
    h = AlertHistory(engine, now=lambda: T0 + timedelta(hours=8))
    cpu = {"job": "node"}
    disk = {"severity": "warning", "job": "disk"}
    # hour 0: three new alerts (one with no severity)
    _deliver(engine, T0, am_alert("HighCPU", labels=cpu), am_alert("DiskFull", labels=disk),
             am_alert("Odd", labels={"severity": ""}))  # fmt: skip
    _check(engine, h)
    # hour 2: the same again (they move to a later hour seen), a resolve of the disk alert
    _deliver(engine, later(7200), am_alert("HighCPU", labels=cpu),
             am_alert("DiskFull", labels=disk, status="resolved", ends=later(7000)))  # fmt: skip
    _check(engine, h)
    # hour 3: HighCPU fires again (a new occurrence of the label set), a classification each
    _deliver(engine, later(3 * 3600), am_alert("HighCPU", labels=cpu, starts=later(3 * 3600)))
    with engine.connect() as conn:
        ids = [r.id for r in conn.execute(sa.select(ALERTS.c.id).order_by(ALERTS.c.id))]
    h.save_classification(ids[0], "ok", {"severity": "critical", "category": "capacity"}, None)
    h.save_classification(ids[1], "ok", {"severity": "warning", "category": "storage"}, None)
    h.save_classification(ids[2], "timeout", None, "slow")
    _check(engine, h)
    # a re-classify puts one back to pending; an acknowledgement changes no count
    h.reclassify(ids[0], "admin")
    h.ack(ids[1], "admin", "looking")
    _check(engine, h)
    # hour 5: HighCPU resolves; retention deletes the resolved occurrences
    _deliver(engine, later(5 * 3600), am_alert("HighCPU", labels=cpu, starts=later(3 * 3600),
             status="resolved", ends=later(5 * 3600)))  # fmt: skip
    _check(engine, h)
    done = run_retention(
        engine,
        AlertsSettings(retention_resolved_days=1, retention_batch=1),
        now=lambda: later(5 * 3600) + timedelta(days=2),
    )
    assert done["resolved"] == 2
    _check(engine, h)
    assert sum(_rollup(engine).values()) == 2  # HighCPU (first firing) and Odd


@pytest.mark.postgres
def test_a_delivery_does_not_wait_for_another_writers_uncommitted_counts(pg_url: str) -> None:
    """A worker's settlement (or another delivery) that changed counts of the same hour,
    status and severity and has not committed yet does not hold a webhook delivery up: the
    counts' changes are appended, not upserted into a row both would lock (migration 0019)."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    try:
        _deliver(engine, T0, am_alert("HighCPU", labels={"job": "node"}))
        h = AlertHistory(engine, now=lambda: T0 + timedelta(minutes=5))
        with engine.connect() as conn:
            (first,) = conn.execute(sa.select(ALERTS.c.id)).one()
        with engine.connect() as open_tx:
            open_tx.begin()
            h.write_classification(open_tx, first, "timeout", None, "slow")  # not committed
            done = threading.Event()

            def deliver() -> None:
                _deliver(
                    engine, T0 + timedelta(minutes=1), am_alert("Other", labels={"job": "node"})
                )
                done.set()

            t = threading.Thread(target=deliver)
            t.start()
            t.join(5)
            stored_meanwhile = done.is_set()
            open_tx.commit()  # (a delivery that waited goes on now)
            t.join()
        assert stored_meanwhile, "the delivery waited for the other transaction's counts"
        assert h.stats(since=T0 - timedelta(hours=1))["by_classification"] == {
            "pending": 1,
            "timeout": 1,
        }
    finally:
        engine.dispose()
