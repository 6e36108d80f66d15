"""``AlertService``: the alert history's long-lived parts in one object the server owns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from llmgw.alerts.stats import AlertStats
from llmgw.alerts.store import AlertStore, IngestResult
from llmgw.config import AlertsSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from llmgw.alerts.payload import Delivery

__all__ = ["INGEST_BATCH", "INGEST_THREADS", "AlertService"]

INGEST_THREADS = 2
"""Transactions storing deliveries at once per process (the webhook's threads); the deliveries
that arrive while both are busy wait and are stored together by the next free one
(``AlertStore.ingest_many``: one commit for all of them)."""
INGEST_BATCH = 32
"""At most this many deliveries in one transaction."""


class AlertService:
    """The store the webhook writes to, the counters, and (once started) the worker."""

    def __init__(
        self,
        engine: Engine,
        settings: AlertsSettings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.stats = AlertStats()
        self.store = AlertStore(engine, settings, now=now)
        self.history: Any = None
        """``AlertHistory`` on the same engine (the API's queries), once started."""
        self.worker: Any = None
        """The job worker, once started (``llmgw serve``)."""
        self.breaker_alerts: Any = None
        """``BreakerAlerts`` (the gateway's own circuit transitions), once started."""
        self.publishing: Any = None
        """``Publishing`` (targets, publishers), once started."""
        self._pending_discovery: dict[str, dict[str, dict[str, str]]] = {}
        # The webhook's own threads: the event loop's default pool (6 threads on 2 cores) is
        # shared with the worker's claims, reads and settlements, a retention pass and the API's
        # queries, so a delivery could wait there for a free thread before its statement ran.
        self._waiting: list[tuple[Delivery, asyncio.Future[IngestResult | Exception]]] = []
        self._writers = 0
        self._writer_tasks: set[asyncio.Future[None]] = set()
        self.store.hold_connections()  # one per thread of the pool below
        self._ingest_pool = ThreadPoolExecutor(
            max_workers=INGEST_THREADS, thread_name_prefix="llmgw-alerts-ingest"
        )
        self.discovery: Any = None
        self.wakeups: Any = None
        self.announcer: Any = None
        """``JobAnnouncer``: this webhook's deliveries notify other instances after their commit
        (PostgreSQL, ``llmgw serve``); None: their transactions notify (the trigger)."""
        """``JobNotifications`` (PostgreSQL's LISTEN for jobs queued elsewhere), when listening."""
        """``SecretDiscovery`` (targets from Kubernetes Secrets), when ``[alerts.kubernetes]`` is on."""

    async def ingest(self, delivery: Delivery) -> IngestResult:
        """Store a webhook delivery; returns once it is committed, raises the database's error
        if it was not. A group commit: while ``INGEST_THREADS`` transactions are running, the
        deliveries arriving meanwhile wait, and the next free thread stores all of them (up to
        ``INGEST_BATCH``) in one transaction, one commit's wait for the disk instead of one
        each (``AlertStore.ingest_many``)."""
        future: asyncio.Future[IngestResult | Exception] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append((delivery, future))
        if self._writers < INGEST_THREADS:
            self._writers += 1
            task = asyncio.ensure_future(self._write())
            self._writer_tasks.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(self._writer_tasks.discard)
        got = await future
        if isinstance(got, Exception):
            raise got
        return got

    async def _write(self) -> None:
        """Store waiting deliveries, a batch at a time, until none wait."""
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch = self._waiting[:INGEST_BATCH]
                del self._waiting[:INGEST_BATCH]
                try:
                    results = await loop.run_in_executor(
                        self._ingest_pool, self.store.ingest_many, [d for d, _ in batch]
                    )
                except BaseException as exc:  # the pool shut down, or this task was cancelled
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(exc)
                    raise
                if self.announcer is not None and any(
                    not isinstance(r, Exception) and not r.duplicate for r in results
                ):
                    self.announcer.announce()  # committed: other instances' workers may look now
                for (_, f), r in zip(batch, results, strict=True):
                    if not f.done():  # its request may have gone away
                        f.set_result(r)
        finally:
            self._writers -= 1

    def announce_jobs(self, announcer: Any) -> None:
        """From now on, deliveries are stored without their transaction's ``NOTIFY`` and
        ``announcer`` (``JobAnnouncer``) notifies after each commit."""
        self.announcer = announcer
        self.store.notify = False

    def close(self) -> None:
        """Let the webhook's threads go (a delivery in hand finishes)."""
        self._ingest_pool.shutdown(wait=False)
        self.store.close()

    def problems(self) -> list[str]:
        """Why the alert side is not ready (readiness): a worker loop that stopped looking at
        the queue, or a queue it cannot read."""
        w = self.worker
        if w is None:
            return []
        if w.last_error is not None:
            return [f"alert worker cannot read its queue: {w.last_error}"]
        stale = max(30.0, 10 * self.settings.poll_interval)
        if w.last_loop is not None and w.clock() - w.last_loop > stale + self.settings.timeout:
            return ["alert worker has not looked at its queue for a while"]
        return []

    def set_discovered_targets(
        self, source: str, targets: Mapping[str, Mapping[str, str]]
    ) -> dict[str, str]:
        """Replace the publishing targets discovered by ``source`` (e.g. ``kubernetes``) with
        ``targets`` (key such as ``namespace/secret`` -> the Secret's decoded data, reference
        §5.4 keys); applied live, a configured target wins a name clash. Returns the refused
        keys and why (never a value). Before start-up (no publishing yet) it is kept and
        applied when publishing starts."""
        if self.publishing is None:
            self._pending_discovery[source] = {k: dict(v) for k, v in targets.items()}
            return {}
        refused: dict[str, str] = self.publishing.targets.set_discovered_targets(source, targets)
        return refused

    def start_publishing(self, publishing: Any) -> None:
        """Use ``publishing`` (``Publishing``) from now on; discovery reported earlier applies."""
        self.publishing = publishing
        for source, targets in self._pending_discovery.items():
            publishing.targets.set_discovered_targets(source, targets)
        self._pending_discovery.clear()

    def wake(self) -> None:
        """New jobs were stored by this process: the worker looks at the queue now."""
        if self.worker is not None:
            self.worker.wake()
