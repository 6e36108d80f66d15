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

__all__ = ["INGEST_THREADS", "AlertService"]

INGEST_THREADS = 4
"""Deliveries stored at once per process; more wait for a thread (the database's connection
pool, ``database.pool_size``, is shared with the rest of the server)."""


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
        """Store a webhook delivery (``AlertStore.ingest``) on one of the webhook's threads."""
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._ingest_pool, self.store.ingest, delivery)
        if self.announcer is not None and not result.duplicate:
            self.announcer.announce()  # committed: other instances' workers may look now
        return result

    def announce_jobs(self, announcer: Any) -> None:
        """From now on, deliveries are stored without their transaction's ``NOTIFY`` and
        ``announcer`` (``JobAnnouncer``) notifies after each commit."""
        self.announcer = announcer
        self.store.notify = False

    def close(self) -> None:
        """Let the webhook's threads go (a delivery in hand finishes)."""
        self._ingest_pool.shutdown(wait=False)

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
