"""On PostgreSQL an occurrence stored by another instance wakes this instance's worker through
``LISTEN``/``NOTIFY`` (migration 0018's trigger, ``llmgw.alerts.wakeups``): its classification
starts at once, not at the next poll; without the listener the same worker waits for the poll."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.queue import ClaimedJob, JobQueue
from llmgw.alerts.stats import AlertStats
from llmgw.alerts.store import AlertStore
from llmgw.alerts.wakeups import JobNotifications
from llmgw.alerts.worker import AlertWorker, Done, StepResult
from llmgw.config import AlertsSettings
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from tests.alerts.amdata import am_alert, am_payload

POLL = 60.0  # the worker's poll: nothing in this test may wait for it


@pytest.mark.postgres
async def test_a_job_queued_elsewhere_is_run_at_once_not_at_the_next_poll(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    settings = AlertsSettings(poll_interval=POLL)
    ran: asyncio.Queue[float] = asyncio.Queue()

    async def classify(job: ClaimedJob) -> StepResult:
        ran.put_nowait(time.monotonic())
        return Done()

    async def publish(job: ClaimedJob) -> StepResult:
        return Done()

    steps = {"classify": classify, "publish": publish}
    worker = AlertWorker(JobQueue(engine), steps, settings, AlertStats())
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    wakeups = JobNotifications(url, worker.wake)
    other = AlertStore(engine, settings)  # another instance's webhook: no local wake-up

    def deliver(name: str) -> float:
        other.ingest(parse_delivery(am_payload(am_alert(name))))
        return time.monotonic()

    try:
        worker.start()
        wakeups.start()
        await asyncio.wait_for(wakeups.listening.wait(), 10)
        await asyncio.sleep(0.2)  # the worker found the queue empty and sleeps for POLL
        stored = await asyncio.to_thread(deliver, "HighCPU")
        started = await asyncio.wait_for(ran.get(), 10)
        assert started - stored < POLL / 10  # well before the poll (a few ms when idle)
        assert wakeups.received >= 1
        # without the listener, the same kind of job waits for the poll
        await wakeups.aclose()
        await asyncio.to_thread(deliver, "DiskFull")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ran.get(), 2)
        worker.wake()  # (the poll would have found it)
        await asyncio.wait_for(ran.get(), 10)
    finally:
        await wakeups.aclose()
        await worker.aclose(grace=5)
        engine.dispose()


@pytest.mark.postgres
async def test_the_webhooks_deliveries_commit_without_notifying_and_are_announced_after(
    pg_url: str,
) -> None:
    """``llmgw serve`` stores its webhook's deliveries without the trigger's ``NOTIFY`` (a
    notifying commit waits for every other one in the cluster) and announces them after the
    commit: another instance's worker still starts at once; a store told not to notify, with
    no announcer, is silent (only the poll would find its jobs)."""
    from llmgw.alerts.service import AlertService
    from llmgw.alerts.wakeups import JobAnnouncer

    engine = make_engine(pg_url)
    upgrade(engine)
    settings = AlertsSettings(poll_interval=POLL)
    heard: asyncio.Queue[float] = asyncio.Queue()
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    listener = JobNotifications(url, lambda: heard.put_nowait(time.monotonic()))
    service = AlertService(engine, settings)  # this instance's webhook
    announcer = JobAnnouncer(url)
    service.announce_jobs(announcer)
    try:
        listener.start()
        await asyncio.wait_for(listener.listening.wait(), 10)
        await asyncio.wait_for(heard.get(), 10)  # (the wake-up after connecting)
        silent = AlertStore(engine, settings)
        silent.notify = False
        await asyncio.to_thread(silent.ingest, parse_delivery(am_payload(am_alert("Quiet"))))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(heard.get(), 1)
        for name in ("HighCPU", "DiskFull", "Latency"):
            result = await service.ingest(parse_delivery(am_payload(am_alert(name))))
            assert result.new == 1
        await asyncio.wait_for(heard.get(), 10)
        assert 1 <= announcer.sent <= 3
        assert JobQueue(engine).depth()["pending"] == 4  # every delivery's job is queued
    finally:
        await announcer.aclose()
        await listener.aclose()
        service.close()
        engine.dispose()


@pytest.mark.postgres
async def test_a_flood_of_wake_ups_is_answered_by_a_look_a_tenth_of_a_second_not_one_each(
    pg_url: str,
) -> None:
    """During a flood every delivery wakes the worker; it looks at the queue at most once per
    ``WAKE_SPACING`` (0.1 s) for them, taking the jobs queued meanwhile together, instead of once
    per delivery (a claim and its commit each, on the cores the deliveries need), and still runs
    every job within a moment of its delivery."""
    from llmgw.alerts.worker import WAKE_SPACING

    engine = make_engine(pg_url)
    upgrade(engine)
    # room for every job of the flood in one look: a full look would go on to the next at once
    settings = AlertsSettings(poll_interval=POLL, concurrency=256)
    started: list[float] = []
    batches: list[int] = []
    looked: list[float] = []

    class Classify:
        async def prepare(self, jobs: list[ClaimedJob]) -> None:  # once per look with jobs
            batches.append(len(jobs))
            looked.append(time.monotonic())

        async def __call__(self, job: ClaimedJob) -> StepResult:
            started.append(time.monotonic())
            return Done()

    async def publish(job: ClaimedJob) -> StepResult:
        return Done()

    worker = AlertWorker(
        JobQueue(engine), {"classify": Classify(), "publish": publish}, settings, AlertStats()
    )
    store = AlertStore(engine, settings)
    stored: list[float] = []
    try:
        worker.start()
        await asyncio.sleep(0.2)  # the worker found the queue empty and waits for a wake-up
        flood_start = time.monotonic()
        for i in range(150):  # a delivery every few ms, each followed by a wake-up
            await asyncio.to_thread(store.ingest, parse_delivery(am_payload(am_alert(f"F{i}"))))
            stored.append(time.monotonic())
            worker.wake()
        flood_end = time.monotonic()
        flood = flood_end - flood_start
        for _ in range(100):
            if len(started) >= 150:
                break
            await asyncio.sleep(0.05)
        # not one per delivery: while they flow in, one look per started spacing (and the one
        # the first delivery's wake-up starts at once)
        during = sum(t <= flood_end for t in looked)
        assert during <= math.ceil(flood / WAKE_SPACING) + 1, (during, flood, batches)
        assert len(batches) < 150 / 3, batches
        assert len(started) == 150  # every job ran, none left for the poll
        assert max(started) - stored[-1] < 1.0  # the last delivery's job within a moment
    finally:
        await worker.aclose(grace=5)
        engine.dispose()
