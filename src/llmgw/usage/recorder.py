"""UsageRecorder: a journal line and a queue put per record; one writer thread does the rest.

``record()`` writes the record to the journal (``llmgw.usage.journal``: one ``write()``, which
survives ``kill -9``; with ``durability = "power"`` the caller also awaits a grouped fsync) and
puts the event on a queue. The writer thread (``llmgw.usage.writer``) inserts batches with
``INSERT ... ON CONFLICT (request_id) DO NOTHING``; when the database fails they go to the spool
and the writer goes degraded (``llmgw.usage.degraded``) until a replay (``llmgw.usage.replay``)
succeeds. A journal line is settled once its row is committed or spooled, so a record is written
at least once and ``request_id`` makes it exactly once.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from operator import attrgetter
from pathlib import Path

import orjson
from sqlalchemy.engine import Engine

from llmgw.config import UsageSettings
from llmgw.usage.inserts import Inserter
from llmgw.usage.journal import Journal, encode
from llmgw.usage.rows import COLUMNS, UsageEvent, event_to_row
from llmgw.usage.spool import Spool
from llmgw.usage.writer import STOP, Flush, Writer

__all__ = ["UsageEvent", "UsageRecorder", "event_to_row"]

_values = attrgetter(*("meta" if c == "metadata" else c for c in COLUMNS))
_dumps, _NEWLINE = orjson.dumps, orjson.OPT_APPEND_NEWLINE
_STATUS, _ERROR, _META = (COLUMNS.index(c) for c in ("status", "error_type", "metadata"))


class UsageRecorder:
    """Records usage events without ever making the caller wait for the database."""

    def __init__(
        self, engine: Engine, settings: UsageSettings, spool_dir: Path, *, memo: bool = True
    ) -> None:
        self._settings = settings
        self._queue_max = settings.queue_max
        self._q: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._journal = Journal(spool_dir, power=settings.durability == "power")
        self._journaling = settings.durability != "memory"
        self._spool = Spool(spool_dir)
        self._writer = Writer(
            self._q,
            Inserter(engine, lambda row, why: None, memo=memo),
            self._spool,
            self._journal,
            settings,
        )
        self._thread: threading.Thread | None = None
        self._closed = False
        self._overflowed = 0
        self.refused = 0
        """Requests the server refused because usage could not be recorded (ST-4)."""

    # --- public API ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread; it first replays any spool or journal left by earlier runs."""
        if self._closed:
            raise RuntimeError("UsageRecorder was closed")
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._writer.run, name="llmgw-usage-writer", daemon=True
        )
        self._thread.start()

    @property
    def unrecordable(self) -> str | None:
        """Why a record would now survive only in memory (database and journal both failing)."""
        return self._writer.degraded.unrecordable

    def record(self, event: UsageEvent) -> asyncio.Future[None] | None:
        """Journal one event and queue it for the database.

        With ``durability = "power"`` (on an event loop) this returns a future to await before
        the response: done once the journal is fsynced past this record. Otherwise ``None``.
        """
        if self._closed or self._q.qsize() >= self._queue_max:
            self._overflow(event)
            return None
        synced = None
        journal = self._journal
        if self._journaling and journal.error is None:
            line = _dumps(_values(event), default=str, option=_NEWLINE)  # journal.encode, inlined
            event.ticket = journal.append(line, replaces=event.ticket)  # type: ignore[arg-type]
            if journal.power:
                synced = journal.synced()
        self._q.put(event)
        return synced

    def begin_stream(self, event: UsageEvent) -> asyncio.Future[None] | None:
        """Journal a stream's provisional record before its first byte: if the process dies
        mid-stream, replay stores it (``error_type = "interrupted"``, metadata ``partial``).
        ``record()`` of the final event replaces it. Returns like ``record()``."""
        journal = self._journal
        if not self._journaling or journal.error is not None or self._closed:
            return None
        meta = {**(event.meta or {}), "partial": True}
        values = list(_values(event))
        values[_STATUS], values[_ERROR], values[_META] = 200, "interrupted", meta
        event.ticket = journal.append(encode(tuple(values), partial=True))
        return journal.synced() if journal.power else None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is in the database or the spool."""
        t = self._thread
        if t is None or not t.is_alive():
            return self._q.empty()
        marker = Flush()
        self._q.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Flush and stop; whatever cannot reach the database in time is left in the spool."""
        if self._closed:
            return
        self._closed = True
        w = self._writer
        w.close_deadline = time.monotonic() + timeout
        t = self._thread
        if t is not None and t.is_alive():
            self._q.put(STOP)
            t.join(max(0.0, timeout - min(1.0, timeout / 10)))
            if t.is_alive():  # stuck on the database: keep the batch in hand too (dupes are fine)
                w.abandoned = True
                w.degraded.last_error = "usage writer did not finish in time; its batch was spooled"
                inflight = list(w.inflight)
                w.spool_rows(w.rows_of(inflight), inflight)
        rest = w.drain_queue()
        if rest:
            w.spool_rows(w.rows_of(rest), rest)
        self._spool.close()
        self._journal.close()

    def stats(self) -> dict[str, int | float | str | None]:
        """Counters for metrics and ``llmgw`` status output."""
        w = self._writer
        if self._closed and (self._thread is None or not self._thread.is_alive()):
            state = "stopped"
        elif w.stranded or w.degraded.unrecordable:
            state = "failing"  # database down and the spool not writable
        else:
            state = "degraded" if w.degraded.active else "ok"
        return {
            "state": state,
            "queued": self._q.qsize(),
            "written": w.written,
            "replayed": w.replayed,
            "spooled": w.spooled,
            "overflowed": self._overflowed,
            "rejected": w.rejected,
            "spool_records": max(w.spool_records, 0),
            "bad_spool_lines": w.bad_spool_lines,
            "stranded": len(w.stranded),
            "journaled": self._journal.written,
            "journal_pending": self._journal.pending(),
            "unrecordable": 1 if w.degraded.unrecordable else 0,
            "refused": self.refused,
            "batches": w.inserter.batches,
            "failures": w.degraded.failures,
            "last_error": w.degraded.unrecordable or w.degraded.last_error,
        }

    def _overflow(self, event: UsageEvent) -> None:
        """Past the queue bound (or after close): straight to the spool, never dropped."""
        w = self._writer
        with w.lock:
            self._overflowed += 1
        w.spool_rows(w.rows_of([event]))
        if self._closed:
            self._spool.rotate()  # no writer any more: release the segment for the next run
