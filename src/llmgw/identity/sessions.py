"""Browser sessions of the web pages (``web_sessions``): the cookie holds a random id, the
table only its SHA-256 digest, plus the session's CSRF secret.

A session dies at ``expires_at`` (absolute lifetime), when revoked (logout, or from the
"sessions" page), or when its user is disabled. ``get`` answers in one query.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.auth._db import db_errors
from llmgw.storage.tables import User, WebSession, utcnow

__all__ = ["SESSION_LIFETIME", "SessionInfo", "SessionService", "session_digest"]

SESSION_LIFETIME = timedelta(hours=12)
"""How long a browser session lasts after login (absolute; log in again afterwards)."""

_S: sa.Table = WebSession.__table__  # type: ignore[attr-defined]
_U: sa.Table = User.__table__  # type: ignore[attr-defined]


def session_digest(token: str) -> str:
    """The stored form of a session cookie's value."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session with its user (no cookie value: that is never stored)."""

    id_digest: str
    user_id: uuid.UUID
    email: str
    name: str | None
    role: str
    csrf_secret: str
    created_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None

    @property
    def handle(self) -> str:
        """A short public name for the session (the first 16 hex digits of its digest)."""
        return self.id_digest[:16]


def _select() -> sa.Select[tuple[object, ...]]:
    return sa.select(
        _S.c.id_digest,
        _S.c.user_id,
        _U.c.email,
        _U.c.name,
        _U.c.role,
        _S.c.csrf_secret,
        _S.c.created_at,
        _S.c.expires_at,
        _S.c.ip,
        _S.c.user_agent,
    ).join(_U, _U.c.id == _S.c.user_id)


def _info(row: sa.Row[tuple[object, ...]]) -> SessionInfo:
    return SessionInfo(**row._asdict())


class SessionService:
    """Create, look up, list and revoke browser sessions."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utcnow,
        lifetime: timedelta = SESSION_LIFETIME,
    ) -> None:
        self.engine = engine
        self._clock = clock
        self.lifetime = lifetime

    def create(
        self, user_id: uuid.UUID, *, ip: str | None = None, user_agent: str | None = None
    ) -> tuple[str, SessionInfo]:
        """A new session: ``(cookie value, session)``; the value is returned this once."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with db_errors(self.engine, "starting a session"), self.engine.begin() as conn:
            conn.execute(
                sa.insert(_S).values(
                    id_digest=session_digest(token),
                    user_id=user_id,
                    csrf_secret=secrets.token_urlsafe(32),
                    created_at=now,
                    expires_at=now + self.lifetime,
                    ip=(ip or None) and ip[:64],
                    user_agent=(user_agent or None) and user_agent[:500],
                )
            )
            row = conn.execute(_select().where(_S.c.id_digest == session_digest(token))).one()
        return token, _info(row)

    def get(self, token: str) -> SessionInfo | None:
        """The live session behind a cookie value, or ``None`` (unknown, expired, revoked, or
        its user disabled)."""
        if not token or len(token) > 200:
            return None
        query = _select().where(
            _S.c.id_digest == session_digest(token),
            _S.c.revoked_at.is_(None),
            _S.c.expires_at > self._clock(),
            _U.c.disabled.is_(False),
        )
        with db_errors(self.engine, "reading a session"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _info(row) if row is not None else None

    def list(self, user_id: uuid.UUID | None = None) -> builtins.list[SessionInfo]:
        """Live sessions, newest first: one user's, or everyone's with ``None``."""
        query = _select().where(_S.c.revoked_at.is_(None), _S.c.expires_at > self._clock())
        if user_id is not None:
            query = query.where(_S.c.user_id == user_id)
        with db_errors(self.engine, "listing sessions"), self.engine.connect() as conn:
            rows = conn.execute(query.order_by(_S.c.created_at.desc()))
            return [_info(r) for r in rows]

    def revoke(self, token: str) -> None:
        """End the session behind a cookie value (logout). Idempotent."""
        self._revoke(_S.c.id_digest == session_digest(token))

    def revoke_handle(self, handle: str, user_id: uuid.UUID | None) -> bool:
        """End the session named by ``handle`` (``SessionInfo.handle``) that belongs to
        ``user_id`` (any user's with ``None``: admins); whether one was live."""
        if len(handle) != 16 or any(c not in "0123456789abcdef" for c in handle):
            return False
        cond = _S.c.id_digest.startswith(handle, autoescape=True)
        if user_id is not None:
            cond = sa.and_(cond, _S.c.user_id == user_id)
        return self._revoke(cond) > 0

    def revoke_user(self, user_id: uuid.UUID) -> int:
        """End every session of a user (password change); how many were live."""
        return self._revoke(_S.c.user_id == user_id)

    def _revoke(self, cond: sa.ColumnElement[bool]) -> int:
        with db_errors(self.engine, "ending a session"), self.engine.begin() as conn:
            result = conn.execute(
                sa.update(_S)
                .where(cond, _S.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            )
            return int(result.rowcount or 0)
