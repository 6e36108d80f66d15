"""The canonical form of ``canonical`` written in SQL: in PostgreSQL for the target's checksum,
in SQLite for the source's (values in llmgw's own storage forms) and for the ``COPY`` text.

PostgreSQL computes a whole table's checksum in one statement (``pg_sum_sql``): no row leaves
the server. SQLite has no hash function, so ``sqlite_sum_sql`` gives each row's form except its
float and JSON values, which Python adds before hashing (``canonical.PYTHON_KINDS``); the form
is NULL when a value is not in the storage form llmgw itself writes, and that row is made
canonical in Python instead (the rules of ``canonical`` apply, and a value they refuse is
reported). ``sqlite_copy_sql`` turns each row into one line of ``COPY ... FROM STDIN`` text
(NULL when a value needs Python: a float in a decimal or JSON column, text with a NUL to strip).

tests/unit/test_canonical_sql.py proves that each SQL form equals the Python form for every kind.
"""

# SQL here is built only from column names of llmgw's own metadata, always quoted, and from
# the column specs' integers; no value is ever spliced in.
# ruff: noqa: S608

from __future__ import annotations

from llmgw.storage.canonical import LENGTH_KINDS, PYTHON_KINDS, ColumnSpec, TableSpec, row_order

__all__ = [
    "pg_key_text",
    "pg_rows_sql",
    "pg_sum_sql",
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


def _sqlite_part(col: ColumnSpec, strip_nul: bool) -> tuple[str | None, str]:
    """(condition under which the value is in llmgw's own storage form, or None when it always
    is; the value's part of the row form, NULL when Python must make the row canonical).

    What ``sqlite_source.sql_problems`` refuses (a type SQLite's column affinity did not turn
    into the column's, NULL in a NOT NULL column, a bad UUID digit, a NUL, a long text) stops
    the run anyway, so the int, bool, text and UUID forms here do not test for it again."""
    c, kind = _q(col.name), col.kind
    if kind in ("int", "bool"):
        return None, f"coalesce({c},'')||'|'"
    if kind == "decimal":
        ok, text = _sqlite_decimal(c, col)
        return (
            f"({ok}) OR {c} IS NULL",
            f"CASE WHEN {ok} THEN {text}||'|' WHEN {c} IS NULL THEN '|' END",
        )
    if kind == "uuid":
        return (
            f"length({c})=32 OR {c} IS NULL",
            f"CASE WHEN length({c})=32 THEN lower({c})||'|' WHEN {c} IS NULL THEN '|' END",
        )
    if kind == "datetime":
        ok = (
            f"length({c})=26 AND {c} GLOB '{_DT_GLOB}' "
            f"AND substr({c},1,4)!='0000' AND substr({c},6,2) BETWEEN '01' AND '12' "
            f"AND (substr({c},9,2) BETWEEN '01' AND '28' "
            f"OR date(substr({c},1,10),'+0 days')=substr({c},1,10)) "
            f"AND substr({c},12,2)<'24' AND substr({c},15,2)<'60' AND substr({c},18,2)<'60'"
        )
        return (
            f"({ok}) OR {c} IS NULL",
            f"CASE WHEN {ok} THEN {c}||'|' WHEN {c} IS NULL THEN '|' END",
        )
    if kind == "bytes":
        return (
            None,
            f"CASE WHEN {c} IS NULL THEN 'N' ELSE (2*length({c}))||':'||lower(hex({c})) END",
        )
    if strip_nul:  # a NUL to strip needs Python (SQLite's replace() cannot match char(0))
        ok = f"{c} IS NULL OR instr(CAST({c} AS BLOB), x'00')=0"
        return ok, (
            f"CASE WHEN {c} IS NULL THEN 'N' WHEN instr(CAST({c} AS BLOB), x'00')=0 "
            f"THEN length({c})||':'||{c} END"
        )
    return None, f"coalesce(length({c})||':'||{c},'N')"


def _sqlite_canon(col: ColumnSpec, strip_nul: bool) -> str:
    return _sqlite_part(col, strip_nul)[1]


def _form(spec: TableSpec, strip_nul: bool) -> str:
    parts = [_sqlite_canon(spec.columns[i], strip_nul) for i in row_order(spec)
             if spec.columns[i].kind not in PYTHON_KINDS]  # fmt: skip
    return "(" + "||".join(parts) + ")" if parts else "''"


def sqlite_check_sql(spec: TableSpec, *, strip_nul: bool, flag: str) -> tuple[str, str]:
    """The check-only pass over a rowid range (``? < rowid <= ?``), without building any text:

    - ``SELECT rowid, flag, own`` of the rows to look at closer: ``flag`` is the condition
      given (what ``sql_problems`` reports), ``own`` is 0 where a value is not in llmgw's own
      storage form (Python makes such a row canonical, which applies the rules of
      ``canonical``). SQLite evaluates a condition in ``WHERE`` about twice as fast as the
      same one as a column, and a clean range returns no row.
    - ``SELECT group_concat(...)`` of every value read as text, so that a range holding
      invalid UTF-8 fails to decode, as the row forms would."""
    conds = [ok for c in spec.columns if c.kind not in PYTHON_KINDS
             for ok in [_sqlite_part(c, strip_nul)[0]] if ok is not None]  # fmt: skip
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
    """``SELECT rowid, form, flag, <Python columns...>`` of the rows with ``? < rowid <= ?``,
    in rowid order, at most ``?`` of them; ``form`` is NULL where Python must make the row
    canonical; ``flag`` is the SQL condition given (a row to look at closer)."""
    extra = "".join(f", {_q(c.name)}" for c in python_columns(spec))
    return (
        f"SELECT rowid, {_form(spec, strip_nul)}, ({flag}){extra} FROM {_q(spec.name)} "
        f"WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
    )


# --- SQLite: COPY text lines -------------------------------------------------------------------


_SPECIAL = "'*[\\\t\n\r]*'"  # GLOB: holds a backslash, tab, newline or return


def _escaped(c: str) -> str:
    """Text as a field of COPY's text format (backslash, newline, return and tab escaped);
    text without them, nearly all, is only scanned once."""
    return (
        f"CASE WHEN {c} GLOB {_SPECIAL} THEN "
        f"replace(replace(replace(replace({c},'\\','\\\\'),char(10),'\\n'),"
        f"char(13),'\\r'),char(9),'\\t') ELSE {c} END"
    )


def _sqlite_copy(col: ColumnSpec, strip_nul: bool) -> str:
    c, kind = _q(col.name), col.kind
    t = f"typeof({c})"
    if kind in ("int", "bool"):
        field = f"CASE WHEN {t}='integer' THEN CAST({c} AS TEXT) END"
    elif kind == "float":  # 20 digits: SQLite's own 17-digit printing is not always exact
        field = f"CASE WHEN {t} IN ('real','integer') THEN printf('%!.20e',{c}) END"
    elif kind == "bytes":
        field = f"CASE WHEN {t}='blob' THEN '\\\\x'||hex({c}) END"
    elif kind in ("decimal", "json"):
        field = f"CASE {t} WHEN 'text' THEN {_escaped(c)} WHEN 'integer' THEN CAST({c} AS TEXT) END"
    elif kind == "text":
        nul = f" AND instr(CAST({c} AS BLOB), x'00')=0" if strip_nul else ""
        field = f"CASE WHEN {t}='text'{nul} THEN {_escaped(c)} END"
    else:  # uuid, datetime: forms without a character to escape (others are refused)
        field = f"CASE WHEN {t}='text' THEN {c} END"
    return f"CASE WHEN {c} IS NULL THEN '\\N' ELSE {field} END"


def sqlite_copy_sql(spec: TableSpec, *, strip_nul: bool, flag: str = "0") -> str:
    """``SELECT rowid, line, form, <Python columns...>`` of the rows with ``? < rowid <= ?`` in
    rowid order, leaving out every row for which the SQL condition ``flag`` is not false (a
    row ``sql_problems`` would report: the caller counts the rows it got): ``line`` is one row
    of COPY text (no newline), NULL where a value needs Python; ``form`` and the Python
    columns as in ``sqlite_sum_sql`` (the copy checks and sums the source in the same read).
    SQLite evaluates the rules in ``WHERE`` at about half their cost as a column."""
    line = "||char(9)||".join(_sqlite_copy(c, strip_nul) for c in spec.columns)
    extra = "".join(f", {_q(c.name)}" for c in python_columns(spec))
    return (
        f"SELECT rowid, {line}, {_form(spec, strip_nul)}{extra} FROM {_q(spec.name)} "
        f"WHERE rowid > ? AND rowid <= ? AND NOT ({flag}) ORDER BY rowid"
    )


# --- PostgreSQL: the target's checksum ---------------------------------------------------------

_PG_TEXT = {
    "int": "{c}::text",
    "bool": "{c}::int::text",
    "float": "encode(float8send({c}), 'hex')",
    "decimal": "trim_scale({c})::text",
    "uuid": "replace({c}::text, '-', '')",
    "datetime": "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
    "json": "{c}::text",
    "text": "{c}",
    "bytes": "encode({c}, 'hex')",
}


def _pg_canon(col: ColumnSpec) -> str:
    c = _q(col.name)
    text = _PG_TEXT[col.kind].format(c=c)
    if col.kind in LENGTH_KINDS:
        return f"CASE WHEN {c} IS NULL THEN 'N' ELSE length({text})::text||':'||{text} END"
    return f"coalesce({text}, '')||'|'"


def pg_sum_sql(spec: TableSpec, *, key: str | None = None) -> str:
    """``SELECT rows, s1, s2, s3, s4``: the row count and the sums of the four 32-bit parts of
    the rows' MD5s (``total = s1<<96 + s2<<64 + s3<<32 + s4``, modulo 2**128). With ``key``
    (an integer column), only the rows with ``%s < key <= %s`` (two parameters)."""
    form = "||".join(_pg_canon(spec.columns[i]) for i in row_order(spec)) or "''"
    assert "%" not in form  # the statement takes parameters
    where = f" WHERE {_q(key)} > %s AND {_q(key)} <= %s" if key else ""
    parts = ", ".join(
        f"coalesce(sum(('x'||substr(h,{1 + 8 * k},8))::bit(32)::bigint), 0)" for k in range(4)
    )
    # OFFSET 0 keeps the subquery whole: flattened, PostgreSQL would compute md5(form) once
    # for each of the four parts (measured: 3x the cost, more than its parallel scan saves)
    return (
        f"SELECT count(*), {parts} FROM (SELECT md5({form}) AS h FROM {_q(spec.name)}{where} "
        "OFFSET 0) s"
    )


def pg_key_text(col: ColumnSpec) -> str:
    """A key column's canonical text in PostgreSQL (compared with the source's in Python)."""
    return _PG_TEXT[col.kind].format(c=_q(col.name))


def pg_rows_sql(spec: TableSpec) -> str:
    """``SELECT <primary key texts...>, md5(form)``: every row's key and hash (a re-sync)."""
    form = "||".join(_pg_canon(spec.columns[i]) for i in row_order(spec)) or "''"
    keys = [pg_key_text(c) for c in spec.columns if c.name in spec.primary_key]
    return f"SELECT {', '.join(keys)}, md5({form}) FROM {_q(spec.name)}"
