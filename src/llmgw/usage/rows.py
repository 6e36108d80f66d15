"""The usage row: ``UsageEvent`` (what the server reports) and its columns, derived from the table.

The ``usage`` table (``llmgw.storage.tables.UsageRecord``) is the one place the row is spelled
out; ``COLUMNS`` is read from it, and every event field that maps onto a column is checked at
import time, so a column added to the table without a field here fails loudly, not silently.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

import sqlalchemy as sa

from llmgw.storage.tables import UsageRecord

__all__ = ["COLUMNS", "USAGE_TABLE", "UsageEvent", "event_to_row"]

USAGE_TABLE: sa.Table = UsageRecord.__table__  # type: ignore[attr-defined]
COLUMNS: tuple[str, ...] = tuple(str(c.key) for c in USAGE_TABLE.columns if not c.primary_key)
"""The columns a usage row fills, in table order (the surrogate ``id`` is the database's)."""


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
    token_id: str | None = None  # the jti of a token caller (then key_id is None)
    finish_reason: str | None = None  # stop, length (hit max_tokens), tool_calls...
    ticket: object = field(default=None, repr=False, compare=False)
    """The journal segment holding this record (set by the recorder; not a column)."""


# Column -> event attribute: the same name except the JSON column, whose attribute on the
# SQLModel (and here) is ``meta`` because ``metadata`` is taken on declarative classes.
_ATTRS = tuple("meta" if c == "metadata" else c for c in COLUMNS)
_missing = set(_ATTRS) - {f.name for f in fields(UsageEvent)}
if _missing:  # pragma: no cover - a schema change without its event field
    raise ImportError(f"UsageEvent has no field for usage column(s) {sorted(_missing)}")
_values = attrgetter(*_ATTRS)


def event_to_row(e: UsageEvent) -> dict[str, Any]:
    """The ``usage`` table row (column name -> value) for one event."""
    row = dict(zip(COLUMNS, _values(e), strict=True))
    created = e.created_at
    if created.tzinfo is None:
        row["created_at"] = created.replace(tzinfo=UTC)
    return row
