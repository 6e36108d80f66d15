"""The webhook's group commit (``AlertService.ingest``, ``AlertStore.ingest_many``): deliveries
arriving together are stored in one transaction, each answered only after that commit, copies
deduplicated, and a failure costs nothing half-written (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
import sqlalchemy.exc

from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.service import AlertService
from llmgw.config import AlertsSettings
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from tests.alerts.amdata import am_alert, am_payload

pytestmark = pytest.mark.postgres


def _delivery(i: int, receiver: str = "llmgw") -> Any:
    alerts = [am_alert(f"Alert{i}x{k}", labels={"n": str(i)}) for k in range(3)]
    payload = am_payload(*alerts)
    payload["receiver"] = receiver
    return parse_delivery(payload)


def _stored(dsn: str) -> dict[str, Any]:
    """What another session sees committed: deliveries (by receiver) with their copies, the
    transactions that wrote them, occurrences, jobs."""
    with psycopg.connect(dsn, autocommit=True) as c:
        rows = c.execute("SELECT receiver, copies, xmin::text FROM alert_deliveries").fetchall()
        alerts = c.execute("SELECT count(*) FROM alerts").fetchone()
        jobs = c.execute("SELECT count(*) FROM alert_jobs").fetchone()
    return {
        "deliveries": len(rows),
        "copies": sum(r[1] for r in rows),
        "transactions": len({r[2] for r in rows}),
        "receivers": sorted(r[0] for r in rows),
        "alerts": alerts[0] if alerts else 0,
        "jobs": jobs[0] if jobs else 0,
    }


async def test_deliveries_arriving_together_share_one_commit_and_copies_count_once(
    pg_url: str,
) -> None:
    """40 distinct deliveries and 10 copies of one more (an HA pair's peer, retries), all at
    once: every one is answered with what it changed, all are committed when answered, each
    occurrence exists once, and they took a few transactions, not one each."""
    engine = make_engine(pg_url)
    upgrade(engine)
    service = AlertService(engine, AlertsSettings())
    try:
        distinct = [_delivery(i) for i in range(40)]
        copies = [_delivery(99) for _ in range(10)]
        results = await asyncio.gather(*(service.ingest(d) for d in distinct + copies))
        got = _stored(pg_url)  # answered: committed, visible to another session
        assert [r.new for r in results[:40]] == [3] * 40
        assert sum(not r.duplicate for r in results[40:]) == 1
        assert {r.delivery_id for r in results[40:]} == {results[40].delivery_id}
        assert got["deliveries"] == 41 and got["copies"] == 50
        assert got["alerts"] == 41 * 3 and got["jobs"] == 41 * 3
        assert got["transactions"] <= 4, got  # one commit per delivery before
    finally:
        service.close()
        engine.dispose()


def _on_receiver(dsn: str, receiver: str, name: str, action: str) -> None:
    """A trigger ``name`` that runs ``action`` (PL/pgSQL) on any delivery for ``receiver``."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.receiver = '{receiver}' THEN {action}; END IF;"
            " RETURN NEW; END $$"
        )
        c.execute(
            f"CREATE TRIGGER {name} BEFORE INSERT ON alert_deliveries"
            f" FOR EACH ROW EXECUTE FUNCTION {name}()"
        )


async def test_a_delivery_the_database_refuses_fails_alone_in_its_batch(pg_url: str) -> None:
    """One delivery of a batch fails in PostgreSQL: it gets the error (503 at the webhook) and
    nothing of it is written; the others of its batch are stored and answered."""
    engine = make_engine(pg_url)
    upgrade(engine)
    _on_receiver(pg_url, "bad", "refuse", "RAISE EXCEPTION 'refused'")
    service = AlertService(engine, AlertsSettings())
    try:
        batch = [_delivery(i) for i in range(6)] + [_delivery(50, "bad")]
        results = await asyncio.gather(*(service.ingest(d) for d in batch), return_exceptions=True)
        assert isinstance(results[-1], sqlalchemy.exc.DBAPIError)
        assert [getattr(r, "new", None) for r in results[:-1]] == [3] * 6
        got = _stored(pg_url)
        assert got["receivers"] == ["llmgw"] * 6 and got["alerts"] == 18
    finally:
        service.close()
        engine.dispose()


def _kill_the_stalled_backend(dsn: str, stop: threading.Event) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        while not stop.is_set():
            row = c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event = 'PgSleep'"
            ).fetchone()
            if row:
                return
            time.sleep(0.05)


async def test_a_batch_whose_connection_dies_fails_whole_and_writes_nothing(
    pg_url: str,
) -> None:
    """The database connection dies in the middle of a batch (after some of its deliveries'
    statements ran): every delivery of the batch gets the error (503, Alertmanager retries)
    and none of them is stored, not even the ones whose statements had run."""
    engine = make_engine(pg_url)
    upgrade(engine)
    _on_receiver(pg_url, "slow", "stall", "PERFORM pg_sleep(30)")
    service = AlertService(engine, AlertsSettings())
    stop = threading.Event()
    killer = threading.Thread(target=_kill_the_stalled_backend, args=(pg_url, stop))
    killer.start()
    try:
        # Sorted by digest in the transaction: the stalled one comes after some of the others.
        batch = [_delivery(i) for i in range(12)] + [_delivery(77, "slow")]
        results = await asyncio.wait_for(
            asyncio.gather(*(service.ingest(d) for d in batch), return_exceptions=True), 60
        )
        errors = [r for r in results if isinstance(r, sqlalchemy.exc.DBAPIError)]
        assert errors and all(e.connection_invalidated for e in errors)
        stored = _stored(pg_url)
        # Whatever was answered 2xx is stored; everything that shared the dead transaction
        # (the stalled one at least) is neither stored nor answered 2xx.
        assert stored["deliveries"] == len(results) - len(errors)
        assert "slow" not in stored["receivers"]
        assert len(errors) > 1, "the batch's other deliveries were answered before the commit"
    finally:
        stop.set()
        killer.join()
        service.close()
        engine.dispose()
