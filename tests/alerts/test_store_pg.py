"""The one-statement PostgreSQL store (``llmgw.alerts.store_pg``): the race it hands back to
the portable code, and ``kill -9`` of ``llmgw serve`` mid-ingestion losing no acknowledged
delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.store import AlertStore
from llmgw.alerts.store_pg import INGEST_PARAMS, INGEST_SQL
from llmgw.config import AlertsSettings
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from tests.alerts.amdata import WEBHOOK_TOKEN, am_alert, am_payload, later
from tests.alerts.test_alertmanager_e2e import _port, _wait

pytestmark = pytest.mark.postgres
LLMGW = str(Path(sys.executable).with_name("llmgw"))


def test_the_statement_goes_out_with_postgresqls_own_placeholders() -> None:
    """Sent through ``RawCursor``, the statement is not parsed in Python per delivery: every
    named placeholder became a numbered one, each name once, in order."""
    import re

    assert "%(" not in INGEST_SQL
    numbers = {int(n) for n in re.findall(r"\$(\d+)", INGEST_SQL)}
    assert numbers == set(range(1, len(INGEST_PARAMS) + 1))
    assert len(set(INGEST_PARAMS)) == len(INGEST_PARAMS)
    assert {"digest", "rows", "strict", "notify"} <= set(INGEST_PARAMS)


def _waiting_on_a_lock(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("held", [False, True], ids=["portable", "held-connection"])
def test_an_occurrence_created_by_a_concurrent_delivery_is_updated_not_lost(
    pg_url: str, held: bool
) -> None:
    """Another transaction creates the occurrence after our statement looked (it is not yet
    committed, so the insert waits for it and then skips the row): the delivery still resolves
    it, with its event and job, in the same transaction. On the webhook's held connection
    (one statement, its own transaction) the statement fails on purpose and the delivery is
    stored again the portable way."""
    eng = make_engine(pg_url)
    upgrade(eng)
    store = AlertStore(eng, AlertsSettings())
    if held:
        store.hold_connections()

    def ingest(d: Any) -> Any:
        if not held:
            return store.ingest(d)
        (got,) = store.ingest_many([d])
        assert not isinstance(got, Exception), got
        return got

    firing = am_alert()
    other = psycopg.connect(pg_url)
    try:
        other.execute(
            "INSERT INTO alerts (fingerprint, starts_at, source, alertname, status, severity,"
            " labels, annotations, generator_url, receiver, first_seen, last_seen,"
            " notifications, fire_count, flapping, cls_status, search)"
            " VALUES (%s, %s, 'alertmanager', 'HighCPU', 'firing', 'critical', '{}', '{}', '',"
            " 'llmgw', now(), now(), 1, 1, false, 'pending', '')",
            (firing["fingerprint"], later(0)),
        )
        resolved = am_alert(status="resolved", ends=later(300))
        out: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: out.update(r=ingest(parse_delivery(am_payload(resolved))))
        )
        worker.start()
        deadline = time.monotonic() + 20
        while not _waiting_on_a_lock(pg_url):
            assert time.monotonic() < deadline and worker.is_alive(), "the insert never waited"
            time.sleep(0.05)
        other.commit()
        worker.join(20)
    finally:
        other.close()
    result = out["r"]
    assert (result.new, result.resolved, result.updated, result.new_ids) == (0, 1, 0, [])
    with psycopg.connect(pg_url) as c:
        status, ends, notes = c.execute(
            "SELECT status, ends_at, notifications FROM alerts"
        ).fetchone() or (None, None, None)
        kinds = [r[0] for r in c.execute("SELECT kind FROM alert_events ORDER BY id")]
        steps = [r[0] for r in c.execute("SELECT step FROM alert_jobs ORDER BY id")]
    assert (status, ends, notes) == ("resolved", later(300), 2)
    assert kinds == ["resolved"] and steps == ["publish_resolve"]
    store.close()
    eng.dispose()


@pytest.mark.parametrize("held", [False, True], ids=["pooled", "held-connection"])
def test_a_connection_plans_the_statement_again_as_the_table_grows(pg_url: str, held: bool) -> None:
    """A connection (the webhook's held one, or a pooled one of the portable path) drops its
    prepared statement once ``alerts`` has doubled since it was planned, so a plan made while
    the table was nearly empty does not stay; a copy of a delivery is still counted as one."""
    eng = make_engine(pg_url, pool_size=1)  # the portable path: always the same connection
    upgrade(eng)
    store = AlertStore(eng, AlertsSettings())
    if held:
        store.hold_connections()

    def ingest(i: int) -> Any:
        (got,) = store.ingest_many([parse_delivery(am_payload(am_alert(labels={"n": str(i)})))])
        assert not isinstance(got, Exception), got
        return got

    def plans() -> tuple[int, int]:
        sql = (
            "SELECT custom_plans, generic_plans FROM pg_prepared_statements"
            " WHERE statement LIKE 'WITH d AS%'"
        )
        if held:
            row = store._held._local.fairy.driver_connection.execute(sql).fetchone()
        else:
            with eng.connect() as c:  # (commit: psycopg's rollback drops prepared statements)
                raw: Any = c.connection.driver_connection
                row = raw.execute(sql).fetchone()
                raw.commit()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    for i in range(8):
        assert ingest(i).new == 1
    assert plans() == (5, 3)  # five custom plans, then the generic one, kept
    (copy,) = store.ingest_many([parse_delivery(am_payload(am_alert(labels={"n": "0"})))])
    assert not isinstance(copy, Exception) and copy.duplicate and copy.new == 0
    assert plans() == (5, 4)
    with psycopg.connect(pg_url) as c:  # the table grows (another writer: 4,000 occurrences)
        c.execute(
            "INSERT INTO alerts (fingerprint, starts_at, source, alertname, status, severity,"
            " labels, annotations, generator_url, receiver, first_seen, last_seen,"
            " notifications, fire_count, flapping, cls_status, search)"
            " SELECT 'g' || g, now(), 'alertmanager', 'Grow', 'firing', 'warning', '{}', '{}',"
            " '', 'llmgw', now(), now(), 1, 1, false, 'pending', repeat('x', 200)"
            " FROM generate_series(1, 4000) g"
        )
        row = c.execute("SELECT copies FROM alert_deliveries ORDER BY id LIMIT 1").fetchone()
    assert row is not None and row[0] == 2
    ingest(100)  # sees the size and lets the statement go
    assert plans() == (0, 0)
    ingest(101)
    assert plans() == (1, 0)  # planned anew, for the table as it is now
    store.close()
    eng.dispose()


def _lookups(url: str, store: AlertStore, tag: str) -> list[str]:
    """The indexes through which the ingest statement's plan for a table of this size without
    its parameters (the generic one a connection keeps) finds each occurrence of a delivery by
    its start (``EXPLAIN ANALYZE`` of a delivery of 10 new occurrences, rolled back)."""
    from datetime import UTC, datetime

    from llmgw.alerts.store_pg import _params

    d = parse_delivery(
        am_payload(*(am_alert(f"S{j}", labels={"n": f"{tag}{j}"}) for j in range(10)))
    )
    params, _ = _params(store, d, datetime.now(UTC), strict=False)
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "starts_at = " in node.get("Index Cond", ""):
            found.append(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    with psycopg.connect(url) as c:
        c.execute("SET plan_cache_mode = force_generic_plan")
        c.execute(f"PREPARE ingest AS {INGEST_SQL}")
        cur = psycopg.ClientCursor(c)
        marks = ", ".join(["%s"] * len(params))
        cur.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE ingest({marks})", params)
        row = cur.fetchone()
        assert row is not None
        walk(row[0][0]["Plan"])
        c.rollback()
    return found


def test_the_worker_gives_a_young_alerts_table_its_statistics(pg_url: str) -> None:
    """Autovacuum takes a new table's first statistics only at its next visit to the database
    (up to a minute): a new deployment's first storm (its alerts share one start) was stored
    with plans made without them, which found each occurrence through the index on its start
    alone and read every occurrence of that start (issue 14). ``tend`` (the worker's, four
    times a second) analyzes the looked-up columns once ``alerts`` passes 64 KiB, and again
    whenever it has doubled since."""
    from llmgw.alerts.store_pg import ANALYZE_FROM_BYTES, tend

    eng = make_engine(pg_url)
    upgrade(eng)
    with psycopg.connect(pg_url, autocommit=True) as c:  # before autovacuum's visit, always
        c.execute("ALTER TABLE alerts SET (autovacuum_enabled = false)")
    store = AlertStore(eng, AlertsSettings())

    def analyzed() -> tuple[int, list[str]]:
        with psycopg.connect(pg_url) as c:
            row = c.execute(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'alerts'"
            ).fetchone()
            cols = [r[0] for r in c.execute(
                "SELECT attname FROM pg_stats WHERE tablename = 'alerts' ORDER BY 1")]  # fmt: skip
        return (int(row[0]) if row else 0), cols

    def size() -> int:
        with psycopg.connect(pg_url) as c:
            row = c.execute("SELECT pg_relation_size('alerts')").fetchone()
        return int(row[0]) if row else 0

    def storm(deliveries: int, tag: str) -> None:  # 10 new occurrences each, one start
        for i in range(deliveries):
            store.ingest(parse_delivery(am_payload(*(
                am_alert(f"S{j}", labels={"n": f"{tag}{i}-{j}"}) for j in range(10)))))  # fmt: skip

    storm(2, "a")
    assert size() < ANALYZE_FROM_BYTES
    tend(eng)
    assert analyzed() == (0, [])  # too small to matter yet
    storm(85, "b")  # 870 occurrences sharing a start
    tend(eng)
    assert analyzed() == (1, ["fingerprint", "starts_at", "status"])
    assert set(_lookups(pg_url, store, "c")) == {"uq_alerts_fingerprint_starts_at"}
    tend(eng)
    assert analyzed()[0] == 1  # not again until the table has doubled
    grown = 2 * size()
    while size() < grown:
        storm(20, f"d{size()}")
    tend(eng)
    assert analyzed()[0] == 2
    store.close()
    eng.dispose()


@pytest.mark.slow
def test_kill_9_during_ingestion_loses_no_acknowledged_delivery(
    pg_url: str, tmp_path: Path, home: Path
) -> None:
    """Deliveries stream into ``llmgw serve`` on PostgreSQL; it is killed with SIGKILL in the
    middle. Every delivery answered 200 is in the history with its occurrence and its job."""
    eng = make_engine(pg_url)
    upgrade(eng)
    eng.dispose()
    port = _port()
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "{pg_url}"\n[alerts]\nwebhook_token = "{WEBHOOK_TOKEN}"\n'
        'mode = "transparent"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    env["LLMGW_HOME"] = str(home)
    log = (tmp_path / "serve.log").open("wb")
    gw = subprocess.Popen(
        [LLMGW, "--config", str(cfg), "serve", "--port", str(port), "--no-migrate"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    acked: list[int] = []
    stop = threading.Event()

    def post() -> None:
        hook = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        with httpx.Client(timeout=5) as client:
            for i in range(100_000):
                if stop.is_set():
                    return
                body = am_payload(am_alert(labels={"instance": f"n{i}"}))
                try:
                    r = client.post(f"http://127.0.0.1:{port}/alerts/webhook", json=body,
                                    headers=hook)  # fmt: skip
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    acked.append(i)

    try:
        _wait(f"http://127.0.0.1:{port}/readyz", gw, tmp_path / "serve.log")
        sender = threading.Thread(target=post)
        sender.start()
        deadline = time.monotonic() + 60
        while len(acked) < 40:
            assert time.monotonic() < deadline and sender.is_alive(), "too few deliveries"
            time.sleep(0.01)
        gw.send_signal(signal.SIGKILL)
        gw.wait(10)
        sender.join(10)
    finally:
        stop.set()
        if gw.poll() is None:
            gw.kill()
            gw.wait(10)
        log.close()
    with psycopg.connect(pg_url) as c:
        stored = {
            r[0]
            for r in c.execute(
                "SELECT labels->>'instance' FROM alerts a"
                " JOIN alert_jobs j ON j.alert_id = a.id"
                " AND j.step = 'classify'"
            )  # fmt: skip
        }
    assert len(acked) >= 40
    assert {f"n{i}" for i in acked} <= stored


def _pending_pages(dsn: str) -> int:
    """Pages in the pending lists of the GIN indexes on ``alerts`` (their metapages)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        names = [r[0] for r in c.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am am ON am.oid = c.relam"
            " WHERE i.indrelid = 'alerts'::regclass AND am.amname = 'gin'")]  # fmt: skip
        assert len(names) == 2  # labels and the search text (migration 0009)
        total = 0
        for name in names:
            row = c.execute(
                "SELECT n_pending_pages FROM gin_metapage_info(get_raw_page(%s, 0))", (name,)
            ).fetchone()
            total += int(row[0]) if row else 0
    return total


def _deliver(store: AlertStore, n: int, tag: str) -> None:
    for i in range(n):
        labels = {"instance": f"{tag}{i}", "job": "node"}
        store.ingest(parse_delivery(am_payload(*(
            am_alert(f"Search{j}", labels={**labels, "n": str(j)}) for j in range(10)))))  # fmt: skip


async def test_the_worker_keeps_the_search_indexes_pending_lists_flushed(pg_url: str) -> None:
    """New occurrences' search entries wait in the GIN indexes' pending lists; the insert that
    finds a list above 4 MB merged all of it inside a webhook delivery (100-280 ms at 2,000
    alerts/s, issue 14). The worker of ``llmgw serve`` flushes them four times a second instead."""
    import asyncio

    from llmgw.alerts.queue import JobQueue
    from llmgw.alerts.stats import AlertStats
    from llmgw.alerts.store_pg import TEND_INTERVAL, tend
    from llmgw.alerts.worker import AlertWorker, Done

    eng = make_engine(pg_url)
    upgrade(eng)
    store = AlertStore(eng, AlertsSettings())
    try:
        await asyncio.to_thread(_deliver, store, 20, "a")
        assert _pending_pages(pg_url) > 0  # (fastupdate: the entries wait in the list)
        assert tend(eng) > 0
        assert _pending_pages(pg_url) == 0
        await asyncio.to_thread(_deliver, store, 20, "b")
        assert _pending_pages(pg_url) > 0

        async def done(job: Any) -> Done:
            return Done()

        worker = AlertWorker(JobQueue(eng), {"classify": done, "publish": done},
                             AlertsSettings(poll_interval=0.05), AlertStats(),
                             tend=lambda: tend(eng))  # fmt: skip

        async def flushed() -> bool:  # nothing else flushes: 20 deliveries stay under 4 MB
            deadline = time.monotonic() + 10 * TEND_INTERVAL + 5  # a loaded CI machine
            while time.monotonic() < deadline:
                if _pending_pages(pg_url) == 0:
                    return True
                await asyncio.sleep(TEND_INTERVAL / 5)
            return False

        worker.start()
        try:
            assert await flushed()  # at its first look
            await asyncio.to_thread(_deliver, store, 20, "c")  # new entries wait...
            assert await flushed()  # ...and go again, on its own schedule
        finally:
            await worker.aclose(grace=5)
        # the search still finds what the flush moved
        from llmgw.alerts.queries import AlertFilter, AlertHistory

        found = AlertHistory(eng).list(AlertFilter(q="Search3"), limit=200)
        assert len(found["data"]) == 60
    finally:
        eng.dispose()


async def test_a_worker_that_may_not_flush_the_indexes_says_so_once_and_goes_on(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the indexes' owner (or a superuser) may flush their pending lists: a gateway that
    connects as another role logs one warning, stops trying, and its worker keeps working."""
    import asyncio
    import uuid

    from sqlalchemy.engine import make_url

    from llmgw.alerts.queue import JobQueue
    from llmgw.alerts.stats import AlertStats
    from llmgw.alerts.store_pg import tend
    from llmgw.alerts.worker import AlertWorker, Done

    eng = make_engine(pg_url)
    upgrade(eng)
    role = f"llmgw_t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        c.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    other = make_engine(make_url(pg_url).set(username=role).render_as_string(hide_password=False))
    ran: list[int] = []

    async def classify(job: Any) -> Done:
        ran.append(job.alert_id)
        return Done()

    worker = AlertWorker(JobQueue(other), {"classify": classify, "publish": classify},
                         AlertsSettings(poll_interval=0.05), AlertStats(),
                         tend=lambda: tend(other))  # fmt: skip
    try:
        with caplog.at_level("WARNING", logger="llmgw.alerts"):
            worker.start()
            await asyncio.to_thread(_deliver, AlertStore(other, AlertsSettings()), 1, "x")
            worker.wake()
            for _ in range(100):
                if len(ran) >= 10:
                    break
                await asyncio.sleep(0.05)
        assert len(ran) >= 10  # the jobs still ran
        assert worker.tend is None
        warned = [r for r in caplog.records if "pending lists" in r.getMessage()]
        assert len(warned) == 1
    finally:
        await worker.aclose(grace=5)
        other.dispose()
        eng.dispose()
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute(f"DROP OWNED BY {role}")
            c.execute(f"DROP ROLE {role}")
