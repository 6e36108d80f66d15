"""Turn SQLAlchemy failures into ``DatabaseError`` without leaking SQL, parameters or passwords."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import URL, Connection, Dialect, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from llmgw.errors import DatabaseError
from llmgw.storage.db import redact_url

__all__ = ["Bound", "db_errors"]


@contextmanager
def db_errors(engine: Engine, doing: str, *, integrity: bool = True) -> Iterator[None]:
    """Re-raise database failures as one-line ``DatabaseError``; an ``IntegrityError`` passes
    through for the caller to explain (a taken email) unless ``integrity`` is false (a write that
    no constraint should refuse, such as an audit row)."""
    try:
        yield
    except IntegrityError as exc:
        if integrity:
            raise
        raise _database_error(engine, doing, exc) from None
    except SQLAlchemyError as exc:
        raise _database_error(engine, doing, exc) from None


def _database_error(engine: Engine, doing: str, exc: SQLAlchemyError) -> DatabaseError:
    # Only the driver's first line: never the statement or its parameters.
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    reason = lines[0][:200] if lines else type(orig).__name__
    return DatabaseError(
        f"database error while {doing} at {redact_url(engine.url)}: {reason}",
        hint="check that the database is reachable and migrated (`llmgw db upgrade`)",
    )


class Bound:
    """An ``Engine`` stand-in for the core services whose ``begin()`` and ``connect()`` hand out
    one connection already in a transaction: several services' writes (a key revoked and its
    audit row) then commit or roll back together, in the transaction of whoever opened it
    (``LocalAdmin``). Savepoints (``conn.begin_nested()``) work as with the engine."""

    def __init__(self, engine: Engine, conn: Connection) -> None:
        self._engine = engine
        self._conn = conn

    @property
    def url(self) -> URL:
        """The engine's URL (error messages redact it)."""
        return self._engine.url

    @property
    def dialect(self) -> Dialect:
        """The engine's dialect."""
        return self._engine.dialect

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """The shared connection; committing is the transaction owner's business."""
        yield self._conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """The shared connection (reads see the transaction's own writes)."""
        yield self._conn
