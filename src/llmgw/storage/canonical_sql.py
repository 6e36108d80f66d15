"""The canonical form of ``canonical`` written in SQL: in PostgreSQL for the target's checksum,
in SQLite for the source's (values in llmgw's own storage forms), which is also the ``COPY`` text.

A row's canonical form is its line of ``COPY ... FROM STDIN`` text (``canonical``), so the copy
sends the very text it hashes, one text per row. PostgreSQL computes a whole table's checksum
in one statement (``pg_sum_sql``): no row leaves the server. SQLite has no hash function, so
``sqlite_sum_sql`` and ``sqlite_copy_sql`` give each row's fields except its float, JSON,
decimal and timestamp values, which Python appends before hashing (``canonical.PYTHON_KINDS``:
Python also tests an amount's or a timestamp's form, at a fraction of SQLite's cost; the
``COPY`` column list is in the form's order, ``copy_columns``); the line is NULL when a value
is not in the storage form llmgw itself writes, and that row is made canonical in Python instead (the rules
of ``canonical`` apply, and a value they refuse is reported).

tests/unit/test_canonical_sql.py proves that each SQL form equals the Python form for every kind.
"""

# SQL here is built only from column names of llmgw's own metadata, always quoted, and from
# the column specs' integers; no value is ever spliced in.
# ruff: noqa: S608

from __future__ import annotations

from llmgw.storage.canonical import PYTHON_KINDS, ColumnSpec, TableSpec, row_order

__all__ = [
    "copy_columns",
    "pg_key_text",
    "pg_rows_sql",
    "pg_sum_sql",
    "pg_sum_total",
    "python_columns",
    "sqlite_check_sql",
    "sqlite_copy_sql",
    "sqlite_sum_sql",
]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_DT_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]"


def python_columns(spec: TableSpec) -> list[ColumnSpec]:
    """The columns whose canonical value Python makes (in the row form's order)."""
    return [spec.columns[i] for i in row_order(spec) if spec.columns[i].kind in PYTHON_KINDS]


# --- SQLite: the source's canonical form -------------------------------------------------------


def _sqlite_decimal(c: str, col: ColumnSpec) -> tuple[str, str]:
    """(condition for llmgw's own text form, its canonical text) of a decimal column."""
    conds = [
        f"typeof({c})='text'",
        f"{c} GLOB '[0-9]*'",
        f"{c} GLOB '*[0-9]'",
        f"{c} NOT GLOB '*[^0-9.]*'",
        f"{c} NOT GLOB '*.*.*'",
        f"{c} NOT GLOB '0[0-9]*'",
    ]
    intlen = f"(CASE instr({c},'.') WHEN 0 THEN length({c}) ELSE instr({c},'.')-1 END)"
    if col.precision is not None:
        conds.append(f"{intlen} <= {col.precision - (col.scale or 0)}")
    trimmed = f"(CASE instr({c},'.') WHEN 0 THEN {c} ELSE rtrim(rtrim({c},'0'),'.') END)"
    if col.scale is not None:  # the written fraction fits, else the one without trailing zeros
        # (in WHEN, SQLite tests the second only when the first fails: nearly never)
        conds.append(
            f"(length({c}) - {intlen} - 1 <= {col.scale} "
            f"OR length({trimmed}) - {intlen} - 1 <= {col.scale})"
        )
    return " AND ".join(conds), trimmed


def _own_condition(col: ColumnSpec, strip_nul: bool) -> str | None:
    """The condition under which the value is in llmgw's own storage form (the SQL form
    applies), or None when it always is.

    What ``sqlite_source.sql_problems`` refuses (a type SQLite's column affinity did not turn
    into the column's, NULL in a NOT NULL column, a bad UUID digit, a NUL, a long text) stops
    the run anyway, so the int, bool, text and UUID forms here do not test for it again."""
    c, kind = _q(col.name), col.kind
    if kind == "decimal":
        return f"({_sqlite_decimal(c, col)[0]}) OR {c} IS NULL"
    if kind == "uuid":
        return f"length({c})=32 OR {c} IS NULL"
    if kind == "datetime":
        return (
            f"(length({c})=26 AND {c} GLOB '{_DT_GLOB}' "
            f"AND substr({c},1,4)!='0000' AND substr({c},6,2) BETWEEN '01' AND '12' "
            f"AND (substr({c},9,2) BETWEEN '01' AND '28' "
            f"OR date(substr({c},1,10),'+0 days')=substr({c},1,10)) "
            f"AND substr({c},12,2)<'24' AND substr({c},15,2)<'60' AND substr({c},18,2)<'60')"
            f" OR {c} IS NULL"
        )
    if kind == "text" and strip_nul:  # a NUL to strip needs Python (SQLite's replace()
        # cannot match char(0))
        return f"{c} IS NULL OR instr(CAST({c} AS BLOB), x'00')=0"
    return None


_SPECIAL = "'*[\\\t\n\r]*'"  # GLOB: holds a backslash, tab, newline or return


def _escaped(c: str) -> str:
    """Text as a field of COPY's text format (backslash, newline, return and tab escaped);
    text without them, nearly all, is only scanned once."""
    return (
        f"CASE WHEN {c} GLOB {_SPECIAL} THEN "
        f"replace(replace(replace(replace({c},'\\','\\\\'),char(10),'\\n'),"
        f"char(13),'\\r'),char(9),'\\t') ELSE {c} END"
    )


def _field(col: ColumnSpec) -> str:
    """A value's field of the row form (``canonical``) for a kind SQLite prints (not in
    ``PYTHON_KINDS``), given that ``problem_condition`` does not flag the row (an int, bool or
    bytes value is of its column's type; a text column of llmgw's schema has SQLite's TEXT
    affinity, so it holds text) and that its own-form condition holds (a UUID is 32 hex
    digits; with ``--strip-nul``, a text holds no NUL)."""
    c, kind = _q(col.name), col.kind
    if kind == "uuid":
        return f"coalesce(lower({c}),'\\N')"
    if kind == "bytes":
        return f"iif({c} IS NULL,'\\N','\\\\x'||lower(hex({c})))"
    if kind == "text":
        return f"coalesce({_escaped(c)},'\\N')"
    return f"coalesce({c},'\\N')"  # int, bool (0/1)


_MAX_ARGS = 90  # and the format: SQLITE_MAX_FUNCTION_ARG is 100 by default


def _printf(args: list[str]) -> str:
    """One ``printf`` call joining the texts with a tab: SQLite builds the line in one buffer,
    where a chain of ``||`` makes a new string per operator (a third of the cost for usage).
    ``%s`` stops at a NUL, so the rows must not hold one: ``problem_condition`` refuses them,
    and with ``--strip-nul`` the own-form condition sends them to Python."""
    if not args:
        return "''"
    if len(args) > _MAX_ARGS:  # in parts
        return f"{_printf(args[:_MAX_ARGS])}||char(9)||{_printf(args[_MAX_ARGS:])}"
    return f"printf('{chr(9).join(['%s'] * len(args))}', {', '.join(args)})"


def _line(spec: TableSpec, strip_nul: bool) -> str:
    """The row form's fields of the SQL kinds (the Python kinds follow), NULL where a value is
    not in llmgw's own storage form (Python makes such a row canonical)."""
    sql_cols = [
        spec.columns[i] for i in row_order(spec) if spec.columns[i].kind not in PYTHON_KINDS
    ]
    text = _printf([_field(c) for c in sql_cols])
    conds = [ok for c in sql_cols for ok in [_own_condition(c, strip_nul)] if ok is not None]
    return f"CASE WHEN ({') AND ('.join(conds)}) THEN {text} END" if conds else text


def sqlite_check_sql(spec: TableSpec, *, strip_nul: bool, flag: str) -> tuple[str, str]:
    """The check-only pass over a rowid range (``? < rowid <= ?``), without building any text:

    - ``SELECT rowid, flag, own`` of the rows to look at closer: ``flag`` is the condition
      given (what ``sql_problems`` reports), ``own`` is 0 where a value is not in llmgw's own
      storage form (Python makes such a row canonical, which applies the rules of
      ``canonical``). SQLite evaluates a condition in ``WHERE`` about twice as fast as the
      same one as a column, and a clean range returns no row.
    - ``SELECT group_concat(...)`` of every value read as text, so that a range holding
      invalid UTF-8 fails to decode, as the row forms would."""
    conds = [ok for c in spec.columns for ok in [_own_condition(c, strip_nul)] if ok is not None]
    own = " AND ".join(f"coalesce({ok}, 0)" for ok in conds) if conds else "1"
    name = _q(spec.name)
    where = "rowid > ? AND rowid <= ?"
    look = (
        f"SELECT rowid, ({flag}), ({own}) FROM {name} "
        f"WHERE {where} AND (({flag}) OR NOT ({own})) ORDER BY rowid"
    )
    texts = [
        f"coalesce({_q(c.name)},'')"
        for c in spec.columns
        if c.kind not in ("int", "bool", "float", "bytes")
    ]
    probe = (
        f"SELECT group_concat({'||'.join(texts)}, '') FROM {name} WHERE {where}"
        if texts
        else "SELECT ?, ?"  # nothing read as text
    )
    return look, probe


def sqlite_sum_sql(spec: TableSpec, *, strip_nul: bool, flag: str = "0") -> str:
    """``SELECT rowid, line, flag, <Python columns...>`` of the rows with ``? < rowid <= ?``,
    in rowid order, at most ``?`` of them; ``line`` is the row form's fields of the SQL kinds
    (``_line``: Python appends a tab and the field of each Python column), NULL where Python
    must make the row canonical; ``flag`` is the SQL condition given (a row to look at
    closer)."""
    extra = "".join(f", {_q(c.name)}" for c in python_columns(spec))
    return (
        f"SELECT rowid, {_line(spec, strip_nul)}, ({flag}){extra} FROM {_q(spec.name)} "
        f"WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
    )


def copy_columns(spec: TableSpec) -> list[str]:
    """The columns in the row form's order: ``COPY table (these) FROM STDIN`` reads the form."""
    return [spec.columns[i].name for i in row_order(spec)]


def sqlite_copy_sql(spec: TableSpec, *, strip_nul: bool, flag: str) -> str:
    """``SELECT rowid, line, <Python columns...>`` of the rows with ``? < rowid <= ?`` in
    rowid order, leaving out every row for which the SQL condition ``flag`` is not false (it
    must be at least ``problem_condition``, which the SQL form relies on; the caller counts
    the rows it got); ``line`` and the Python columns as in ``sqlite_sum_sql``: the row form
    is the ``COPY`` line, so the copy checks and sums the source in the same read. SQLite
    evaluates the rules in ``WHERE`` at about half their cost as a column."""
    extra = "".join(f", {_q(c.name)}" for c in python_columns(spec))
    return (
        f"SELECT rowid, {_line(spec, strip_nul)}{extra} FROM {_q(spec.name)} "
        f"WHERE rowid > ? AND rowid <= ? AND NOT ({flag}) ORDER BY rowid"
    )


# --- PostgreSQL: the target's checksum ---------------------------------------------------------

_PG_TEXT = {
    "int": "{c}::text",
    "bool": "{c}::int::text",
    "float": "{c}::text",  # keys only; the row form has _pg_float
    "decimal": "trim_scale({c})::text",
    "uuid": "encode(uuid_send({c}), 'hex')",  # the 16 bytes: a third cheaper than text and replace
    "datetime": "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
    "json": "{c}::text",
    "text": "{c}",
    "bytes": "encode({c}, 'hex')",
}


def _pg_float(c: str) -> str:
    """A float8 as Python's ``float.hex`` writes it: sign, ``0x1.`` (``0x0.`` below the normal
    range) and the 13 hex digits of the mantissa (from ``float8send``), ``p`` and the exponent
    in decimal with its sign; ``0x0.0p+0`` for zero, ``inf`` and ``nan``. The sign and the
    exponent's sign are read from the value (comparisons cost less than bytes)."""
    b = f"float8send({c})"
    mant = f"substr(encode({b}, 'hex'), 4)"
    exp = f"((get_byte({b}, 0) & 127) * 16 + (get_byte({b}, 1) >> 4) - 1023)"
    return (
        f"CASE WHEN {c} = 'NaN'::float8 THEN 'nan' "
        f"WHEN {c} = 'Infinity'::float8 THEN 'inf' WHEN {c} = '-Infinity'::float8 THEN '-inf' "
        f"WHEN {c} = 0 THEN CASE WHEN get_byte({b}, 0) >= 128 THEN '-0x0.0p+0' ELSE '0x0.0p+0' END "
        f"ELSE CASE WHEN {c} < 0 THEN '-' ELSE '' END||"
        f"CASE WHEN abs({c}) < '2.2250738585072014e-308'::float8 THEN '0x0.'||{mant}||'p-1022' "
        f"ELSE '0x1.'||{mant}||CASE WHEN abs({c}) >= 1 THEN 'p+' ELSE 'p' END||{exp}::text END END"
    )


def _pg_escaped(text: str) -> str:
    return (
        f"replace(replace(replace(replace({text}, E'\\\\', E'\\\\\\\\'), E'\\n', E'\\\\n'), "
        f"E'\\r', E'\\\\r'), E'\\t', E'\\\\t')"
    )


def _pg_field(col: ColumnSpec) -> str:
    c = _q(col.name)
    if not col.nullable and col.kind in ("int", "bool"):
        # ``concat_ws`` prints an integer with its own output function (the same text as
        # ``::text``, without a text made and copied); a boolean as 0/1
        return c if col.kind == "int" else f"{c}::int"
    if col.kind == "float":
        text = _pg_float(c)
    elif col.kind == "bytes":
        text = f"E'\\\\\\\\x'||encode({c}, 'hex')"
    else:
        text = _PG_TEXT[col.kind].format(c=c)
        if col.kind in ("text", "json"):
            text = _pg_escaped(text)
    return f"coalesce({text}, E'\\\\N')"


_PG_MAX_ARGS = 90  # and the separator: PostgreSQL's FUNC_MAX_ARGS is 100 by default


def _pg_join(fields: list[str]) -> str:
    """One ``concat_ws`` call joining the fields with a tab (none is NULL: each has its
    ``coalesce``): PostgreSQL builds the line in one buffer, where a chain of ``||`` makes a
    new text per operator."""
    if not fields:
        return "''"
    if len(fields) > _PG_MAX_ARGS:  # in parts
        return f"concat_ws(E'\\t', {_pg_join(fields[:_PG_MAX_ARGS])}, {_pg_join(fields[_PG_MAX_ARGS:])})"
    return f"concat_ws(E'\\t', {', '.join(fields)})"


def _pg_form(spec: TableSpec) -> str:
    return _pg_join([_pg_field(spec.columns[i]) for i in row_order(spec)])


def pg_sum_sql(spec: TableSpec, *, key: str | None = None) -> str:
    """``SELECT rows, high, low, carries``: the row count, the sums of the signed 64-bit halves
    of the rows' MD5s, and how many low halves are negative (``pg_sum_total`` makes the
    128-bit sum of them). With ``key`` (an integer column), only the rows with
    ``%s < key <= %s`` (two parameters)."""
    form = _pg_form(spec)
    assert "%" not in form  # the statement takes parameters
    where = f" WHERE {_q(key)} > %s AND {_q(key)} <= %s" if key else ""
    # The MD5 read once as 128 bits, split in two bigints: a third of the cost of four 32-bit
    # parts each parsed from its own hex text. OFFSET 0 keeps each subquery whole: flattened,
    # PostgreSQL would compute md5(form) once per use (measured: 3x the cost, more than its
    # parallel scan saves).
    return (
        "SELECT count(*), coalesce(sum(hi), 0), coalesce(sum(lo), 0), "
        "count(*) FILTER (WHERE lo < 0) FROM ("
        "SELECT substring(b FROM 1 FOR 64)::bigint AS hi, substring(b FROM 65 FOR 64)::bigint AS lo "
        f"FROM (SELECT ('x'||md5({form}))::bit(128) AS b FROM {_q(spec.name)}{where} OFFSET 0) s "
        "OFFSET 0) t"
    )


def pg_sum_total(high: int, low: int, carries: int) -> int:
    """The 128-bit checksum from ``pg_sum_sql``'s sums: each MD5 is ``high * 2**64 + low`` with
    both halves unsigned; PostgreSQL read them as signed, so each negative low half lacks
    ``2**64`` (carried into the high sum) and the high halves only matter modulo ``2**64``."""
    return (((high + carries) << 64) + low) % (1 << 128)


def pg_key_text(col: ColumnSpec) -> str:
    """A key column's canonical text in PostgreSQL (compared with the source's in Python)."""
    return _PG_TEXT[col.kind].format(c=_q(col.name))


def pg_rows_sql(spec: TableSpec) -> str:
    """``SELECT <primary key texts...>, md5(form)``: every row's key and hash (a re-sync)."""
    form = _pg_form(spec)
    keys = [pg_key_text(c) for c in spec.columns if c.name in spec.primary_key]
    return f"SELECT {', '.join(keys)}, md5({form}) FROM {_q(spec.name)}"
