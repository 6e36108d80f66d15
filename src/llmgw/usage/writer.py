"""The usage writer thread: batches from the queue into the database, the spool when it fails.

One thread takes batches (at most ``batch_size`` rows, or whatever arrived within
``flush_interval``) and inserts each in one transaction. When the database fails the batch goes
to the spool (fsynced) and the writer goes degraded (``llmgw.usage.degraded``); every retry it
replays the spool and the journals of dead processes (``llmgw.usage.replay``). A record's
journal line is settled once its row is committed, spooled or rejected.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from llmgw.config import UsageSettings
from llmgw.usage.degraded import LOG_EVERY, Degraded
from llmgw.usage.inserts import Inserter, describe
from llmgw.usage.journal import Journal
from llmgw.usage.replay import replay_segments
from llmgw.usage.rows import UsageEvent, event_to_row
from llmgw.usage.spool import Spool

__all__ = ["STOP", "Flush", "Writer"]

log = logging.getLogger("llmgw.usage")


class Flush:
    """A marker put on the queue; set once everything before it is in the DB or the spool."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


STOP = object()
_NOTHING = object()


class Writer:
    """The writer thread's state and loop; the recorder owns it and reads its counters."""

    def __init__(
        self,
        q: queue.SimpleQueue[object],
        inserter: Inserter,
        spool: Spool,
        journal: Journal,
        settings: UsageSettings,
    ) -> None:
        self.q = q
        self.inserter = inserter
        self.spool = spool
        self.journal = journal
        self.settings = settings
        self.degraded = Degraded(settings.retry_interval)
        self.abandoned = False  # close() gave up waiting for the writer and took over
        self.close_deadline = float("inf")
        self.lock = threading.Lock()  # counters touched outside the writer thread, stranded rows
        self.count_lock = threading.Lock()  # a spool append and its count go together
        self.inflight: list[UsageEvent] = []
        self.stranded: list[dict[str, Any]] = []  # neither DB nor spool took them (disk trouble)
        self.next_check = 0.0
        self.written = self.replayed = self.spooled = self.rejected = 0
        self.bad_spool_lines = self.spool_records = 0
        self._reject_logged = -1e9
        inserter.on_reject = self.reject_row

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        """The thread's body: replay what an earlier run left, then batches until ``STOP``."""
        with contextlib.suppress(Exception):
            # Counted here, not at start: a big spool must not delay start-up. The count lock
            # keeps records spooled meanwhile (queue over its bound) from being counted twice.
            with self.count_lock:
                self.spool_records = self.spool.count_records()
            if self.spool_records or self.spool.segments():
                self.try_recover()
        while True:
            batch: list[UsageEvent] = []
            markers: list[Flush] = []
            stop = False
            try:
                stop = self._collect(batch, markers)
                if batch:
                    self.write_batch(batch)
            except Exception as exc:  # noqa: BLE001 - the writer must not die; keep the rows
                self.degraded.last_error = describe(exc)
                with contextlib.suppress(Exception):
                    self.spool_rows(self.rows_of(batch), batch)
            for m in markers:
                m.done.set()
            if stop:
                break
            with contextlib.suppress(Exception):
                self._maintain()
        with contextlib.suppress(Exception):
            self._shutdown()

    def _wait_time(self) -> float:
        d = self.degraded
        due = d.next_retry if d.active else self.next_check
        return min(max(due - time.monotonic(), 0.01), 1.0)

    def _collect(self, batch: list[UsageEvent], markers: list[Flush]) -> bool:
        """Fill ``batch`` (size- and time-bounded); return True when asked to stop."""
        if self.abandoned:
            return True
        try:
            item = self.q.get(timeout=self._wait_time())
        except queue.Empty:
            return False
        deadline = time.monotonic() + self.settings.flush_interval
        while True:
            if item is STOP:
                return True
            if isinstance(item, Flush):
                markers.append(item)
                return False
            batch.append(item)  # type: ignore[arg-type]
            if len(batch) >= self.settings.batch_size:
                return False
            item = self._next_item(deadline)
            if item is _NOTHING:
                return False

    def _next_item(self, deadline: float) -> object:
        """The next queued item, or ``_NOTHING`` once ``deadline`` passes.

        Polls in ticks rather than blocking on the queue: a blocking get would wake this thread
        (a GIL hand-off) on every ``record()`` of a busy server; this wakes it a few times per
        batch window at most.
        """
        tick = max(0.002, min(self.settings.flush_interval / 4, 0.05))
        while True:
            try:
                return self.q.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return _NOTHING
                time.sleep(min(remaining, tick))

    # --- writing -------------------------------------------------------------------------
    def rows_of(self, events: Sequence[UsageEvent]) -> list[dict[str, Any]]:
        """Rows for ``events``; an object that is not a usable event is rejected, not fatal."""
        rows: list[dict[str, Any]] = []
        for e in events:
            try:
                rows.append(event_to_row(e))
            except Exception as exc:  # noqa: BLE001 - e.g. created_at is not a datetime
                bad = {"request_id": str(getattr(e, "request_id", None)), "event": repr(e)}
                self.reject_row(bad, f"not a usage event: {describe(exc)}")
        return rows

    def reject_row(self, row: dict[str, Any], reason: str) -> None:
        """A row the database refuses for good: ``rejected.jsonl``, a count, a log line."""
        with contextlib.suppress(OSError):
            self.spool.reject([row], reason)
        self.rejected += 1
        self.degraded.last_error = f"rejected a usage row: {reason}"
        now = time.monotonic()
        if now - self._reject_logged >= LOG_EVERY:
            self._reject_logged = now
            log.error(
                "usage: the database refused row %s (%s); kept in %s, see `llmgw usage rejected`",
                str(row.get("request_id"))[:64],
                reason,
                self.spool.directory / "rejected.jsonl",
            )

    def write_batch(self, batch: list[UsageEvent]) -> None:
        """Insert a batch, or spool it when the database fails (or is known to be down)."""
        rows = self.rows_of(batch)
        self.inflight = batch
        try:
            if self.degraded.active:
                self.spool_rows(rows, batch)
                return
            try:
                written = self.inserter.insert_rows(rows)
            except Exception as exc:  # noqa: BLE001 - any DB trouble: spool, retry later
                self.degraded.enter(describe(exc))
                self.spool_rows(rows, batch)
                return
            self.written += written
            self.journal.settle(e.ticket for e in batch)
        finally:
            self.inflight = []

    def spool_rows(
        self, rows: list[dict[str, Any]], events: Sequence[UsageEvent] | None = None
    ) -> None:
        """Append to the spool (fsynced); if it cannot take them, hold them in memory."""
        if not rows:
            return
        with self.count_lock:
            try:
                self.spool.append(rows)
            except OSError as exc:
                with self.lock:
                    self.stranded.extend(rows)
                self.degraded.last_error = f"spool not writable: {exc.strerror or exc}"
                self.degraded.check(self.journal.error, len(self.stranded))
                return
            with self.lock:
                self.spooled += len(rows)
                self.spool_records += len(rows)
        if events:
            self.journal.settle(e.ticket for e in events)

    # --- recovery ------------------------------------------------------------------------
    def _maintain(self) -> None:
        now = time.monotonic()
        d = self.degraded
        if d.active:
            if now >= d.next_retry:
                self.try_recover()
        elif now >= self.next_check:
            self.next_check = now + self.settings.retry_interval
            if self.journal.error is not None:
                self.journal.reopen()
            if self.stranded or self.spool.segments():
                self.try_recover()
        d.check(self.journal.error, len(self.stranded))

    def try_recover(self) -> bool:
        """Replay the spool (and stranded rows); on success leave the degraded state."""
        if self.journal.error is not None:
            self.journal.reopen()
        try:
            with self.lock:
                stranded, self.stranded = self.stranded, []
            if stranded:
                try:
                    written = self.inserter.insert_rows(stranded)
                except Exception:
                    with self.lock:
                        self.stranded[:0] = stranded
                    raise
                self.written += written
            result = replay_segments(self.spool, self.inserter, self.settings.batch_size)
        except Exception as exc:  # noqa: BLE001 - still down: back off
            self.degraded.enter(describe(exc))
            self.degraded.check(self.journal.error, len(self.stranded))
            return False
        with self.lock:
            self.spool_records -= result.records
        self.replayed += result.replayed
        if result.bad_lines:
            self.bad_spool_lines += result.bad_lines
            self.degraded.last_error = result.last_bad
        self.degraded.leave()
        self.degraded.check(self.journal.error, len(self.stranded))
        return True

    def drain_queue(self) -> list[UsageEvent]:
        """Everything still queued (markers released, ``STOP`` dropped)."""
        out: list[UsageEvent] = []
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                return out
            if isinstance(item, Flush):
                item.done.set()
            elif item is not STOP:
                out.append(item)  # type: ignore[arg-type]

    def _shutdown(self) -> None:
        rest = self.drain_queue()  # records that raced with close()
        if rest:
            self.write_batch(rest)
        pending = self.stranded or self.spool_records > 0
        time_left = self.close_deadline - time.monotonic()
        if pending and (not self.degraded.active or time_left > 2.0):
            self.try_recover()
        with self.lock:
            stranded, self.stranded = self.stranded, []
        if stranded:
            self.spool_rows(stranded)
        self.spool.close()
