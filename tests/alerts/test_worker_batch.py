"""The worker's batches: one read of a batch's occurrences and one transaction settling the jobs
that finished together (their classifications, events and follow-up jobs with them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


async def test_a_settlement_is_a_statement_per_kind_not_per_job(engine: Engine) -> None:
    """Issue 14: a group of finished jobs (done, retried, refunded, given up) is settled with
    one statement per kind and one look-up and insert of the follow-ups, whatever its size;
    each job still ends as its step said, and a follow-up is queued once."""
    from llmgw.alerts.worker import GiveUp, Retry

    settings = AlertsSettings(mode="transparent", concurrency=16)
    store = AlertStore(engine, settings)
    store.ingest(
        parse_delivery(am_payload(*(am_alert(labels={"instance": f"n{i}"}) for i in range(12))))
    )
    queue = JobQueue(engine)
    jobs = queue.claim(16, 60)
    assert len(jobs) == 12
    kinds: list[StepResult] = [
        Done(),
        Retry("later", 30.0),
        Retry("RateLimited: the classifier's alerts.rpm is used up", 60.0, refund=True),
        GiveUp("broken"),
    ]
    results: list[tuple[ClaimedJob, StepResult]] = [
        (job, kinds[i % 4]) for i, job in enumerate(jobs)
    ]
    worker = AlertWorker(queue, {}, settings, AlertStats())
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql.split()[0].upper())

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        worker._write(results)
        worker._write(results)  # settled already (lease gone): changes nothing, no duplicates
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    # per settlement: 3 kinds of update, a look-up and an insert of the follow-ups (was 5 a job)
    assert len(statements) <= 2 * 5 + 2, statements
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT alert_id, step, state, attempts, last_error FROM alert_jobs")
        ).all()
    by_alert = {(r.alert_id, r.step): r for r in rows}
    for i, job in enumerate(jobs):
        r = by_alert[(job.alert_id, "classify")]
        want = ["done", "pending", "pending", "failed"][i % 4]
        assert r.state == want, (i, r)
        assert r.attempts == (0 if i % 4 == 2 else 1)  # the refused claim is not an attempt
        if i % 4 == 3:
            assert r.last_error == "broken"
    publish = [r for r in rows if r.step == "publish"]
    assert len(publish) == 12  # every first attempt queues publishing, once


class _Blocked:
    """``RouterCompleter`` with ``alerts.rpm`` used up: it defers, and must not be called."""

    def blocked_for(self) -> float:
        return 30.0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no call while alerts.rpm is used up")


async def test_while_rpm_is_used_up_a_wide_batch_uses_the_cache_and_defers_the_rest(
    engine: Engine,
) -> None:
    """Issue 14: while ``alerts.rpm`` is used up, every other batch takes ``DEFER_BATCH`` times
    ``concurrency`` classify jobs (one claim, one read, one cache look-up, one settlement for
    all): a cached label set is classified, the others are deferred without a trace on the
    occurrence (still ``pending``, no event, no attempt spent) and still queue publishing."""
    from llmgw.alerts.cache import DatabaseCache
    from llmgw.alerts.classifier import Classifier, cache_key
    from llmgw.alerts.worker import DEFER_BATCH

    settings = AlertsSettings(mode="enriched", concurrency=2, rpm=60)
    n = 2 * DEFER_BATCH + 4
    store = AlertStore(engine, settings)
    store.ingest(
        parse_delivery(am_payload(*(am_alert(labels={"instance": f"n{i}"}) for i in range(n))))
    )
    history = AlertHistory(engine)
    cache = DatabaseCache(engine)
    first = history.get_many(range(1, n + 1))
    cached = min(first)
    result = {"severity": "warning", "category": "other", "summary": "s", "probable_cause": "c",
              "recommendations": [], "confidence": 0.5, "model": "emu/m",
              "prompt_version": settings.prompt_version, "latency_ms": 1.0}  # fmt: skip
    await cache.set(cache_key(first[cached]["labels"], settings), result, 3600)
    classifier = Classifier(_Blocked(), cache, settings, AlertStats())
    published: list[int] = []

    async def publish(job: ClaimedJob) -> StepResult:
        published.append(job.alert_id)
        return Done()

    worker = AlertWorker(
        JobQueue(engine),
        {"classify": ClassifyStep(history, classifier, settings), "publish": publish},
        settings,
        AlertStats(),
    )
    assert await worker.run_once() == 2 * DEFER_BATCH  # wide: classify jobs only
    with engine.connect() as conn:
        alerts = {
            r.id: r.cls_status for r in conn.execute(sa.text("SELECT id, cls_status FROM alerts"))
        }
        jobs = conn.execute(
            sa.text("SELECT alert_id, step, state, attempts, last_error FROM alert_jobs")
        ).all()
        events = conn.execute(
            sa.text("SELECT alert_id, kind FROM alert_events WHERE kind LIKE 'classif%'")
        ).all()
    assert alerts[cached] == "ok"
    assert sorted(alerts.values()).count("pending") == n - 1
    assert [(e.alert_id, e.kind) for e in events] == [(cached, "classified")]
    deferred = [j for j in jobs if j.step == "classify" and j.state == "pending" and j.last_error]
    assert len(deferred) == 2 * DEFER_BATCH - 1
    assert all(j.attempts == 0 and "alerts.rpm" in j.last_error for j in deferred)
    assert len([j for j in jobs if j.step == "publish"]) == 2 * DEFER_BATCH
    assert await worker.run_once() <= settings.concurrency  # the next batch is a normal one
    assert classifier.stats.classifications["deferred"] >= 2 * DEFER_BATCH - 1


async def test_no_publish_job_is_queued_while_publishing_has_no_target(engine: Engine) -> None:
    """Issue 14: a follow-up step that says it is idle (publishing without targets) is not
    queued: its job would be claimed and settled for nothing."""
    settings = AlertsSettings(mode="transparent", concurrency=8)
    store = AlertStore(engine, settings)
    store.ingest(
        parse_delivery(am_payload(*(am_alert(labels={"instance": f"n{i}"}) for i in range(4))))
    )

    class Idle:
        targets: list[str] = []

        def idle(self) -> bool:
            return not self.targets

        async def __call__(self, job: ClaimedJob) -> StepResult:
            return Done()

    idle = Idle()
    worker = AlertWorker(
        JobQueue(engine),
        {"classify": ClassifyStep(AlertHistory(engine), None, settings), "publish": idle},
        settings,
        AlertStats(),
    )
    assert await worker.drain() == 4
    store.ingest(parse_delivery(am_payload(am_alert(labels={"instance": "late"}))))
    idle.targets.append("slack")
    assert await worker.drain() == 2  # its classify, then its publish
    with engine.connect() as conn:
        steps = conn.execute(sa.text("SELECT step FROM alert_jobs ORDER BY id")).scalars().all()
    assert steps.count("publish") == 1


async def test_while_rpm_is_used_up_and_nothing_follows_new_jobs_are_swept_without_claims(
    engine: Engine,
) -> None:
    """Issue 14: with publishing idle (no target), new classify jobs are looked at without a
    claim: the cached label set is claimed and classified, the others are deferred to their
    turns in one statement (still pending, no attempt, no event), and a sweep never takes a
    deferred job again before its turn."""
    from llmgw.alerts.cache import DatabaseCache
    from llmgw.alerts.classifier import Classifier, cache_key
    from llmgw.alerts.worker import SWEEP_BATCH

    settings = AlertsSettings(mode="enriched", concurrency=2, rpm=60)
    n = 12
    store = AlertStore(engine, settings)
    store.ingest(
        parse_delivery(am_payload(*(am_alert(labels={"instance": f"n{i}"}) for i in range(n))))
    )
    history = AlertHistory(engine)
    cache = DatabaseCache(engine)
    first = history.get_many(range(1, n + 1))
    cached = max(first)
    result = {"severity": "warning", "category": "other", "summary": "s", "probable_cause": "c",
              "recommendations": [], "confidence": 0.5, "model": "emu/m",
              "prompt_version": settings.prompt_version, "latency_ms": 1.0}  # fmt: skip
    await cache.set(cache_key(first[cached]["labels"], settings), result, 3600)
    classifier = Classifier(_Blocked(), cache, settings, AlertStats())

    class Idle:
        def idle(self) -> bool:
            return True

        async def __call__(self, job: ClaimedJob) -> StepResult:
            raise AssertionError("not queued")

    clock = [datetime.now(UTC)]
    queue = JobQueue(engine, now=lambda: clock[0])
    claims: list[int] = []
    claim = queue.claim

    def counted(*args: Any, **kwargs: Any) -> list[ClaimedJob]:
        claims.append(1)
        return claim(*args, **kwargs)

    queue.claim = counted  # type: ignore[method-assign]
    worker = AlertWorker(
        queue,
        {"classify": ClassifyStep(history, classifier, settings), "publish": Idle()},
        settings,
        AlertStats(),
    )
    assert n <= SWEEP_BATCH
    assert await worker.run_once() == n  # the sweep: every new job looked at, none claimed
    assert not claims
    with engine.connect() as conn:
        alerts = {
            r.id: r.cls_status for r in conn.execute(sa.text("SELECT id, cls_status FROM alerts"))
        }
        jobs = conn.execute(
            sa.text("SELECT alert_id, step, state, attempts, last_error FROM alert_jobs")
        ).all()
        events = conn.execute(
            sa.text("SELECT alert_id FROM alert_events WHERE kind LIKE 'classif%'")
        ).all()
    assert alerts[cached] == "ok" and list(alerts.values()).count("pending") == n - 1
    assert [e.alert_id for e in events] == [cached]
    deferred = [j for j in jobs if j.state == "pending"]
    assert len(deferred) == n - 1 and all(
        j.attempts == 0 and "alerts.rpm" in j.last_error for j in deferred
    )
    assert not [j for j in jobs if j.step == "publish"]
    assert classifier.stats.classifications["deferred"] == n - 1
    assert await worker.run_once() == 0  # a normal batch: nothing due (turns are later)
    assert await worker.run_once() == 0  # a sweep: the deferred jobs are not new any more
    clock[0] += timedelta(days=1)  # their turns came: a normal batch takes them (deferred again)
    assert await worker.run_once() == settings.concurrency
    assert len(claims) == 2  # the normal batches only


async def test_in_transparent_mode_skips_are_claimed_many_at_a_time(engine: Engine) -> None:
    """Issue 14: in ``transparent`` mode a classify job only records ``skipped`` (no call), so
    every other look claims ``DEFER_BATCH`` times ``alerts.concurrency`` of them, as it does
    cache hits and deferrals: at 2,000 new alerts/s looks of 8 jobs were 250 a second, and
    the webhook's p99 was 243 ms."""
    from llmgw.alerts.worker import DEFER_BATCH

    settings = AlertsSettings(mode="transparent", concurrency=4)
    AlertStore(engine, settings).ingest(
        parse_delivery(am_payload(*(am_alert(labels={"instance": f"n{i}"}) for i in range(50))))
    )
    history = AlertHistory(engine)

    class NoTargets:  # publishing without a target: nothing follows a skip
        def idle(self) -> bool:
            return True

        async def __call__(self, job: ClaimedJob) -> StepResult:
            return Done()

    steps: dict[str, Any] = {
        "classify": ClassifyStep(history, None, settings),
        "publish": NoTargets(),
    }
    worker = AlertWorker(JobQueue(engine), steps, settings, AlertStats())

    def skipped() -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM alerts WHERE cls_status = 'skipped'")
                ).scalar_one()
            )

    assert await worker.run_once() == 4 * DEFER_BATCH
    assert skipped() == 32
    assert await worker.run_once() == 4  # then a look of alerts.concurrency: other steps' turn
    assert await worker.drain() == 14
    assert skipped() == 50
