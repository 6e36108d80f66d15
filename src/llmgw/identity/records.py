"""JSON-ready records of clients, tokens and signing keys (for the CLI's ``--json``, the admin
API and the pages); never a secret, a digest or a private key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from llmgw.identity.clients import ClientInfo
from llmgw.identity.signing import KeyRecord
from llmgw.identity.tokens import TokenRecord

__all__ = ["client_record", "key_record", "token_record"]


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def client_record(c: ClientInfo) -> dict[str, Any]:
    """A client as JSON."""
    return {
        "client_id": c.client_id,
        "name": c.name,
        "kind": c.kind,
        "redirect_uris": list(c.redirect_uris),
        "grant_types": list(c.grant_types),
        "scopes": list(c.scopes),
        "created_at": _iso(c.created_at),
        "revoked_at": _iso(c.revoked_at),
        "status": "active" if c.active else "revoked",
    }


def token_record(t: TokenRecord, now: datetime) -> dict[str, Any]:
    """A token as JSON (its id, owner, scope and times; never the token)."""
    return {
        "jti": t.jti,
        "kind": t.kind,
        "name": t.name,
        "user_id": str(t.user_id) if t.user_id is not None else None,
        "user": t.user_email,
        "client_id": t.client_id,
        "scope": t.scope,
        "issued_at": _iso(t.issued_at),
        "expires_at": _iso(t.expires_at),
        "revoked_at": _iso(t.revoked_at),
        "rpm": t.rpm,
        "tpm": t.tpm,
        "status": t.status(now),
    }


def key_record(k: KeyRecord, now: datetime) -> dict[str, Any]:
    """A signing key as JSON (public facts only)."""
    return {
        "kid": k.kid,
        "alg": k.alg,
        "created_at": _iso(k.created_at),
        "retires_at": _iso(k.retires_at),
        "expires_at": _iso(k.expires_at),
        "state": k.state(now),
    }
