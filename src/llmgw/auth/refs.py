"""What the key and user resolvers (``find_key``, ``find_user``) share: a UUID id typed whole
or as a prefix of 8+ hex digits, the error for a hex ref too short to be one, and the listing
of the candidates a ref matches more than one of."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from llmgw.errors import UsageError

__all__ = ["ambiguous", "id_match", "too_short"]

_ID_PREFIX_RE = re.compile(r"[0-9a-f]{8,32}")
_HEX = frozenset("0123456789abcdef")
_LISTED = 5  # candidates an ambiguity error names


def _hexed(ref: str) -> str:
    return ref.lower().replace("-", "")


def id_match(column: Any, ref: str) -> sa.ColumnElement[bool] | None:
    """The condition on the UUID ``column`` for ``ref`` read as a whole id or an id prefix (8+
    hex digits, dashes ignored); ``None`` when ``ref`` is neither."""
    hexed = _hexed(ref)
    if not _ID_PREFIX_RE.fullmatch(hexed):
        return None
    if len(hexed) == 32:
        return column == uuid.UUID(hexed)  # type: ignore[no-any-return]
    # ids sort as their hex digits on both backends: a range uses the primary key's index
    lo, hi = uuid.UUID(hexed.ljust(32, "0")), uuid.UUID(hexed.ljust(32, "f"))
    return column.between(lo, hi)  # type: ignore[no-any-return]


def too_short(ref: str, what: str, whose: str, hint: str) -> UsageError | None:
    """The error for ``ref`` when it is 1-7 hex digits (a cut id), ``None`` otherwise: "'cafe'
    is too short to name {what}: give at least 8 characters of {whose} id"."""
    hexed = _hexed(ref)
    if 0 < len(hexed) < 8 and set(hexed) <= _HEX:
        return UsageError(
            f"{ref!r} is too short to name {what}: give at least 8 characters of {whose} id",
            hint=hint,
        )
    return None


def ambiguous(
    shown: str, rows: Sequence[Any], what: str, describe: Callable[[Any], str], hint: str
) -> UsageError:
    """The error for a ref (``shown`` as safe to print) matching several ``rows``: "'x' matches
    3 {what}: abcdef01 ({describe(row)}), ..." naming at most five."""
    listed = ", ".join(f"{r._mapping['id'].hex[:8]} ({describe(r)})" for r in rows[:_LISTED])
    more = f" and {len(rows) - _LISTED} more" if len(rows) > _LISTED else ""
    return UsageError(f"{shown!r} matches {len(rows)} {what}: {listed}{more}", hint=hint)
