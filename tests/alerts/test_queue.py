"""The job queue's claims (``JobQueue.claim``): two workers claiming at once never get the same
job; a lease that ran out is claimed again with ``attempts`` counted; a finished job is not."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.queue import ClaimedJob, JobQueue
from llmgw.alerts.store import AlertStore
from llmgw.config import AlertsSettings
from tests.alerts.amdata import am_alert, am_payload, later


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
