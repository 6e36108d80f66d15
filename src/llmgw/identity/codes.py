"""Authorization codes (RFC 6749 §4.1 with PKCE S256): 60 s, single use, stored as a digest.

``issue_code`` is called by the consent step of ``/oauth/authorize``; ``redeem_code`` by the
token endpoint. Any redemption attempt, even a failed one, uses the code up. A second
redemption raises ``CodeReused`` carrying the grant (``family_id``) the first one issued, so
the token endpoint revokes those tokens (RFC 6749 §4.1.2).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.auth._db import db_errors
from llmgw.errors import InvalidRequest
from llmgw.identity._secrets import digest, new_secret
from llmgw.identity.errors import InvalidGrant
from llmgw.identity.pkce import CHALLENGE_RE, verifier_matches
from llmgw.identity.scopes import format_scope, parse_scope
from llmgw.storage.tables import OAuthCode, utcnow

__all__ = ["CODE_TTL", "CodeGrant", "CodeReused", "issue_code", "redeem_code"]

CODE_TTL = timedelta(seconds=60)
_T: sa.Table = OAuthCode.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """What a redeemed code grants: tokens for ``user_id`` with ``scope``, in grant ``family_id``."""

    client_id: str
    user_id: uuid.UUID
    scope: str
    family_id: uuid.UUID


class CodeReused(InvalidGrant):
    """A code presented again: ``invalid_grant``; revoke what the first use issued."""

    def __init__(self, family_id: uuid.UUID | None) -> None:
        super().__init__("the authorization code was already used")
        self.family_id = family_id


def issue_code(
    engine: Engine,
    client_id: str,
    user_id: uuid.UUID,
    redirect_uri: str,
    scope: str,
    code_challenge: str,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> str:
    """A new code for the user's consent (the caller validated client and redirect URI).

    ``code_challenge`` is an S256 challenge (43 base64url characters): ``InvalidRequest``
    otherwise. ``scope`` must be known scopes (``InvalidScope``). Returns the code itself.
    """
    if not isinstance(code_challenge, str) or not CHALLENGE_RE.fullmatch(code_challenge):
        raise InvalidRequest(
            "code_challenge must be an S256 challenge (43 base64url characters)",
            param="code_challenge",
        )
    scope = format_scope(parse_scope(scope))
    code = new_secret()
    with db_errors(engine, "issuing an authorization code"), engine.begin() as conn:
        conn.execute(
            sa.insert(_T).values(
                code_digest=digest(code),
                client_id=client_id,
                user_id=user_id,
                redirect_uri=redirect_uri,
                scope=scope,
                code_challenge=code_challenge,
                expires_at=clock() + CODE_TTL,
                used_at=None,
                family_id=None,
            )
        )
    return code


def redeem_code(
    engine: Engine,
    code: str,
    *,
    client_id: str,
    redirect_uri: str | None,
    code_verifier: str | None,
    clock: Callable[[], datetime] = utcnow,
) -> CodeGrant:
    """Use ``code`` up and return its grant, or raise ``InvalidGrant`` (``CodeReused`` on reuse).

    Checked (RFC 6749 §4.1.3, RFC 7636 §4.6): the code exists, is unused and unexpired, was
    issued to ``client_id`` for exactly ``redirect_uri``, and ``code_verifier`` hashes to its
    challenge. Exactly one of two concurrent redemptions can win.
    """
    if not isinstance(code, str) or not code or len(code) > 200:
        raise InvalidGrant("invalid authorization code")
    key = digest(code)
    now = clock()
    family = uuid.uuid4()
    with db_errors(engine, "redeeming an authorization code"), engine.begin() as conn:
        row: Any = conn.execute(sa.select(_T).where(_T.c.code_digest == key)).first()
        if row is None:
            raise InvalidGrant("invalid authorization code")
        if row.used_at is not None:
            raise CodeReused(row.family_id)
        ok = (
            row.expires_at > now
            and row.client_id == client_id
            and redirect_uri is not None
            and row.redirect_uri == redirect_uri
            and verifier_matches(code_verifier, row.code_challenge)
        )
        # Burn it in any case; the guard on used_at makes one of two concurrent uses lose.
        done = conn.execute(
            sa.update(_T)
            .where(_T.c.code_digest == key, _T.c.used_at.is_(None))
            .values(used_at=now, family_id=family if ok else None)
        )
    if done.rowcount != 1:
        raise CodeReused(None)
    if not ok:
        raise InvalidGrant("invalid authorization code, redirect_uri or code_verifier")
    return CodeGrant(
        client_id=row.client_id, user_id=row.user_id, scope=row.scope, family_id=family
    )
