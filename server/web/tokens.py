"""The tokens page's data: live access tokens and personal access tokens (``oauth_tokens``),
and revoking one by ``jti`` for its owner (or an admin)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from llmgw.admin.records import iso
from llmgw.auth._db import db_errors
from llmgw.storage.tables import OAuthRefreshToken, OAuthToken, User, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from llmgw.server.web.core import Web

__all__ = ["live_tokens", "revoke_token"]

_T: sa.Table = OAuthToken.__table__  # type: ignore[attr-defined]
_U: sa.Table = User.__table__  # type: ignore[attr-defined]
_RT: sa.Table = OAuthRefreshToken.__table__  # type: ignore[attr-defined]


def live_tokens(engine: Engine, user_id: uuid.UUID | None) -> list[dict[str, Any]]:
    """Unrevoked, unexpired tokens, newest first: one user's, or everyone's with ``None``."""
    query = (
        sa.select(_T, _U.c.email.label("owner"))
        .select_from(_T.outerjoin(_U, _U.c.id == _T.c.user_id))
        .where(_T.c.revoked_at.is_(None), _T.c.expires_at > utcnow())
        .order_by(_T.c.issued_at.desc())
        .limit(500)
    )
    if user_id is not None:
        query = query.where(_T.c.user_id == user_id)
    with db_errors(engine, "listing tokens"), engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        {
            "jti": r["jti"],
            "kind": r["kind"],
            "name": r["name"],
            "client_id": r["client_id"],
            "owner": r["owner"],
            "scope": r["scope"],
            "issued_at": iso(r["issued_at"]),
            "expires_at": iso(r["expires_at"]),
        }
        for r in rows
    ]


def revoke_token(web: Web, jti: str, owner: uuid.UUID | None) -> bool:
    """Revoke the live token ``jti`` if it is ``owner``'s (anyone's with ``None``): a personal
    access token alone, an access token with its whole grant (the refresh tokens and access
    tokens of its family). Whether one was live.

    The gateway's token service, once it is on ``Gateway``, is what should do this (it also
    announces the jtis to other instances through Redis); until then the rows' ``revoked_at``
    is the deny-list the gateway reads from the database.
    """
    now = utcnow()
    with db_errors(web.engine, "revoking a token"), web.engine.begin() as conn:
        row = conn.execute(
            sa.select(_T.c.user_id, _T.c.family_id).where(
                _T.c.jti == jti, _T.c.revoked_at.is_(None), _T.c.expires_at > now
            )
        ).first()
        if row is None or (owner is not None and row.user_id != owner):
            return False
        if row.family_id is None:
            conn.execute(sa.update(_T).where(_T.c.jti == jti).values(revoked_at=now))
            return True
        conn.execute(
            sa.update(_RT)
            .where(_RT.c.family_id == row.family_id, _RT.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        conn.execute(
            sa.update(_T)
            .where(_T.c.family_id == row.family_id, _T.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return True
