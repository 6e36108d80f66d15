"""Column kinds of the schema and one canonical text per value, for checksums on both databases.

``table_specs()`` reads the tables from the SQLModel metadata (every table the newest migration
creates, in foreign-key order), so a table added by a later migration is copied and checked
without a change here; a column type this module does not know stops the copy instead of being
guessed.

The canonical form is what a reader of the value sees, independent of how each database stores
it: SQLite keeps UUIDs as 32 hex digits, booleans as 0/1, timestamps as text, money as text and
JSON as text; PostgreSQL has native types. Both sides are turned into the same strings:

=========  ==================================================================================
kind       canonical text
=========  ==================================================================================
int        the integer
bool       0 / 1
float      the double (written by orjson: the shortest text that reads back to the same bits)
decimal    plain notation without trailing zeros (``0.0012``, ``100``, ``0``)
uuid       lower-case, dashed
datetime   UTC, ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (a value without an offset is UTC)
json       keys sorted, no spaces, floats with an integral value written as integers
text       the text itself (NUL removed with ``--strip-nul``)
bytes      lower-case hex
=========  ==================================================================================

A row's canonical form is the JSON array (orjson) of its canonical values (``null`` for NULL); a
table's checksum is the sum, modulo 2**128, of the 128-bit BLAKE2b of each row's form. A sum
does not depend on row order and, unlike XOR, sees a duplicated row.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from hashlib import blake2b
from typing import Any, Literal

import orjson
import sqlalchemy as sa

__all__ = [
    "ColumnSpec",
    "Kind",
    "TableSpec",
    "TableSum",
    "checksum_rows",
    "parse_datetime",
    "source_canonicalizer",
    "table_specs",
    "target_canonicalizer",
]

Kind = Literal["int", "bool", "float", "decimal", "uuid", "datetime", "json", "text", "bytes"]
_MOD = 1 << 128


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its name in SQL, the kind of value it holds and its limits."""

    name: str
    kind: Kind
    nullable: bool
    length: int | None = None
    """Longest text in characters (``VARCHAR(n)``), or None."""
    precision: int | None = None
    scale: int | None = None
    int_bits: int = 64


@dataclass(frozen=True)
class TableSpec:
    """One table, with its columns in declaration order."""

    name: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        """The columns' SQL names."""
        return [c.name for c in self.columns]


def _kind_of(col: sa.Column[Any]) -> ColumnSpec:
    t: Any = col.type
    if isinstance(t, sa.TypeDecorator):
        impl = t.impl if isinstance(t.impl, sa.types.TypeEngine) else t.impl()
        t = impl
    nullable = bool(col.nullable)
    if isinstance(t, sa.Boolean):
        return ColumnSpec(col.name, "bool", nullable)
    if isinstance(t, sa.Integer):
        bits = 64 if isinstance(t, sa.BigInteger) else 16 if isinstance(t, sa.SmallInteger) else 32
        return ColumnSpec(col.name, "int", nullable, int_bits=bits)
    if isinstance(t, sa.Float):
        return ColumnSpec(col.name, "float", nullable)
    if isinstance(t, sa.Numeric):
        return ColumnSpec(col.name, "decimal", nullable, precision=t.precision, scale=t.scale)
    if isinstance(t, sa.Uuid):
        return ColumnSpec(col.name, "uuid", nullable)
    if isinstance(t, sa.DateTime):
        return ColumnSpec(col.name, "datetime", nullable)
    if isinstance(t, sa.JSON):
        return ColumnSpec(col.name, "json", nullable)
    if isinstance(t, sa.LargeBinary):
        return ColumnSpec(col.name, "bytes", nullable)
    if isinstance(t, sa.String):  # also Text, Enum and sqlmodel's AutoString
        return ColumnSpec(col.name, "text", nullable, length=t.length)
    raise TypeError(f"column {col.table.name}.{col.name}: type {t!r} has no copy rule")


def table_specs(metadata: sa.MetaData | None = None) -> list[TableSpec]:
    """Every table of the schema, parents before the tables that refer to them."""
    if metadata is None:
        from sqlmodel import SQLModel

        import llmgw.storage.tables  # noqa: F401  (registers the tables)

        metadata = SQLModel.metadata
    return [
        TableSpec(
            table.name,
            tuple(_kind_of(c) for c in table.columns),
            tuple(c.name for c in table.primary_key.columns),
        )
        for table in metadata.sorted_tables
    ]


# --- parsing the source's stored text ------------------------------------------------------

_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def parse_datetime(text: str) -> datetime:
    """A stored timestamp as an aware UTC datetime (text without an offset is UTC).

    ISO 8601 with a space or ``T``, optional seconds and up to 6 fraction digits, ``Z`` or an
    offset. Anything else (numbers, other formats, more digits than PostgreSQL keeps) raises
    ``ValueError``: nothing is guessed or rounded.
    """
    if not isinstance(text, str) or not _DATETIME.fullmatch(text):
        raise ValueError("not an ISO 8601 timestamp with at most 6 fraction digits")
    value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _datetime_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_decimal(text: Any, precision: int | None, scale: int | None) -> Decimal:
    """A stored amount as a ``Decimal`` that fits NUMERIC(precision, scale) without rounding."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = repr(text)
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text):
        raise ValueError("not a decimal number")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise ValueError("not a decimal number") from None
    if value != 0:
        exponent = value.normalize().as_tuple().exponent
        assert isinstance(exponent, int)
        if scale is not None and -exponent > scale:
            raise ValueError(f"more than {scale} decimal places (would be rounded)")
        if precision is not None and value.adjusted() >= precision - (scale or 0):
            raise ValueError(f"too large for NUMERIC({precision},{scale})")
    return value


def _decimal_text(value: Decimal) -> str:
    return "0" if value == 0 else format(value.normalize(), "f")


def _normal_json(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _normal_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal_json(v) for v in value]
    return value


def _json_text(value: Any) -> str:
    value = _normal_json(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_json(text: Any) -> Any:
    """Stored JSON text as Python values; PostgreSQL's jsonb refuses ``\\u0000``, so do we."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return text  # SQLite's NUMERIC affinity turned a JSON number into a number
    if not isinstance(text, str):
        raise ValueError("not JSON text")
    if "\\u0000" in text:
        raise ValueError("JSON string with \\u0000 (PostgreSQL's jsonb refuses it)")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            return json.loads(text)  # integers beyond 64 bits
        except ValueError:
            raise ValueError("not valid JSON") from None


# --- canonical text per kind ----------------------------------------------------------------

Canon = Callable[[Any], Any]
"""One value (never None) -> its canonical form."""


def _uuid_text(v: Any) -> str:
    if isinstance(v, str) and len(v) == 32:  # llmgw's own form; SQL checked the hex digits
        v = v.lower()
        return f"{v[:8]}-{v[8:12]}-{v[12:16]}-{v[16:20]}-{v[20:]}"
    try:
        return str(uuid.UUID(v))
    except (ValueError, TypeError, AttributeError):
        return str(v)  # sqlite_source's SQL checks report it; counted once


def _source_datetime(v: Any) -> str:
    if isinstance(v, str) and len(v) == 26 and v[10] == " " and v[19] == ".":
        datetime.fromisoformat(v)  # llmgw's own form: only check it is a real instant
        return f"{v[:10]}T{v[11:]}+00:00"
    return _datetime_text(parse_datetime(v))


def _source_fn(col: ColumnSpec, strip_nul: bool) -> Canon | None:
    kind = col.kind
    if kind == "decimal":
        p, s = col.precision, col.scale
        return lambda v: _decimal_text(parse_decimal(v, p, s))
    if kind == "uuid":
        return _uuid_text
    if kind == "datetime":
        return _source_datetime
    if kind == "json":
        return lambda v: _json_text(parse_json(v))
    if kind == "bytes":
        return lambda v: v.hex() if isinstance(v, bytes) else str(v)
    if kind == "text" and strip_nul:
        return lambda v: v.replace("\x00", "")
    return None  # int, bool (0/1), float, text: as SQLite returns them


def _target_fn(col: ColumnSpec) -> Canon | None:
    kind = col.kind
    if kind == "uuid":
        return str
    if kind == "bool":
        return int  # SQLite's 0/1
    if kind == "decimal":
        return _decimal_text
    if kind == "datetime":
        return _datetime_text
    if kind == "json":  # read as text: psycopg would load a JSON null as None, like SQL NULL
        return lambda v: _json_text(parse_json(v))
    if kind == "bytes":
        return lambda v: bytes(v).hex()
    return None


def _canonicalizer(fns: list[Canon | None]) -> Callable[[Sequence[Any]], list[Any]]:
    convert = [(i, f) for i, f in enumerate(fns) if f is not None]

    def canon(row: Sequence[Any]) -> list[Any]:
        out = list(row)
        for i, f in convert:
            v = out[i]
            if v is not None:
                out[i] = f(v)
        return out

    return canon


def source_canonicalizer(
    spec: TableSpec, *, strip_nul: bool = False
) -> Callable[[Sequence[Any]], list[Any]]:
    """Raw SQLite row -> canonical values; raises ``ValueError`` on a decimal, timestamp or JSON
    value no rule accepts (the other kinds are checked in SQL by ``sqlite_source``)."""
    return _canonicalizer([_source_fn(c, strip_nul) for c in spec.columns])


def target_canonicalizer(spec: TableSpec) -> Callable[[Sequence[Any]], list[Any]]:
    """PostgreSQL row (psycopg's Python values) -> canonical values."""
    return _canonicalizer([_target_fn(c) for c in spec.columns])


@dataclass
class TableSum:
    """Row count and order-independent checksum of one table."""

    rows: int = 0
    total: int = 0

    def add(self, canonical: list[Any]) -> None:
        """Count one row given in canonical form."""
        digest = blake2b(orjson.dumps(canonical), digest_size=16).digest()
        self.total = (self.total + int.from_bytes(digest, "big")) % _MOD
        self.rows += 1

    @property
    def checksum(self) -> str:
        """The checksum as 32 hex digits."""
        return f"{self.total:032x}"


def checksum_rows(
    rows: Iterable[Sequence[Any]], canon: Callable[[Sequence[Any]], list[Any]]
) -> TableSum:
    """Count and checksum ``rows`` after ``canon``."""
    total = TableSum()
    for row in rows:
        total.add(canon(row))
    return total
