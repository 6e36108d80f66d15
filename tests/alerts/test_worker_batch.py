"""The worker's batches: one read of a batch's occurrences and one transaction settling the jobs
that finished together (their classifications, events and follow-up jobs with them)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.queries import AlertHistory
from llmgw.alerts.queue import ClaimedJob, JobQueue
from llmgw.alerts.stats import AlertStats
from llmgw.alerts.store import AlertStore
from llmgw.alerts.worker import AlertWorker, ClassifyStep, Done, StepResult
from llmgw.config import AlertsSettings
from tests.alerts.amdata import am_alert, am_payload


async def test_a_batch_is_read_once_and_settled_in_one_transaction(engine: Engine) -> None:
    settings = AlertsSettings(mode="transparent", concurrency=8)
    store = AlertStore(engine, settings)
    store.ingest(
        parse_delivery(am_payload(*(am_alert(labels={"instance": f"n{i}"}) for i in range(8))))
    )
    history = AlertHistory(engine)
    published: list[int] = []

    async def publish(job: ClaimedJob) -> StepResult:
        published.append(job.alert_id)
        return Done()

    worker = AlertWorker(
        JobQueue(engine),
        {"classify": ClassifyStep(history, None, settings), "publish": publish},
        settings,
        AlertStats(),
    )
    commits: list[int] = []

    def count(_conn: Any) -> None:
        commits.append(1)

    sa.event.listen(engine, "commit", count)
    try:
        assert await worker.drain() == 16  # 8 classify jobs, then their 8 publish jobs
    finally:
        sa.event.remove(engine, "commit", count)
    # before: a transaction per job for its classification, its settlement and its follow-up
    # (32 for the classify jobs alone); now a claim and a settlement per batch, and the last
    # (empty) claim
    assert len(commits) <= 6, len(commits)
    with engine.connect() as conn:
        alerts = conn.execute(sa.text("SELECT id, cls_status FROM alerts")).all()
        kinds = conn.execute(sa.text("SELECT kind FROM alert_events WHERE kind = 'classified'"))
        jobs = conn.execute(sa.text("SELECT step, state FROM alert_jobs")).all()
    assert {status for _, status in alerts} == {"skipped"}
    assert len(kinds.all()) == 8
    assert sorted(set(jobs)) == [("classify", "done"), ("publish", "done")] and len(jobs) == 16
    assert sorted(published) == sorted(i for i, _ in alerts)


async def test_a_deleted_occurrence_ends_its_job(engine: Engine) -> None:
    """An occurrence gone (retention) before its job ran: the step is done, nothing written."""
    settings = AlertsSettings(mode="transparent")
    step = ClassifyStep(AlertHistory(engine), None, settings)
    gone = ClaimedJob(id=1, alert_id=999_999, step="classify", attempts=1)
    result: Any = await step(gone)  # not read with its batch: looked up alone
    assert result == Done()
    await step.prepare([gone])  # read with its batch: known to be missing
    assert await step(gone) == Done()


async def test_a_failed_settlement_keeps_the_batch_running_and_unsaved(tmp_path: Any) -> None:
    """The settling transaction fails (here a trigger refuses it): nothing of the batch is
    written, not even the classifications, and its jobs stay leased, to run again when their
    lease runs out; the worker's loop sees the error."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(engine)
    settings = AlertsSettings(mode="transparent")
    AlertStore(engine, settings).ingest(parse_delivery(am_payload(am_alert(), am_alert("Disk"))))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE UPDATE ON alert_jobs WHEN NEW.state = 'done'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    step = ClassifyStep(AlertHistory(engine), None, settings)
    worker = AlertWorker(JobQueue(engine), {"classify": step}, settings, AlertStats())
    try:
        with pytest.raises(sa.exc.DBAPIError):
            await worker.run_once()
        with engine.connect() as conn:
            cls = conn.execute(sa.text("SELECT cls_status FROM alerts")).scalars().all()
            states = conn.execute(sa.text("SELECT state FROM alert_jobs")).scalars().all()
        assert cls == ["pending", "pending"] and states == ["running", "running"]
    finally:
        engine.dispose()
