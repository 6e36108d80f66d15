"""Answers read straight from a SQLite file with the standard library's driver, for the listing
commands that scripts call in loops (``llmgw keys list``).

SQLAlchemy and the SQLModel tables cost about 0.25 s of start-up, most of a command's time. When
the database is a SQLite file whose schema is already current, these functions read it with
``sqlite3`` and build the very records ``LocalAdmin`` builds (``admin/records.py``); in any other
case (PostgreSQL, no file yet, an older schema, a URL with options, any SQLite error) they return
``None`` and the caller takes the ordinary path, which migrates, explains errors and so on.
``tests/unit/test_admin_quick.py`` pins both paths to the same output. A departure from the one way to
the database, listed in docs/architecture.md.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmgw.admin.ops import Record
from llmgw.admin.records import key_record, provider_record
from llmgw.auth.keyinfo import KeyInfo
from llmgw.storage.revisions import VERSION_TABLE, scripted_head

__all__ = ["is_current", "keys_list", "providers_status", "sqlite_file"]

_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")
_KEYS_SQL = (
    "SELECT k.id, k.name, k.prefix, k.user_id, k.expires_at, k.revoked_at, k.rpm, k.tpm,"
    " k.models, k.created_at, k.last_used_at, k.rotated_from, u.email, u.disabled, u.role"
    " FROM api_keys AS k LEFT OUTER JOIN users AS u ON k.user_id = u.id"
)


def sqlite_file(database_url: str) -> Path | None:
    """The existing file a plain ``sqlite:///`` URL names, or ``None`` for anything else."""
    for prefix in _PREFIXES:
        if database_url.startswith(prefix):
            rest = database_url[len(prefix) :]
            if not rest or rest == ":memory:" or any(c in rest for c in "?%~"):
                return None
            path = Path(rest)
            return path if path.is_file() else None
    return None


_STATUS_SQL = (
    "SELECT provider, model, status, latency_ms, error_rate, last_error, updated_at"
    " FROM provider_status{where} ORDER BY provider, model"
)
_KNOWN_SQL = " WHERE (provider IN (SELECT name FROM providers) OR provider IN ({marks}))"
"""Rows of existing providers only: stored (enabled or not) or named in the config file."""


def _connect(database_url: str) -> sqlite3.Connection | None:
    """A connection to the current-schema SQLite file the URL names, else ``None``."""
    path = sqlite_file(database_url)
    if path is None:
        return None
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        stored = [r[0] for r in conn.execute(f"SELECT version_num FROM {VERSION_TABLE}")]  # noqa: S608
    except sqlite3.Error:
        stored = []
    if stored != [scripted_head()]:
        conn.close()
        return None
    return conn


def is_current(database_url: str) -> bool:
    """Whether the URL names a SQLite file whose schema is current (so these reads apply)."""
    conn = _connect(database_url)
    if conn is None:
        return False
    conn.close()
    return True


def providers_status(
    database_url: str, configured: tuple[str, ...] | None = None
) -> list[Record] | None:
    """``LocalAdmin.providers_status``'s records, or ``None`` when this path does not apply;
    with ``configured`` (the config file's provider names) only rows of existing providers."""
    conn = _connect(database_url)
    if conn is None:
        return None
    where = ""
    if configured is not None:
        where = _KNOWN_SQL.format(marks=", ".join("?" * len(configured)))
    try:
        rows = conn.execute(_STATUS_SQL.format(where=where), configured or ()).fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    names = ("provider", "model", "status", "latency_ms", "error_rate", "last_error")
    return [
        provider_record(
            {**dict(zip(names, r[:6], strict=True)), "updated_at": _when(r[6])}, live=False
        )
        for r in rows
    ]


def keys_list(database_url: str, *, include_revoked: bool, now: datetime) -> list[Record] | None:
    """``LocalAdmin.keys_list``'s records, or ``None`` when this path does not apply."""
    path = sqlite_file(database_url)
    if path is None:
        return None
    where = "" if include_revoked else " WHERE k.revoked_at IS NULL"
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        stored = [r[0] for r in conn.execute(f"SELECT version_num FROM {VERSION_TABLE}")]  # noqa: S608
        if stored != [scripted_head()]:
            return None
        rows = conn.execute(_KEYS_SQL + where + " ORDER BY k.created_at, k.id").fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return [key_record(_info(r), now) for r in rows]


def _info(r: tuple[Any, ...]) -> KeyInfo:
    models = json.loads(r[8]) if r[8] is not None else None
    return KeyInfo(
        id=uuid.UUID(r[0]),
        name=r[1],
        prefix=r[2],
        user_id=_uuid(r[3]),
        expires_at=_when(r[4]),
        revoked_at=_when(r[5]),
        rpm=r[6],
        tpm=r[7],
        models=tuple(models) if models is not None else None,
        created_at=_when(r[9]) or datetime.min.replace(tzinfo=UTC),
        last_used_at=_when(r[10]),
        user_email=r[12],
        user_disabled=bool(r[13]),
        rotated_from=_uuid(r[11]),
        user_role=r[14],
    )


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value is not None else None


def _when(value: str | None) -> datetime | None:
    """SQLAlchemy's SQLite text (naive UTC, ``2026-12-03 12:14:50.104236``) as an aware time."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if value is not None else None
