"""The job queue's claims (``JobQueue.claim``): two workers claiming at once never get the same
job; a lease that ran out is claimed again with ``attempts`` counted; a finished job is not; a
claim held up by another session's lock gives up and is tried again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy.engine import Engine

from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.queue import ClaimedJob, JobQueue
from llmgw.alerts.store import AlertStore
from llmgw.config import AlertsSettings, Settings
from llmgw.server.app import gateway_of
from llmgw.storage.db import make_engine
from tests.alerts.amdata import am_alert, am_payload, later
from tests.alerts.test_classification import query, running, until


def _jobs(engine: Engine, n: int) -> list[int]:
    alerts = [am_alert(f"Q{i}", starts=later(i)) for i in range(n)]
    result = AlertStore(engine, AlertsSettings()).ingest(parse_delivery(am_payload(*alerts)))
    assert result.new == n
    return result.new_ids


def test_concurrent_claims_are_disjoint_and_leases_expire(engine: Engine) -> None:
    ids = _jobs(engine, 12)
    queues = [JobQueue(engine, owner=f"w{i}") for i in range(3)]
    got: list[list[ClaimedJob]] = [[] for _ in queues]
    start = threading.Barrier(len(queues))

    def claim(i: int) -> None:
        start.wait()
        got[i] = queues[i].claim(5, lease_seconds=60)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(queues))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [j for batch in got for j in batch]
    assert all(len(batch) <= 5 for batch in got)
    assert len({j.id for j in claimed}) == len(claimed)  # nobody got a job twice
    assert {j.attempts for j in claimed} == {1}
    rest = queues[0].claim(100, lease_seconds=60)  # what the three left (all due jobs now)
    assert {j.id for j in rest}.isdisjoint({j.id for j in claimed})
    everything = claimed + rest
    assert {j.alert_id for j in everything} == set(ids)  # every new alert's job, once each
    if engine.dialect.name == "postgresql":  # SKIP LOCKED: a claim never comes back short
        assert sorted(len(batch) for batch in got) == [2, 5, 5]
    assert queues[1].claim(100, lease_seconds=60) == []  # every job is leased
    owner, done = next((i, batch[0]) for i, batch in enumerate(got) if batch)
    assert not queues[(owner + 1) % 3].finish(done)  # not its lease
    assert queues[owner].finish(done)
    later_on = JobQueue(engine, owner="w9", now=lambda: datetime.now(UTC) + timedelta(minutes=5))
    again = later_on.claim(100, lease_seconds=60)  # the leases ran out: taken over
    assert {j.id for j in again} == {j.id for j in everything} - {done.id}
    assert {j.attempts for j in again} == {2}
    assert not queues[1].finish(again[0])  # the lease now belongs to w9
    assert later_on.finish(again[0])


@pytest.mark.postgres
async def test_a_claim_held_up_by_a_table_lock_gives_up_and_is_retried(
    pg_url: str,
    classifying_settings: Callable[..., Settings],
    hook_auth: dict[str, str],
) -> None:
    """Another session holds ``alert_jobs`` in SHARE mode (as ``CREATE INDEX`` does), which the
    claim's update must wait for: the claim gives up after ``CLAIM_LOCK_TIMEOUT``, the worker
    counts the error, readiness says so, and the worker claims again at its next look (before,
    it waited as long as the lock was held). Once the lock goes, the alert is classified."""
    settings = classifying_settings(pg_url)
    engine = make_engine(pg_url)
    try:
        [alert_id] = _jobs(engine, 1)  # queued before the gateway starts
    finally:
        engine.dispose()
    locker = psycopg.connect(pg_url)
    try:
        locker.execute("LOCK TABLE alert_jobs IN SHARE MODE")  # held until the rollback
        async with running(settings) as (app, client):
            worker = gateway_of(app).alerts.worker
            t0 = time.monotonic()
            await until(lambda: worker.stats.worker_errors >= 2, limit=30)  # gave up twice
            assert time.monotonic() - t0 < 20
            assert worker.last_error == "OperationalError"
            assert (await client.get("/readyz")).status_code == 503
            status = query(pg_url, f"SELECT cls_status FROM alerts WHERE id = {alert_id}")
            assert status[0]["cls_status"] == "pending"
            locker.rollback()  # the lock goes: the next claim takes the job
            await until(
                lambda: (
                    query(pg_url, f"SELECT cls_status FROM alerts WHERE id = {alert_id}")[0][
                        "cls_status"
                    ]
                    == "ok"
                )
            )
            await until(lambda: worker.last_error is None)
            assert (await client.get("/readyz")).status_code == 200
    finally:
        locker.rollback()
        locker.close()
