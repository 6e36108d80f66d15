"""Turn SQLAlchemy failures into ``DatabaseError`` without leaking SQL, parameters or passwords."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from llmgw.errors import DatabaseError
from llmgw.storage.db import redact_url

__all__ = ["db_errors"]


@contextmanager
def db_errors(engine: Engine, doing: str) -> Iterator[None]:
    """Re-raise database failures (other than ``IntegrityError``) as one-line ``DatabaseError``."""
    try:
        yield
    except IntegrityError:
        raise
    except SQLAlchemyError as exc:
        # Only the driver's first line: never the statement or its parameters.
        orig = getattr(exc, "orig", None) or exc
        lines = str(orig).strip().splitlines()
        reason = lines[0][:200] if lines else type(orig).__name__
        raise DatabaseError(
            f"database error while {doing} at {redact_url(engine.url)}: {reason}",
            hint="check that the database is reachable and migrated (`llmgw db upgrade`)",
        ) from None
