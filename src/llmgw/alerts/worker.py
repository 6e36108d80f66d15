"""The worker that drains the job queue: classification, then publishing.

Each job is one (occurrence, step) row of ``alert_jobs``; a step is an async callable that
returns ``Done``, ``Retry`` or ``GiveUp``. Steps in ``FOLLOW_UPS`` queue further steps after
their first attempt, success or not, so a later step (publishing) never waits on the LLM: an
alert whose classification failed goes on unclassified, and its classification is retried on
its own job. One worker runs in every ``llmgw serve`` process; leases make several safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy.exc
from sqlalchemy.engine import Connection

from llmgw.alerts.classifier import RPM_USED_UP, Classifier, cache_key
from llmgw.alerts.queries import AlertHistory, ClassificationWrite
from llmgw.alerts.queue import ClaimedJob, JobQueue, no_flush_wait
from llmgw.alerts.stats import AlertStats
from llmgw.alerts.store_pg import TEND_INTERVAL
from llmgw.alerts.summary import FOLD_INTERVAL
from llmgw.config import AlertsSettings
from llmgw.errors import NotFound
from llmgw.tasks import stop_task

__all__ = ["FOLLOW_UPS", "AlertWorker", "ClassifyStep", "Done", "GiveUp", "Retry", "Step"]

log = logging.getLogger("llmgw.alerts")

FOLLOW_UPS: dict[str, tuple[str, ...]] = {"classify": ("publish",)}
"""Steps queued (once) after a step's first attempt: publishing never waits on the LLM."""


Write = Callable[[Connection], object]
"""A database write a step hands back: run in the transaction that settles its job."""


@dataclass(frozen=True, slots=True)
class Done:
    """The step finished."""

    writes: tuple[Write, ...] = ()


@dataclass(frozen=True, slots=True)
class Retry:
    """Run the step again after ``delay`` seconds."""

    error: str
    delay: float
    writes: tuple[Write, ...] = ()
    refund: bool = False
    """The attempt does not count towards ``alerts.max_attempts`` (no call was made)."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No more automatic attempts."""

    error: str
    writes: tuple[Write, ...] = ()


StepResult = Done | Retry | GiveUp

DEFER_BATCH = 8
"""While ``alerts.rpm`` is used up, or in ``transparent`` mode, every other batch is this many
times ``alerts.concurrency`` ``classify`` jobs: each is a cache hit, a deferral or a skip (no
call), so the claim, the read, the cache look-up and the settlement are shared by more jobs
(issue 14)."""
SWEEP_BATCH = 256
"""While ``alerts.rpm`` is used up and nothing follows a first attempt (publishing without
targets), this many new classify jobs are looked at per sweep (``ClassifyStep.sweep``)."""
WAKE_SPACING = 0.1
"""Seconds at least from the start of one look at the queue to the next one a wake-up starts
(at most ``alerts.poll_interval``): during a flood every delivery wakes the worker (of this
process, or of another through ``NOTIFY``), and a look per delivery (a claim or a sweep, with
its statements and their commit) cost the worker more CPU per alert than the webhook's own
work, on the cores the deliveries need; spaced, the jobs of the deliveries in between are
looked at together (issue 14)."""
DEPTH_INTERVAL = 5.0
"""Seconds between the worker's counts of the queue by state (the ``llmgw_alert_queue_depth``
gauge): a count reads every pending job, 11-40 ms of PostgreSQL's CPU behind the 80,000 jobs of a
flood, and a delivery that met one was late (issue 14); once a second per instance was more
often than any scrape reads it."""
_BLOCKED = 0.05
"""Seconds of ``alerts.rpm`` wait above which the classifier defers (``Classifier.classify``)."""
Step = Callable[[ClaimedJob], Awaitable[StepResult]]


def backoff(settings: AlertsSettings, attempts: int, retry_after: float | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: doubling from ``retry_backoff``, capped."""
    delay: float = min(
        settings.retry_backoff * 2.0 ** max(0, attempts - 1), settings.retry_backoff_max
    )
    return max(delay, retry_after or 0.0)


class ClassifyStep:
    """Classify an occurrence (or record ``skipped`` in ``transparent`` mode)."""

    def __init__(
        self,
        history: AlertHistory,
        classifier: Classifier | None,
        settings: AlertsSettings,
        *,
        use_cache: bool = True,
    ) -> None:
        self.history = history
        self.classifier = classifier
        self.settings = settings
        self.use_cache = use_cache
        self._ready: dict[int, dict[str, Any] | None] = {}

    def deferring(self) -> bool:
        """``alerts.rpm`` is used up: an occurrence not in the cache would only be deferred."""
        if self.classifier is None or self.settings.mode == "transparent":
            return False
        blocked = getattr(self.classifier.complete, "blocked_for", None)
        return blocked is not None and blocked() > _BLOCKED

    def trivial(self) -> bool:
        """An attempt only records ``skipped`` (``transparent`` mode, or no classifier): no
        call, so the worker claims these jobs many at a time, as it does cache hits and
        deferrals (``DEFER_BATCH``)."""
        return self.classifier is None or self.settings.mode == "transparent"

    async def sweep(
        self, queue: JobQueue, limit: int, lease_seconds: float
    ) -> tuple[int, list[ClaimedJob]]:
        """While ``alerts.rpm`` is used up: look at up to ``limit`` new classify jobs without
        claiming them (one read of their labels, one cache look-up); the cached ones are
        claimed (returned, to run), the others deferred to their turns in one statement, with
        no claim, read of the occurrence or settlement each (issue 14). Returns (jobs looked
        at, jobs claimed)."""
        c = self.classifier
        if c is None:
            return 0, []
        rows = await asyncio.to_thread(queue.peek_new, "classify", limit)
        if not rows:
            return 0, []
        keys = [cache_key(labels, self.settings) for _, labels in rows]
        have = await c.cached(keys)
        misses = [job_id for (job_id, _), key in zip(rows, keys, strict=True) if key not in have]
        hits = [job_id for (job_id, _), key in zip(rows, keys, strict=True) if key in have]
        turns = c.defer(len(misses))
        await asyncio.to_thread(
            queue.defer_many,
            list(zip(misses, turns, strict=True)),
            f"error: RateLimited: {getattr(c.complete, 'refusal', RPM_USED_UP)}",
        )
        claimed = await asyncio.to_thread(queue.claim_ids, hits, lease_seconds) if hits else []
        return len(rows), claimed

    async def prepare(self, jobs: list[ClaimedJob]) -> None:
        """Read the occurrences of a batch of jobs in one query (``None``: deleted)."""
        ids = [job.alert_id for job in jobs]
        found = await asyncio.to_thread(self.history.get_many, ids)
        self._ready.update({i: found.get(i) for i in ids})
        c = self.classifier
        if self.use_cache and c is not None and self.settings.mode != "transparent":
            await c.prefetch([a for a in found.values() if a is not None])

    async def __call__(self, job: ClaimedJob) -> StepResult:
        """One attempt; the outcome is saved in the transaction that settles the job."""
        if job.alert_id in self._ready:
            alert = self._ready.pop(job.alert_id)
        else:
            try:
                alert = await asyncio.to_thread(self.history.get, job.alert_id)
            except NotFound:
                alert = None
        if alert is None:
            return Done()  # deleted by retention meanwhile
        history, alert_id = self.history, job.alert_id
        if self.settings.mode == "transparent" or self.classifier is None:
            if self.classifier is not None:
                self.classifier.stats.classifications["skipped"] += 1
            return Done((ClassificationWrite(history, alert_id, "skipped", None, None),))
        outcome = await self.classifier.classify(alert, use_cache=self.use_cache)
        error = f"{outcome.status}: {outcome.error}"
        if not outcome.called:
            # alerts.rpm refused it before any call: deferred to its turn, not an attempt; the
            # occurrence keeps its status and gets no event (a backlog refused this way cost
            # an update of the occurrence and an event each, for nothing; issue 14)
            return Retry(error, backoff(self.settings, 1, outcome.retry_after), refund=True)
        writes = (
            ClassificationWrite(history, alert_id, outcome.status, outcome.result, outcome.error),
        )
        if outcome.status == "ok":
            return Done(writes)
        if job.attempts >= self.settings.max_attempts:
            return GiveUp(error, writes)
        return Retry(error, backoff(self.settings, job.attempts, outcome.retry_after), writes)


class AlertWorker:
    """Claims due jobs and runs their steps, ``concurrency`` at a time (see the module docstring)."""

    def __init__(
        self,
        queue: JobQueue,
        steps: Mapping[str, Step],
        settings: AlertsSettings,
        stats: AlertStats,
        *,
        maintenance: Callable[[], object] | None = None,
        fold: Callable[[], object] | None = None,
        tend: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.steps = dict(steps)
        self.settings = settings
        self.stats = stats
        self.maintenance = maintenance
        """Run in a thread every ``retention_interval`` (retention)."""
        self.fold = fold
        """Run in a thread every ``summary.FOLD_INTERVAL`` (the counts' changes into the hourly
        counts)."""
        self.tend = tend
        """Run in a thread every ``store_pg.TEND_INTERVAL`` (``store_pg.tend``: the search
        indexes' pending lists, a young table's statistics; PostgreSQL); dropped after it
        failed (no right to flush: not the owner)."""
        self.clock = clock
        self.depth: dict[str, int] = {"pending": 0, "running": 0, "failed": 0}
        self.last_loop: float | None = None
        """When the loop last finished a look at the queue (monotonic); readiness reads it."""
        self.last_error: str | None = None
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_maintenance = -1e18
        self._last_depth = -1e18
        self._last_fold = -1e18
        self._last_tend = -1e18
        self._settling: list[tuple[ClaimedJob, StepResult, asyncio.Future[None]]] = []
        self._settler: asyncio.Task[None] | None = None
        self._wide = False
        """The last batch was a wide one of deferrals (``DEFER_BATCH``): the next is not."""

    def wake(self) -> None:
        """Look at the queue now (new jobs were stored by this process)."""
        self._event.set()

    async def run_once(self) -> int:
        """Claim one batch (or sweep new jobs) and run it; the number of jobs run or looked at."""
        s = self.settings
        classify = self.steps.get("classify")
        deferring = getattr(classify, "deferring", None)
        blocked = deferring is not None and deferring()
        trivial = getattr(classify, "trivial", None)
        wide = self._wide = not self._wide and (blocked or (trivial is not None and trivial()))
        sweep = getattr(classify, "sweep", None)
        jobs: list[ClaimedJob]
        looked = 0
        if wide and blocked and sweep is not None and self._sweeping():
            # nothing to queue after a first attempt: deferrals need no claim at all
            looked, jobs = await sweep(self.queue, SWEEP_BATCH, s.lease_seconds)
        elif wide:  # only cache hits, deferrals or skips: many at a time, classify jobs only
            jobs = await asyncio.to_thread(
                self.queue.claim, s.concurrency * DEFER_BATCH, s.lease_seconds, ("classify",)
            )
        else:  # while alerts.rpm is used up, new classify jobs are the sweeps'
            skip = "classify" if blocked and sweep is not None and self._sweeping() else None
            jobs = await asyncio.to_thread(
                self.queue.claim, s.concurrency, s.lease_seconds, None, skip
            )
        if jobs:
            by_step: dict[str, list[ClaimedJob]] = {}
            for job in jobs:
                by_step.setdefault(job.step, []).append(job)
            for name, batch in by_step.items():
                prepare = getattr(self.steps.get(name), "prepare", None)
                if prepare is not None:
                    await prepare(batch)
            await asyncio.gather(*(self._run(job) for job in jobs))
        return max(len(jobs), looked)

    async def drain(self, *, max_rounds: int = 1000) -> int:
        """Run batches until nothing is due (tests and ``llmgw alerts process``)."""
        total = 0
        for _ in range(max_rounds):
            n = await self.run_once()
            total += n
            if n == 0 and not self._wide:  # (after a wide batch, the other jobs' turn)
                break
        return total

    async def _run(self, job: ClaimedJob) -> None:
        step = self.steps.get(job.step)
        try:
            if step is None:
                result: StepResult = GiveUp(f"no step named {job.step!r} in this version")
            else:
                result = await step(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in one job must not stop the others
            self.stats.worker_errors += 1
            log.exception("alert job %s (%s) failed", job.id, job.step)
            result = Retry(
                f"internal error: {type(exc).__name__}", backoff(self.settings, job.attempts)
            )
        if isinstance(result, GiveUp):
            log.warning("alert %s: %s gave up after %d attempts: %s", job.alert_id, job.step,
                        job.attempts, result.error)  # fmt: skip
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settling.append((job, result, done))
        if self._settler is None:
            self._settler = asyncio.get_running_loop().create_task(self._settle_all())
        await done

    async def _settle_all(self) -> None:
        """Group commit: every job that finished meanwhile is settled (with its step's writes
        and follow-ups) in one transaction, while the next group collects."""
        try:
            while self._settling:
                group, self._settling = self._settling, []
                try:
                    await asyncio.to_thread(self._write, [(j, r) for j, r, _ in group])
                except BaseException as exc:
                    for _, _, fut in group:
                        if not fut.done():
                            fut.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, _, fut in group:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._settler = None

    def _sweeping(self) -> bool:
        """Nothing is queued after a first classification attempt: new classify jobs are swept
        (``ClassifyStep.sweep``) while ``alerts.rpm`` is used up."""
        return all(self._idle(f) for f in FOLLOW_UPS["classify"])

    def _idle(self, name: str) -> bool:
        """A follow-up step of this worker that has nothing to do now (publishing without any
        target) is not queued: its job would be claimed and settled for nothing (issue 14)."""
        idle = getattr(self.steps.get(name), "idle", None)
        return bool(idle is not None and idle())

    def _write(self, group: list[tuple[ClaimedJob, StepResult]]) -> None:
        q = self.queue
        settle: list[tuple[ClaimedJob, str, str | None, float, bool]] = []
        follow_ups: list[tuple[int, str]] = []
        wanted = {name: tuple(s for s in steps if not self._idle(s))
                  for name, steps in FOLLOW_UPS.items()}  # fmt: skip
        for job, result in group:
            if isinstance(result, Done):
                settle.append((job, "done", None, 0.0, False))
            elif isinstance(result, Retry):
                settle.append((job, "pending", result.error, result.delay, result.refund))
            else:
                settle.append((job, "failed", result.error, 0.0, False))
            follow = wanted.get(job.step, ())
            if follow and (job.attempts == 1 or isinstance(result, Done)):
                follow_ups.extend((job.alert_id, step) for step in follow)
        classifications: list[ClassificationWrite] = []
        writes: list[Write] = []
        for _, result in group:
            for write in result.writes:
                if isinstance(write, ClassificationWrite):
                    classifications.append(write)
                else:
                    writes.append(write)
        with q.engine.begin() as conn:
            no_flush_wait(conn)  # a lost settlement runs its job again: no disk wait (issue 14)
            if classifications:  # the attempts' outcomes: a statement per kind, not two per job
                classifications[0].history.write_classifications(conn, classifications)
            for write in writes:
                write(conn)
            q.settle_many_in(conn, settle)  # a statement per kind, not per job (issue 14)
            q.follow_up_many_in(conn, follow_ups)

    async def run(self) -> None:
        """The loop: a batch, then (when the queue is idle) wait for a wake-up or the poll."""
        s = self.settings
        loop = asyncio.get_running_loop()
        spacing = min(WAKE_SPACING, s.poll_interval)
        while not self._stopping:
            started = loop.time()
            self._event.clear()  # a wake-up from now on (during this look too) is answered
            try:
                n = await self.run_once()
                if self.clock() - self._last_depth >= DEPTH_INTERVAL:
                    self._last_depth = self.clock()
                    self.depth = await asyncio.to_thread(self.queue.depth)
                if self.fold is not None and self.clock() - self._last_fold >= FOLD_INTERVAL:
                    self._last_fold = self.clock()
                    await asyncio.to_thread(self.fold)
                if self.tend is not None and self.clock() - self._last_tend >= TEND_INTERVAL:
                    self._last_tend = self.clock()
                    await self._tend()
                if self.maintenance is not None and (
                    self.clock() - self._last_maintenance >= s.retention_interval
                ):
                    self._last_maintenance = self.clock()
                    await asyncio.to_thread(self.maintenance)
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database may be down: keep going
                self.stats.worker_errors += 1
                if self.last_error is None:
                    log.warning("alert worker: %s (retrying)", type(exc).__name__)
                self.last_error = type(exc).__name__
                n = 0
            self.last_loop = self.clock()
            if n >= s.concurrency or self._wide or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.poll_interval):
                    await self._event.wait()
                # woken: the wake-ups of the next moments are answered by one look
                gap = started + spacing - loop.time()
                if gap > 0 and not self._stopping:
                    await asyncio.sleep(gap)

    async def _tend(self) -> None:
        try:
            await asyncio.to_thread(self.tend)  # type: ignore[arg-type]
        except sqlalchemy.exc.ProgrammingError as exc:  # not the indexes' owner: stop trying
            log.warning("alert worker: cannot flush the search indexes' pending lists (%s);"
                        " webhook deliveries merge them as they fill", type(exc).__name__)  # fmt: skip
            self.tend = None

    def start(self) -> None:
        """Run the loop as a task on the current event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name="llmgw-alert-worker"
            )

    async def aclose(self, grace: float | None = None) -> None:
        """Stop the loop: the batch in hand finishes (its database calls are threads that a
        cancel would not stop) within ``grace`` seconds (default ``alerts.timeout`` + 5), else
        it is cancelled; a job cut short keeps its lease until it runs out, then runs again."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._event.set()
        try:
            async with asyncio.timeout(self.settings.timeout + 5 if grace is None else grace):
                await asyncio.shield(task)
        except TimeoutError:
            await stop_task(task, 10.0, "the alert worker")
