"""A SQLite database read without changing it: read-only snapshot, other users, dirty values.

``open_snapshot`` opens the file read-only (``mode=ro``: no pragma, no write can reach it) and
starts one read transaction; in WAL mode everything read through that connection is the
database as it was at the first read, whatever a running gateway commits afterwards.

``holders`` names the other processes that have the database open. Every SQLite connection to
a WAL database holds a shared POSIX lock on byte 128 of the ``-shm`` file (the "DMS" lock of
SQLite's ``unixOpenSharedMemory``) for as long as it is open; ``F_GETLK`` asks the kernel who
holds it without taking it. Locks held by the calling process itself are not reported.
"""

# SQL here is built only from table and column names of llmgw's own metadata, always quoted
# (quote()); every value goes through a parameter.
# ruff: noqa: S608

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmgw.storage.canonical import ColumnSpec, TableSpec

__all__ = ["Problem", "holders", "open_snapshot", "problem_condition", "quote", "sql_problems"]

_HEX = "0123456789abcdef"
_DMS_BYTE = 128  # WALINDEX_LOCK_OFFSET (120) + SQLITE_SHM_NLOCK (8)
_FLOCK = "hhqqi"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier (both databases use double quotes)."""
    return '"' + name.replace('"', '""') + '"'


def open_snapshot(path: Path) -> sqlite3.Connection:
    """A read-only connection to ``path`` inside one read transaction (a consistent snapshot)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts here
    return conn


def holders(path: Path) -> list[int]:
    """Process ids, other than ours, that have the SQLite database at ``path`` open."""
    shm = Path(f"{path}-shm")
    try:
        fd = os.open(shm, os.O_RDONLY)
    except OSError:
        return []  # no -shm: nobody has a WAL connection open
    try:
        found: list[int] = []
        start = _DMS_BYTE
        # F_GETLK reports one conflicting lock; asking for a write lock on the byte names one
        # reader. Other readers are not listed, which is enough to refuse.
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, start, 1, 0)
        try:
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        except OSError:
            return []
        l_type, _, _, _, pid = struct.unpack(_FLOCK, answer)
        if l_type != fcntl.F_UNLCK and pid > 0:
            found.append(pid)
        return found
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Problem:
    """A value no documented rule converts: where it is and why."""

    table: str
    rowid: int
    column: str
    problem: str
    value: str

    def as_dict(self) -> dict[str, Any]:
        """The problem as JSON-ready values."""
        return {
            "table": self.table,
            "rowid": self.rowid,
            "column": self.column,
            "problem": self.problem,
            "value": self.value,
        }


def preview(value: Any) -> str:
    """A short, printable picture of a stored value."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _checks(col: ColumnSpec, strip_nul: bool) -> list[tuple[str, str]]:
    c = quote(col.name)
    t = f"typeof({c})"
    checks: list[tuple[str, str]] = []
    if not col.nullable:
        checks.append((f"{c} IS NULL", "NULL in a NOT NULL column"))
    # decimal, datetime and JSON values are parsed in Python (canonical.py) as they are summed
    if col.kind == "int":
        checks.append((f"{t} NOT IN ('integer','null')", "not an integer"))
        if col.int_bits < 64:
            top = (1 << (col.int_bits - 1)) - 1
            checks.append(
                (f"{t}='integer' AND {c} NOT BETWEEN {-top - 1} AND {top}", "integer out of range")
            )
    elif col.kind == "bool":
        checks.append(
            (f"{t}!='null' AND NOT ({t}='integer' AND {c} IN (0,1))", "boolean that is not 0 or 1")
        )
    elif col.kind == "float":
        checks.append((f"{t} NOT IN ('integer','real','null')", "not a number"))
    elif col.kind == "uuid":
        hexed = f"lower(replace({c},'-',''))"
        # ltrim(x, digits) = '': every character is a digit (a third of GLOB '*[^0-9a-f]*''s cost)
        own = f"(length({c})=32 AND ltrim({c},'{_HEX}')='')"  # llmgw's form: checked once
        checks.append(
            (
                f"{t}!='null' AND NOT {own} AND "
                f"({t}!='text' OR length({hexed})!=32 OR ltrim({hexed},'{_HEX}')!='')",
                "not a UUID",
            )
        )
    elif col.kind == "bytes":
        checks.append((f"{t} NOT IN ('blob','null')", "text in a binary column"))
    else:
        checks.append((f"{t}='blob'", "binary data in a text column"))
        if not strip_nul:
            checks.append(
                (f"{t}='text' AND instr(CAST({c} AS BLOB), x'00') > 0", "NUL byte in text")
            )
        if col.length is not None:
            checks.append(
                (f"{t}='text' AND length({c}) > {col.length}", f"longer than {col.length}")
            )
    return checks


def problem_condition(spec: TableSpec, *, strip_nul: bool) -> str:
    """An SQL condition true for a row holding a value ``sql_problems`` would report.

    The checks' ``typeof(c)='text' AND`` and ``typeof(c)='integer' AND`` guards, there to name
    the right problem, are left out of the range, NUL and length tests (a third of the
    condition's cost in a copy's read): an integer is never out of an integer range unless it
    is an integer, holds no NUL, and a text column (SQLite's TEXT affinity, every length
    limited column of llmgw's schema) stores numbers as text; a blob is refused by its own
    test. The condition is never NULL."""
    conds = []
    for col in spec.columns:
        c = quote(col.name)
        for cond, _ in _checks(col, strip_nul):
            for guard in (f"typeof({c})='text' AND ", f"typeof({c})='integer' AND "):
                if cond.startswith(guard) and not cond.startswith(guard + "NOT"):
                    cond = cond.removeprefix(guard)
            conds.append(cond)
    # IS TRUE: without their guards the tests are NULL on a NULL value, never true
    return "(" + " OR ".join(f"({c})" for c in conds) + ") IS TRUE" if conds else "0"


def sql_problems(
    conn: sqlite3.Connection,
    spec: TableSpec,
    *,
    strip_nul: bool,
    limit: int,
    rowids: tuple[int, int] | None = None,
) -> tuple[int, list[Problem]]:
    """Values SQLite itself can tell are wrong (types, ranges, NUL, lengths): count, first ones.

    ``rowids`` = (after, upto) looks only at the rows with ``after < rowid <= upto``."""
    conds: list[str] = []
    cases: list[str] = []
    for col in spec.columns:
        checks = _checks(col, strip_nul)
        if not checks:
            cases.append("NULL")
            continue
        conds.extend(cond for cond, _ in checks)
        whens = " ".join(f"WHEN {cond} THEN '{why}'" for cond, why in checks)
        cases.append(f"CASE {whens} END")
    if not conds:
        return 0, []
    where = " OR ".join(f"({c})" for c in conds)
    args: tuple[int, ...] = ()
    if rowids is not None:
        where = f"({where}) AND rowid > ? AND rowid <= ?"
        args = rowids
    table = quote(spec.name)
    # Bad values are counted, the first listed up to `limit` (CAST: no text decoding can fail).
    bad = " + ".join(f"coalesce(sum(({case}) IS NOT NULL), 0)" for case in cases if case != "NULL")
    count = conn.execute(f"SELECT {bad} FROM {table} WHERE {where}", args).fetchone()[0]
    if not count:
        return 0, []
    values = ", ".join(f"CAST({quote(c.name)} AS BLOB)" for c in spec.columns)
    sql = f"SELECT rowid, {', '.join(cases)}, {values} FROM {table} WHERE {where} LIMIT ?"
    found: list[Problem] = []
    n = len(spec.columns)
    for row in conn.execute(sql, (*args, limit)):
        for i, col in enumerate(spec.columns):
            why = row[1 + i]
            if why is not None:
                raw = row[1 + n + i]
                shown = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
                found.append(Problem(spec.name, row[0], col.name, why, preview(shown)))
    return int(count), found
