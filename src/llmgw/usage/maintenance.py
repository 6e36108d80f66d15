"""Usage upkeep inside ``llmgw serve``: fold new rows into the rollups, apply retention, and
send the scheduled reports (``[reports]``), from one low-priority daemon thread.

Every ``usage.rollup_interval`` seconds the thread folds new usage rows into the rollups
(``rollup.refresh``: idempotent and safe with several instances, which serialise on the
rollup state row); with several instances on one PostgreSQL only the one holding the fold
lease (``rollup.FoldLease``, an advisory lock) folds, the others skip; once an hour it deletes raw rows past ``usage.retention_days``; every pass
it asks ``jobs`` (the report scheduler) whether something is due. One pass never raises: a
failure is logged and the next pass retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from llmgw.config import UsageSettings

if TYPE_CHECKING:
    from llmgw.usage.rollup import FoldLease

__all__ = ["UsageMaintenance"]

log = logging.getLogger("llmgw.usage")

RETENTION_EVERY = 3600.0


class UsageMaintenance:
    """The upkeep thread: ``start`` it with the server, ``stop`` it on shutdown."""

    def __init__(
        self,
        engine: Engine,
        settings: UsageSettings,
        *,
        jobs: list[Callable[[], object]] | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.jobs = list(jobs or [])
        self.interval = interval if interval is not None else settings.rollup_interval or 60.0
        self.clock = clock
        self.pruned = 0
        self.folded = 0
        self._lease: FoldLease | None = None
        self._next_prune = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (its first pass comes one interval later)."""
        self._thread = threading.Thread(target=self._run, name="llmgw-usage-upkeep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to end and wait for a pass under way (up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._lease is not None:
            self._lease.release()

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while not self._stop.wait(self.interval):
            self.run_once()

    def run_once(self) -> None:
        """One pass: fold, prune when due, run the jobs (never raises)."""
        from llmgw.usage.rollup import FoldLease

        s = self.settings
        try:
            if s.rollup_interval > 0:
                if self._lease is None:
                    self._lease = FoldLease(self.engine)
                self.folded += self._lease.fold() or 0
            if s.retention_days is not None and self.clock() >= self._next_prune:
                from llmgw.usage.retention import prune

                self._next_prune = self.clock() + RETENTION_EVERY
                n = prune(self.engine, days=s.retention_days)
                self.pruned += n
                if n:
                    log.info("usage retention deleted %d raw rows", n)
        except Exception as exc:  # noqa: BLE001 - upkeep retries next pass
            log.warning(
                "usage upkeep failed: %s",
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )
        for job in self.jobs:
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - a report job retries next pass
                log.warning("usage job failed: %s", type(exc).__name__)
