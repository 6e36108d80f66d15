"""Degraded mode: the database is failing; back off, and say when a record cannot be kept at all.

While the database fails, batches go to the spool and the writer retries every
``retry_interval`` seconds, doubling up to 16 times that. When the journal cannot be written
either (the spool directory is unwritable too, or the disk is full), a record would survive only
in memory: the recorder is then *unrecordable*; the server refuses billable requests
(``usage.on_unrecordable = "refuse"``) and ``/readyz`` fails, and this logs why, at most every
``LOG_EVERY`` seconds.
"""

from __future__ import annotations

import logging
import time

__all__ = ["LOG_EVERY", "Degraded"]

log = logging.getLogger("llmgw.usage")

LOG_EVERY = 30.0


class Degraded:
    """The writer's view of the database and the journal: backoff, last error, unrecordable."""

    def __init__(self, retry_interval: float) -> None:
        self.retry_interval = retry_interval
        self.active = False
        """The database failed; batches go to the spool until a replay succeeds."""
        self.retry_delay = retry_interval
        self.next_retry = 0.0
        self.failures = 0
        self.last_error: str | None = None
        self.db_error: str | None = None
        self.unrecordable: str | None = None
        """Why a record could be kept only in memory now (``None`` when it can be kept)."""
        self._logged = -1e9

    def enter(self, error: str) -> None:
        """A database failure: start (or lengthen) the backoff."""
        self.failures += 1
        self.last_error = self.db_error = error
        if not self.active:
            self.active = True
            self.retry_delay = self.retry_interval
        else:
            self.retry_delay = min(self.retry_delay * 2, self.retry_interval * 16)
        self.next_retry = time.monotonic() + self.retry_delay

    def leave(self) -> None:
        """The database took a replay: back to normal."""
        if self.active:
            log.info("usage: the database is back; spooled records replayed")
        self.active = False
        self.db_error = None
        self.retry_delay = self.retry_interval

    def check(self, journal_error: str | None, stranded: int) -> None:
        """Re-evaluate ``unrecordable`` from the journal's state and the rows held in memory."""
        if journal_error is not None and (self.active or stranded):
            why = f"{journal_error}; database: {self.db_error or 'failing'}"
            if stranded:
                why += f"; {stranded} record(s) held only in memory"
            self.unrecordable = why
            now = time.monotonic()
            if now - self._logged >= LOG_EVERY:
                self._logged = now
                log.error("usage cannot be recorded: %s", why)
        elif self.unrecordable is not None:
            self.unrecordable = None
            self._logged = -1e9
            log.warning("usage can be recorded again")
