r"""Column kinds of the schema and one canonical text per value, for checksums on both databases.

``table_specs()`` reads the tables from the SQLModel metadata (every table the newest migration
creates, in foreign-key order), so a table added by a later migration is copied and checked
without a change here; a column type this module does not know stops the copy instead of being
guessed.

The canonical form is what a reader of the value sees, independent of how each database stores
it: SQLite keeps UUIDs as 32 hex digits, booleans as 0/1, timestamps as text, money as text and
JSON as text; PostgreSQL has native types. Both sides are turned into the same strings, which
are what PostgreSQL itself prints or reads back unchanged (floats: C99's exact hexadecimal
notation), so the target's side is computed inside PostgreSQL in SQL (``canonical_sql``) and
only the source's side needs Python, for four kinds (``PYTHON_KINDS``):

=========  ==================================================================================
kind       canonical text
=========  ==================================================================================
int        the integer
bool       0 / 1
float      the double in C99's hexadecimal notation, as Python's ``float.hex`` writes it
           (``0x1.8000000000000p+1``, ``-0x0.0p+0``, ``inf``, ``nan``): exact, and read back
           as the same double by PostgreSQL (``strtod``)
decimal    plain notation without trailing zeros (``0.0012``, ``100``, ``0``): ``trim_scale``
uuid       32 lower-case hex digits (llmgw's SQLite form)
datetime   UTC, ``YYYY-MM-DD HH:MM:SS.ffffff`` (llmgw's SQLite form; a value without an
           offset is UTC)
json       PostgreSQL's ``jsonb`` text: keys ordered by length then bytes, the last of
           duplicate keys, ``", "`` and ``": "`` between items, numbers as written (``1.0``
           stays ``1.0``, ``1e2`` is ``100``, ``-0.0`` is ``0.0``)
text       the text itself (NUL removed with ``--strip-nul``)
bytes      lower-case hex (in a row's form ``\x`` before them, escaped: ``bytea``'s text)
=========  ==================================================================================

A row's canonical form is one line of PostgreSQL's ``COPY`` text format, and it is the very line
the copy sends (``COPY table (columns in this order) FROM STDIN``): first the columns of the
kinds int, bool, decimal, uuid, datetime, text and bytes in column order, then the float and
JSON columns in column order, separated by a tab; NULL is ``\N``; in text, JSON and bytes
values a backslash, newline, carriage return and tab are written ``\\``, ``\n``, ``\r`` and
``\t`` (the other kinds never hold them), so the line is unambiguous and PostgreSQL reads back
exactly the canonical values (every form above is one of its input forms). A table's checksum is the sum, modulo 2**128, of the MD5 of
each row's form (UTF-8) read as a 128-bit big-endian number: both databases compute it (MD5 is
built into PostgreSQL; here it only detects differences, it guards no secret). A sum does not
depend on row order and, unlike XOR, sees a duplicated row.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from hashlib import md5
from typing import Any, Literal

import sqlalchemy as sa

__all__ = [
    "ESCAPED_KINDS",
    "PYTHON_KINDS",
    "ColumnSpec",
    "Kind",
    "TableSpec",
    "TableSum",
    "checksum_rows",
    "copy_text",
    "decimal_own_form",
    "encode",
    "float_text",
    "jsonb_text",
    "own_timestamp",
    "parse_datetime",
    "parse_json",
    "row_hash",
    "row_order",
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

        from llmgw.storage.tables import register_all

        register_all()

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
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON {name} (PostgreSQL's jsonb refuses it)")


def parse_json(text: Any) -> Any:
    """Stored JSON text as Python values, numbers with a fraction or exponent as ``Decimal``
    (jsonb keeps them as written); PostgreSQL's jsonb refuses ``\\u0000``, NaN and Infinity,
    so do we."""
    if isinstance(text, bool):
        raise ValueError("not JSON text")
    if isinstance(text, int):
        return text  # SQLite's NUMERIC affinity turned a JSON number into a number
    if isinstance(text, float):
        return Decimal(repr(text))  # and what is copied is this text
    if not isinstance(text, str):
        raise ValueError("not JSON text")
    if "\\u0000" in text:
        raise ValueError("JSON string with \\u0000 (PostgreSQL's jsonb refuses it)")
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except json.JSONDecodeError:
        raise ValueError("not valid JSON") from None


def _jsonb_key(key: str) -> tuple[int, bytes]:
    raw = key.encode()
    return len(raw), raw


def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # escapes what jsonb's output escapes


def jsonb_text(value: Any) -> str:
    """``value`` (from ``parse_json``) as PostgreSQL prints it as ``jsonb``."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("JSON number that is not finite")
        out = format(value, "f")
        return out.lstrip("-") if value.is_zero() else out
    if isinstance(value, list):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: _jsonb_key(kv[0]))
        return "{" + ", ".join(f"{_json_str(k)}: {jsonb_text(v)}" for k, v in items) + "}"
    raise ValueError(f"not a JSON value: {type(value).__name__}")


def float_text(value: float) -> str:
    """A double in C99's hexadecimal notation (``float.hex``; PostgreSQL builds the same text
    from ``float8send`` in ``canonical_sql``): exact, where printed decimal digits differ
    between the two (PostgreSQL's shortest-digits printer and Python's ``repr`` disagree on
    some values), and PostgreSQL's float input reads it back as the same double."""
    return value.hex()


# --- canonical text per kind ----------------------------------------------------------------

Canon = Callable[[Any], Any]
"""One value (never None) -> its canonical form."""


def _uuid_text(v: Any) -> str:
    if isinstance(v, str) and len(v) == 32:  # llmgw's own form; SQL checked the hex digits
        return v.lower()
    try:
        return uuid.UUID(v).hex
    except (ValueError, TypeError, AttributeError):
        return str(v)  # sqlite_source's SQL checks report it; counted once


def own_timestamp(v: Any) -> bool:
    """Whether ``v`` is laid out as llmgw's own timestamp text, ``YYYY-MM-DD HH:MM:SS.ffffff``
    (``datetime.fromisoformat`` then checks its digits, ASCII only, and that it is a real
    instant: its canonical text is itself)."""
    return (
        type(v) is str
        and len(v) == 26
        and v[4] == "-" == v[7]
        and v[10] == " "
        and v[13] == ":" == v[16]
        and v[19] == "."
        and v[20:].isdigit()
    )


def _source_datetime(v: Any) -> str:
    if own_timestamp(v):
        datetime.fromisoformat(v)  # llmgw's own form: only check it is a real instant
        return str(v)
    return _datetime_text(parse_datetime(v))


def decimal_own_form(precision: int | None, scale: int | None) -> Callable[[str], Any]:
    """A test of llmgw's own text form of an amount that fits NUMERIC(precision, scale) as
    written (no sign, no exponent, no leading zero, at most ``scale`` decimals): its canonical
    text is the text without trailing zeros. Other forms go through ``parse_decimal``."""
    whole = "[0-9]*" if precision is None else f"[0-9]{{0,{precision - (scale or 0) - 1}}}"
    if precision is not None and precision - (scale or 0) < 1:
        whole = "(?!)"  # no integer digit fits: only 0.xxx
    frac = "[0-9]+" if scale is None else f"[0-9]{{1,{scale}}}" if scale else "(?!)"
    return re.compile(f"(?:0|[1-9]{whole})(?:\\.{frac})?").fullmatch


def _decimal_fn(precision: int | None, scale: int | None) -> Canon:
    own = decimal_own_form(precision, scale)

    def canon(v: Any) -> str:
        if type(v) is str and own(v):
            return v.rstrip("0").rstrip(".") if "." in v else v
        return _decimal_text(parse_decimal(v, precision, scale))

    return canon


def _source_float(v: Any) -> str:
    if isinstance(v, float):
        return float_text(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return float_text(float(v))
    return str(v)  # sqlite_source's SQL checks report it; counted once


def _source_fn(col: ColumnSpec, strip_nul: bool) -> Canon:
    kind = col.kind
    if kind == "decimal":
        return _decimal_fn(col.precision, col.scale)
    if kind == "uuid":
        return _uuid_text
    if kind == "datetime":
        return _source_datetime
    if kind == "json":
        return lambda v: jsonb_text(parse_json(v))
    if kind == "bytes":
        return lambda v: v.hex() if isinstance(v, bytes) else str(v)
    if kind == "float":
        return _source_float
    if kind == "text" and strip_nul:
        return lambda v: str(v).replace("\x00", "")
    return str  # int, bool (0/1), text: as SQLite returns them


def _target_fn(col: ColumnSpec) -> Canon:
    kind = col.kind
    if kind == "uuid":
        return lambda v: v.hex
    if kind == "bool":
        return lambda v: "1" if v else "0"  # SQLite's 0/1
    if kind == "decimal":
        return _decimal_text
    if kind == "datetime":
        return _datetime_text
    if kind == "float":
        return float_text
    if kind == "json":  # read as text: psycopg would load a JSON null as None, like SQL NULL
        return lambda v: jsonb_text(parse_json(v))
    if kind == "bytes":
        return lambda v: bytes(v).hex()
    return str


PYTHON_KINDS = frozenset({"float", "json", "decimal", "datetime"})
"""Kinds whose source value is made canonical in Python: SQLite cannot print a float or JSON
so, and Python tests an amount's or a timestamp's form at a fraction of SQLite's cost."""
ESCAPED_KINDS = frozenset({"text", "json", "bytes"})
"""Kinds whose text may hold a character ``COPY`` escapes; the others never do."""
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def row_order(spec: TableSpec) -> list[int]:
    """Column positions in the order of a row's canonical form: SQL kinds, then Python kinds."""
    cols = spec.columns
    return [i for i, c in enumerate(cols) if c.kind not in PYTHON_KINDS] + [
        i for i, c in enumerate(cols) if c.kind in PYTHON_KINDS
    ]


def copy_text(text: str) -> str:
    """Text as a field of ``COPY``'s text format (backslash, newline, return and tab escaped)."""
    return text.translate(_COPY_ESCAPES)


def encode(kind: str, text: str | None) -> str:
    """One canonical value as it appears in a row's form (a field of ``COPY`` text)."""
    if text is None:
        return "\\N"
    if kind == "bytes":
        return "\\\\x" + text
    return copy_text(text) if kind in ESCAPED_KINDS else text


def _canonicalizer(spec: TableSpec, fns: list[Canon]) -> Callable[[Sequence[Any]], str]:
    order = [(i, fns[i], spec.columns[i].kind) for i in row_order(spec)]

    def canon(row: Sequence[Any]) -> str:
        out = []
        for i, f, kind in order:
            v = row[i]
            out.append(encode(kind, None if v is None else f(v)))
        return "\t".join(out)

    return canon


def source_canonicalizer(
    spec: TableSpec, *, strip_nul: bool = False
) -> Callable[[Sequence[Any]], str]:
    """Raw SQLite row -> its canonical form; raises ``ValueError`` on a decimal, timestamp or
    JSON value no rule accepts (the other kinds are checked in SQL by ``sqlite_source``)."""
    return _canonicalizer(spec, [_source_fn(c, strip_nul) for c in spec.columns])


def target_canonicalizer(spec: TableSpec) -> Callable[[Sequence[Any]], str]:
    """PostgreSQL row (psycopg's Python values, JSON read as text) -> its canonical form."""
    return _canonicalizer(spec, [_target_fn(c) for c in spec.columns])


def row_hash(form: str) -> int:
    """The 128-bit number a row's canonical form adds to its table's checksum."""
    return int.from_bytes(md5(form.encode(), usedforsecurity=False).digest(), "big")


@dataclass
class TableSum:
    """Row count and order-independent checksum of one table."""

    rows: int = 0
    total: int = 0

    def add(self, form: str) -> None:
        """Count one row given in canonical form."""
        self.total = (self.total + row_hash(form)) % _MOD
        self.rows += 1

    def merge(self, rows: int, total: int) -> None:
        """Count ``rows`` rows whose hashes add up to ``total``."""
        self.rows += rows
        self.total = (self.total + total) % _MOD

    @property
    def checksum(self) -> str:
        """The checksum as 32 hex digits."""
        return f"{self.total:032x}"


def checksum_rows(rows: Iterable[Sequence[Any]], canon: Callable[[Sequence[Any]], str]) -> TableSum:
    """Count and checksum ``rows`` after ``canon``."""
    total = TableSum()
    for row in rows:
        total.add(canon(row))
    return total
