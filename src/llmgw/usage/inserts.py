"""Writing usage rows: the idempotent INSERT, its driver-level fast path, and rejected rows.

``Inserter.insert_rows`` inserts a batch in one transaction with ``ON CONFLICT (request_id) DO
NOTHING``; when the data itself is bad (not the database), it retries row by row and hands the
bad rows to ``on_reject``, so one unstorable row never blocks the rows around it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.sql.dml import Insert

from llmgw.errors import ConfigError
from llmgw.usage.rows import COLUMNS, USAGE_TABLE

__all__ = ["Inserter", "describe", "is_data_error"]

log = logging.getLogger("llmgw.usage")


def is_data_error(exc: BaseException) -> bool:
    """True when the rows themselves are bad (retrying cannot help); False for DB trouble."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return True  # a value could not be bound (naive datetime, bad decimal...)
    return isinstance(exc, ValueError | TypeError)


def describe(exc: BaseException) -> str:
    """An error's class and first line (driver errors unwrapped), for logs and ``last_error``."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def insert_statement(engine: Engine) -> Insert:
    """``INSERT ... ON CONFLICT (request_id) DO NOTHING`` for the engine's dialect."""
    name = engine.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(USAGE_TABLE).on_conflict_do_nothing(index_elements=["request_id"])
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(USAGE_TABLE).on_conflict_do_nothing(index_elements=["request_id"])
    raise ConfigError(f"usage recording does not support the {name!r} database")


class Inserter:
    """Inserts usage rows; counts committed batches; reports rows the database refuses."""

    def __init__(
        self,
        engine: Engine,
        on_reject: Callable[[dict[str, Any], str], None],
        *,
        memo: bool = True,
    ) -> None:
        self.engine = engine
        self.stmt = insert_statement(engine)
        self.on_reject = on_reject
        self.batches = 0
        self.driver: _DriverInsert | None = None
        if engine.dialect.name == "sqlite":
            try:
                self.driver = _DriverInsert(engine, self.stmt, memo=memo)
            except Exception as exc:  # noqa: BLE001 - the plain SQLAlchemy executemany works
                log.warning(
                    "usage: driver-level insert unavailable (%s); using SQLAlchemy's executemany",
                    describe(exc),
                )
        # A stream's provisional record (replayed after a crash) is replaced by its final one.
        self._final = (
            sa.update(USAGE_TABLE)
            .where(USAGE_TABLE.c.request_id == sa.bindparam("rid"))
            .where(USAGE_TABLE.c.error_type == "interrupted")
            .values({c: sa.bindparam(f"v_{c}") for c in COLUMNS if c != "request_id"})
        )

    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        """One transaction; raises on any failure."""
        fast = self.driver
        if fast is not None:
            params = fast.params(rows)
            with self.engine.begin() as conn:
                conn.exec_driver_sql(fast.sql, params)
        else:
            with self.engine.begin() as conn:
                conn.execute(self.stmt, list(rows))
        self.batches += 1

    def insert_rows(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert in one transaction; if the data is bad, row by row, rejecting the bad ones.

        Returns the rows that reached the database (rejected ones do not count); raises on
        database trouble (nothing is known to be written then).
        """
        try:
            self.insert(rows)
            return len(rows)
        except Exception as exc:
            if not is_data_error(exc):
                raise
        stored = 0
        for row in rows:
            try:
                self.insert([row])
                stored += 1
            except Exception as row_exc:
                if not is_data_error(row_exc):
                    raise
                self.on_reject(row, describe(row_exc))
        return stored

    def replace_partial(self, rows: Sequence[dict[str, Any]]) -> None:
        """Final stream records replacing provisional ones already stored (replay only)."""
        if not rows:
            return
        params = [
            {"rid": r["request_id"], **{f"v_{c}": r[c] for c in COLUMNS if c != "request_id"}}
            for r in rows
        ]
        with self.engine.begin() as conn:
            conn.execute(self._final, params)


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

    def __init__(self, engine: Engine, stmt: Insert, *, memo: bool = True) -> None:
        dialect = engine.dialect
        table = USAGE_TABLE
        keys = list(COLUMNS)
        compiled = stmt.compile(dialect=dialect, column_keys=keys)
        order = compiled.positiontup
        if order is None or sorted(order) != sorted(keys):
            raise ValueError("unexpected INSERT parameters")
        self.sql = str(compiled)
        procs = [
            (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in order
        ]
        self._procs = [
            (
                itemgetter(name),
                _shortcut(proc, _python_type(table.c[name].type), name) if memo else proc,
            )
            for name, proc in procs
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
    proc: Callable[[Any], Any] | None, python_type: type | None, column: str = "?"
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

        return utc_text if _agrees(proc, utc_text, _SAMPLE_TIMES) else _fallback(proc, column)
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
        return memoised if _agrees(proc, memoised, samples) else _fallback(proc, column)
    if none_value is None:
        return proc  # a None is already cheap

    def constant_none(v: Any) -> Any:
        return none_value if v is None else proc(v)

    return constant_none


def _fallback(proc: Callable[[Any], Any], column: str) -> Callable[[Any], Any]:
    log.warning(
        "usage: the bind-processor shortcut for column %r disagrees with SQLAlchemy's processor"
        " (a SQLAlchemy change?); using the processor",
        column,
    )
    return proc
