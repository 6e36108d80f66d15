"""UsageRecorder: an in-memory queue drained by one writer thread into idempotent batched inserts.

``record()`` only puts the event on a queue. One writer thread takes batches (at most
``batch_size`` rows, or whatever arrived within ``flush_interval``) and inserts each in one
transaction with ``INSERT ... ON CONFLICT (request_id) DO NOTHING``. When the database fails,
the batch is appended to the spool (fsynced JSON lines, see ``llmgw.usage.spool``) and the
writer goes *degraded*: later batches go straight to the spool, and every ``retry_interval``
(doubling up to 16x) it tries to replay the spool. A segment is deleted only after its rows
are committed, so a record is written at least once and ``request_id`` makes it exactly once.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.sql.dml import Insert

from llmgw.config import UsageSettings
from llmgw.errors import ConfigError
from llmgw.storage.tables import UsageRecord
from llmgw.usage.spool import Spool

__all__ = ["UsageEvent", "UsageRecorder", "event_to_row"]


@dataclass(slots=True)
class UsageEvent:
    """One finished (or failed) request, as the server reports it."""

    request_id: str
    created_at: datetime  # tz-aware UTC
    endpoint: str = "chat"  # chat | embeddings
    key_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    provider: str | None = None
    model: str | None = None  # provider-side model name
    model_version: str | None = None
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal = Decimal(0)
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200  # the HTTP status the client got (or 499 client gone)
    error_type: str | None = None  # upstream_timeout, upstream_error, client_disconnected...
    meta: dict[str, Any] | None = None


def event_to_row(e: UsageEvent) -> dict[str, Any]:
    """The ``usage`` table row (column name -> value) for one event."""
    created = e.created_at if e.created_at.tzinfo is not None else e.created_at.replace(tzinfo=UTC)
    return {
        "request_id": e.request_id,
        "created_at": created,
        "user_id": e.user_id,
        "key_id": e.key_id,
        "endpoint": e.endpoint,
        "provider": e.provider,
        "model": e.model,
        "model_version": e.model_version,
        "stream": e.stream,
        "prompt_tokens": e.prompt_tokens,
        "completion_tokens": e.completion_tokens,
        "total_tokens": e.total_tokens,
        "cost": e.cost,
        "latency_ms": e.latency_ms,
        "ttft_ms": e.ttft_ms,
        "status": e.status,
        "error_type": e.error_type,
        "metadata": e.meta,
    }


class _Flush:
    """A marker put on the queue; set once everything before it is in the DB or the spool."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()
_NOTHING = object()


def _is_data_error(exc: BaseException) -> bool:
    """True when the rows themselves are bad (retrying cannot help); False for DB trouble."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return True  # a value could not be bound (naive datetime, bad decimal...)
    return isinstance(exc, ValueError | TypeError)


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def _insert_statement(engine: Engine) -> Insert:
    table = UsageRecord.__table__  # type: ignore[attr-defined]
    name = engine.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=["request_id"])
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["request_id"])
    raise ConfigError(f"usage recording does not support the {name!r} database")


class _DriverInsert:
    """The usage INSERT as one driver-level ``executemany`` (SQLite, the embedded default).

    Each value goes through the column type's own SQLAlchemy bind processor, so the stored
    values are exactly those of ``conn.execute(stmt, rows)``; what is skipped is SQLAlchemy's
    per-row parameter machinery, about a third of the writer's CPU per row. Three processors are
    short-cut where they cost most (``_shortcut``): a UTC timestamp is formatted by
    ``isoformat`` (3.5 -> 0.9 µs), a ``None`` takes the processor's precomputed result (the JSON
    metadata column: 1.5 µs of ``json.dumps(None)``), and a UUID's or bool's result is memoised;
    each shortcut is checked against its processor on sample values at start-up and is not used
    unless every sample agrees.
    """

    def __init__(self, engine: Engine, stmt: Insert) -> None:
        dialect = engine.dialect
        table = UsageRecord.__table__  # type: ignore[attr-defined]
        keys = [c.key for c in table.columns if not c.primary_key]
        compiled = stmt.compile(dialect=dialect, column_keys=keys)
        order = compiled.positiontup
        if order is None or sorted(order) != sorted(keys):
            raise ValueError("unexpected INSERT parameters")
        self.sql = str(compiled)
        self._procs = [
            (
                itemgetter(name),
                _shortcut(
                    table.c[name].type.dialect_impl(dialect).bind_processor(dialect),
                    _python_type(table.c[name].type),
                ),
            )
            for name in order
        ]

    def params(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Driver parameters for ``rows`` (bind-processing errors raise, as a bad row)."""
        columns: list[list[Any]] = []
        for get, proc in self._procs:  # column by column: map() keeps the loops in C
            values = map(get, rows)
            columns.append(list(values if proc is None else map(proc, values)))
        return list(zip(*columns, strict=True))


_SAMPLE_TIMES = (
    datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 6, 1, 12, 0, 0, 0, tzinfo=UTC),
    datetime(1999, 9, 9, 9, 9, 9, 90000, tzinfo=UTC),
)
_MEMO_MAX = 4096


def _python_type(col_type: Any) -> type | None:
    """The column's Python type (a ``TypeDecorator``'s says ``object``: ask its ``impl``)."""
    candidates: list[Any] = [col_type, getattr(col_type, "impl", None)]
    for candidate in candidates:
        try:
            t: type = candidate.python_type
        except (AttributeError, NotImplementedError):
            continue
        if t is not object:
            return t
    return None


def _agrees(proc: Callable[[Any], Any], fast: Callable[[Any], Any], samples: Sequence[Any]) -> bool:
    try:
        return all(type(proc(v)) is type(fast(v)) and proc(v) == fast(v) for v in samples)
    except Exception:  # noqa: BLE001 - a processor that cannot take the samples: no shortcut
        return False


def _shortcut(
    proc: Callable[[Any], Any] | None, python_type: type | None
) -> Callable[[Any], Any] | None:
    """``proc``, or a cheaper function returning the same values (see ``_DriverInsert``)."""
    if proc is None:
        return None
    try:
        none_value = proc(None)
    except Exception:  # noqa: BLE001 - the column takes no None: nothing to precompute
        return proc
    if python_type is datetime:

        def utc_text(v: Any) -> Any:
            if type(v) is datetime and v.tzinfo is UTC:
                return v.isoformat(" ", "microseconds")[:-6]
            return none_value if v is None else proc(v)

        return utc_text if _agrees(proc, utc_text, _SAMPLE_TIMES) else proc
    if python_type is uuid.UUID or python_type is bool:
        memo: dict[Any, Any] = {None: none_value}
        kind = python_type

        def memoised(v: Any) -> Any:
            if type(v) is kind or v is None:
                try:
                    return memo[v]
                except KeyError:
                    if len(memo) >= _MEMO_MAX:
                        memo.clear()
                        memo[None] = none_value
                    out = memo[v] = proc(v)
                    return out
            return proc(v)

        samples = [None, uuid.uuid4()] if kind is uuid.UUID else [None, False, True]
        return memoised if _agrees(proc, memoised, samples) else proc
    if none_value is None:
        return proc  # a None is already cheap

    def constant_none(v: Any) -> Any:
        return none_value if v is None else proc(v)

    return constant_none


class UsageRecorder:
    """Records usage events without ever making the caller wait for the database."""

    def __init__(self, engine: Engine, settings: UsageSettings, spool_dir: Path) -> None:
        self._engine = engine
        self._settings = settings
        self._batch_size = settings.batch_size
        self._queue_max = settings.queue_max
        self._stmt = _insert_statement(engine)
        self._driver_insert: _DriverInsert | None = None
        if engine.dialect.name == "sqlite":
            with contextlib.suppress(Exception):  # else: the plain SQLAlchemy executemany
                self._driver_insert = _DriverInsert(engine, self._stmt)
        self._spool = Spool(spool_dir)
        self._q: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._abandoned = False  # close() gave up waiting for the writer and took over
        self._close_deadline = float("inf")
        self._lock = threading.Lock()  # counters touched outside the writer thread, stranded rows
        self._count_lock = threading.Lock()  # a spool append and its count go together
        self._inflight: list[UsageEvent] = []
        self._stranded: list[dict[str, Any]] = []  # neither DB nor spool took them (disk trouble)
        self._degraded = False
        self._retry_delay = settings.retry_interval
        self._next_retry = 0.0
        self._next_check = 0.0
        # counters
        self._written = 0
        self._replayed = 0
        self._spooled = 0
        self._overflowed = 0
        self._rejected = 0
        self._bad_spool_lines = 0
        self._batches = 0
        self._failures = 0
        self._spool_records = 0
        self._last_error: str | None = None

    # --- public API ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread; it first replays any spool left by an earlier run."""
        if self._closed:
            raise RuntimeError("UsageRecorder was closed")
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="llmgw-usage-writer", daemon=True)
        self._thread.start()

    def record(self, event: UsageEvent) -> None:
        """Queue one event: O(1), thread-safe, no I/O unless the queue is over ``queue_max``."""
        if self._closed or self._q.qsize() >= self._queue_max:
            self._overflow(event)
            return
        self._q.put(event)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is in the database or the spool."""
        t = self._thread
        if t is None or not t.is_alive():
            return self._q.empty()
        marker = _Flush()
        self._q.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Flush and stop; whatever cannot reach the database in time is left in the spool."""
        if self._closed:
            return
        self._closed = True
        self._close_deadline = time.monotonic() + timeout
        t = self._thread
        if t is not None and t.is_alive():
            self._q.put(_STOP)
            t.join(max(0.0, timeout - min(1.0, timeout / 10)))
            if t.is_alive():  # stuck on the database: keep the batch in hand too (dupes are fine)
                self._abandoned = True
                self._last_error = "usage writer did not finish in time; its batch was spooled"
                self._spool_rows(self._rows_of(list(self._inflight)))
        rest = self._drain_queue()
        if rest:
            self._spool_rows(self._rows_of(rest))
        self._spool.close()

    def stats(self) -> dict[str, int | float | str | None]:
        """Counters for metrics and ``llmgw`` status output."""
        if self._closed and (self._thread is None or not self._thread.is_alive()):
            state = "stopped"
        elif self._stranded:
            state = "failing"  # database down and the spool not writable
        else:
            state = "degraded" if self._degraded else "ok"
        return {
            "state": state,
            "queued": self._q.qsize(),
            "written": self._written,
            "replayed": self._replayed,
            "spooled": self._spooled,
            "overflowed": self._overflowed,
            "rejected": self._rejected,
            "spool_records": max(self._spool_records, 0),
            "bad_spool_lines": self._bad_spool_lines,
            "stranded": len(self._stranded),
            "batches": self._batches,
            "failures": self._failures,
            "last_error": self._last_error,
        }

    # --- writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        with contextlib.suppress(Exception):
            # Counted here, not in start(): a big spool must not delay start-up. The count lock
            # keeps records spooled meanwhile (queue over its bound) from being counted twice.
            with self._count_lock:
                self._spool_records = self._spool.count_records()
            if self._spool_records or self._spool.segments():
                self._try_recover()
        while True:
            batch: list[UsageEvent] = []
            markers: list[_Flush] = []
            stop = False
            try:
                stop = self._collect(batch, markers)
                if batch:
                    self._write_batch(batch)
            except Exception as exc:  # noqa: BLE001 - the writer must not die; keep the rows
                self._last_error = _describe(exc)
                with contextlib.suppress(Exception):
                    self._spool_rows(self._rows_of(batch))
            for m in markers:
                m.done.set()
            if stop:
                break
            with contextlib.suppress(Exception):
                self._maintain()
        with contextlib.suppress(Exception):
            self._shutdown()

    def _wait_time(self) -> float:
        now = time.monotonic()
        due = self._next_retry if self._degraded else self._next_check
        return min(max(due - now, 0.01), 1.0)

    def _collect(self, batch: list[UsageEvent], markers: list[_Flush]) -> bool:
        """Fill ``batch`` (size- and time-bounded); return True when asked to stop."""
        if self._abandoned:
            return True
        try:
            item = self._q.get(timeout=self._wait_time())
        except queue.Empty:
            return False
        deadline = time.monotonic() + self._settings.flush_interval
        while True:
            if item is _STOP:
                return True
            if isinstance(item, _Flush):
                markers.append(item)
                return False
            batch.append(item)  # type: ignore[arg-type]
            if len(batch) >= self._batch_size:
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
        tick = max(0.002, min(self._settings.flush_interval / 4, 0.05))
        while True:
            try:
                return self._q.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return _NOTHING
                time.sleep(min(remaining, tick))

    def _rows_of(self, events: Sequence[UsageEvent]) -> list[dict[str, Any]]:
        """Rows for ``events``; an object that is not a usable event is rejected, not fatal."""
        rows: list[dict[str, Any]] = []
        for e in events:
            try:
                rows.append(event_to_row(e))
            except Exception as exc:  # noqa: BLE001 - e.g. created_at is not a datetime
                self._rejected += 1
                self._last_error = f"rejected a usage event: {_describe(exc)}"
                with contextlib.suppress(OSError):
                    bad = {"request_id": str(getattr(e, "request_id", None)), "event": repr(e)}
                    self._spool.reject([bad], _describe(exc))
        return rows

    def _write_batch(self, batch: list[UsageEvent]) -> None:
        rows = self._rows_of(batch)
        self._inflight = batch
        try:
            if self._degraded:
                self._spool_rows(rows)
                return
            try:
                self._insert_rows(rows)
            except Exception as exc:  # noqa: BLE001 - any DB trouble: spool, retry later
                self._enter_degraded(exc)
                self._spool_rows(rows)
                return
            self._written += len(rows)
        finally:
            self._inflight = []

    def _insert(self, rows: Sequence[dict[str, Any]]) -> None:
        fast = self._driver_insert
        if fast is not None:
            params = fast.params(rows)
            with self._engine.begin() as conn:
                conn.exec_driver_sql(fast.sql, params)
        else:
            with self._engine.begin() as conn:
                conn.execute(self._stmt, list(rows))
        self._batches += 1

    def _insert_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert in one transaction; if the data is bad, row by row, rejecting the bad ones."""
        try:
            self._insert(rows)
        except Exception as exc:
            if not _is_data_error(exc):
                raise
            for row in rows:
                try:
                    self._insert([row])
                except Exception as row_exc:
                    if not _is_data_error(row_exc):
                        raise
                    self._spool.reject([row], _describe(row_exc))
                    self._rejected += 1
                    self._last_error = f"rejected a usage row: {_describe(row_exc)}"

    def _spool_rows(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self._count_lock:
            try:
                self._spool.append(rows)
            except OSError as exc:
                with self._lock:
                    self._stranded.extend(rows)
                self._last_error = f"spool not writable: {exc.strerror or exc}"
                return
            with self._lock:
                self._spooled += len(rows)
                self._spool_records += len(rows)

    def _overflow(self, event: UsageEvent) -> None:
        """Past the queue bound (or after close): straight to the spool, never dropped."""
        with self._lock:
            self._overflowed += 1
        self._spool_rows(self._rows_of([event]))
        if self._closed:
            self._spool.rotate()  # no writer any more: release the segment for the next run

    def _enter_degraded(self, exc: BaseException) -> None:
        self._failures += 1
        self._last_error = _describe(exc)
        if not self._degraded:
            self._degraded = True
            self._retry_delay = self._settings.retry_interval
        else:
            cap = self._settings.retry_interval * 16
            self._retry_delay = min(self._retry_delay * 2, cap)
        self._next_retry = time.monotonic() + self._retry_delay

    def _maintain(self) -> None:
        now = time.monotonic()
        if self._degraded:
            if now >= self._next_retry:
                self._try_recover()
        elif now >= self._next_check:
            self._next_check = now + self._settings.retry_interval
            if self._stranded or self._spool.segments():
                self._try_recover()

    def _try_recover(self) -> bool:
        """Replay the spool (and stranded rows); on success leave the degraded state."""
        try:
            with self._lock:
                stranded, self._stranded = self._stranded, []
            if stranded:
                try:
                    self._insert_rows(stranded)
                except Exception:
                    with self._lock:
                        self._stranded[:0] = stranded
                    raise
                self._written += len(stranded)
            self._replay_spool()
        except Exception as exc:  # noqa: BLE001 - still down: back off
            if _is_data_error(exc):
                self._last_error = _describe(exc)
            self._enter_degraded(exc)
            return False
        self._degraded = False
        self._retry_delay = self._settings.retry_interval
        return True

    def _replay_spool(self) -> None:
        self._spool.rotate()  # our own open segment becomes replayable
        for path in self._spool.segments():
            with self._spool.claim(path) as seg:
                if seg is None:
                    continue  # another live process is still writing it, or it is gone
                unique = list({r["request_id"]: r for r in seg.rows}.values())
                for i in range(0, len(unique), self._batch_size):
                    self._insert_rows(unique[i : i + self._batch_size])
                self._spool.remove(path)  # only now: every row of it is committed
                with self._lock:
                    self._spool_records -= len(seg.rows) + seg.bad_lines
                self._replayed += len(unique)
                if seg.bad_lines:
                    self._bad_spool_lines += seg.bad_lines
                    self._last_error = f"{seg.bad_lines} unreadable line(s) in spool {path.name}"

    def _drain_queue(self) -> list[UsageEvent]:
        out: list[UsageEvent] = []
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return out
            if isinstance(item, _Flush):
                item.done.set()
            elif item is not _STOP:
                out.append(item)  # type: ignore[arg-type]

    def _shutdown(self) -> None:
        rest = self._drain_queue()  # records that raced with close()
        if rest:
            self._write_batch(rest)
        pending = self._stranded or self._spool_records > 0
        time_left = self._close_deadline - time.monotonic()
        if pending and (not self._degraded or time_left > 2.0):
            self._try_recover()
        with self._lock:
            stranded, self._stranded = self._stranded, []
        if stranded:
            self._spool_rows(stranded)
        self._spool.close()
