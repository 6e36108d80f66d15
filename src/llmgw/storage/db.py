"""Database engines: SQLite (embedded default) and PostgreSQL through psycopg 3."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from llmgw.errors import ConfigError, DatabaseError
from llmgw.storage.tcp import DEAD_CONNECTION_TIMEOUT, tcp_checks

__all__ = ["check_connection", "make_engine", "mask_url", "normalize_url", "redact_url"]


def normalize_url(raw: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` and ``postgres://`` mean psycopg 3."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(
            "database URL is not a valid URL",
            hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
        ) from None
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ConfigError(
            f"unsupported database driver {url.drivername!r}",
            hint="llmgw supports sqlite:/// and postgresql:// URLs",
        )
    return url


# Query parameters that carry a credential: libpq and redis-py accept ``?password=``; some
# upstream APIs and proxies take their key in the URL (``?key=``, ``?api_key=``).
_SECRET_PARAMS = (
    "password", "sslpassword", "token", "access_token", "key", "api_key", "api-key",
    "apikey", "secret", "client_secret", "sig", "signature",
)  # fmt: skip
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:" + "|".join(re.escape(p) for p in _SECRET_PARAMS) + r")=)[^&#;]*"
)
# scheme://userinfo@host...: the userinfo runs to the LAST "@", so a password holding a raw
# "@" (common, and accepted by some drivers) is masked whole rather than split into a "host".
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^:@/?#]*):.*@([^@]*)$", re.DOTALL)


def _mask_text(text: str) -> str:
    text = _USERINFO.sub(r"\1\2:***@\3", text)
    return _SECRET_QUERY.sub(r"\1***", text)


def redact_url(url: str | URL) -> str:
    """The URL as text with any password masked (also in the query string), safe for logs.

    Works on the text, not on a parse: a password with a raw ``@`` or a malformed port would
    otherwise be split into host or port fields and shown.
    """
    if isinstance(url, URL):
        return _mask_text(url.render_as_string(hide_password=False))
    if "://" not in url:
        return "<invalid url>"
    return _mask_text(url)


def mask_url(value: str) -> str:
    """``value`` with the credentials of a URL masked; other text is returned unchanged.

    For plain URL settings (a provider's ``base_url``) shown to users: a URL without
    ``user:password@`` or a secret query parameter keeps its exact spelling.
    """
    return _mask_text(value) if "://" in value else value


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(
    raw_url: str,
    *,
    pool_size: int = 10,
    connect_timeout: float = 5.0,
    dead_connection_timeout: float = DEAD_CONNECTION_TIMEOUT,
) -> Engine:
    """An engine for ``raw_url`` with llmgw's connection settings; SQLite dirs are created.
    PostgreSQL connections get ``tcp_checks(dead_connection_timeout)``."""
    url = normalize_url(raw_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            folder = Path(url.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the data directory {folder}: {exc.strerror}",
                    hint="set LLMGW_HOME (or [database] url) to a writable place",
                ) from None
        engine = sa.create_engine(
            url, connect_args={"timeout": 10, "check_same_thread": False}, pool_pre_ping=False
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": max(1, int(connect_timeout)),
            **tcp_checks(dead_connection_timeout, url.query),
        },
    )


def check_connection(engine: Engine) -> None:
    """Open one connection; raise ``DatabaseError`` (password masked) if that fails."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (OperationalError, SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        if engine.dialect.name == "sqlite":  # a file: there is no server to be running
            where = engine.url.database or "(memory)"
            hint = (
                f"check that {where} and its directory are writable (LLMGW_HOME), "
                "or set LLMGW_DATABASE_URL"
            )
        else:
            hint = "check LLMGW_DATABASE_URL (or [database] url) and that the server is running"
        raise DatabaseError(
            f"cannot connect to the database at {redact_url(engine.url)}: {reason}", hint=hint
        ) from None
