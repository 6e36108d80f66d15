"""The tokens page's data through the token service: live access tokens and personal access
tokens, and revoking one by ``jti`` for its owner (or an admin)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from llmgw.admin.records import iso
from llmgw.errors import NotFound

if TYPE_CHECKING:
    from llmgw.identity.tokens import TokenService
    from llmgw.server.web.core import Web

__all__ = ["live_tokens", "revoke_token"]


def _service(web: Web) -> TokenService:
    """The gateway's token service (a revocation is announced through the gateway: this
    instance's cache at once, the others through Redis)."""
    return web.gateway.tokens


def live_tokens(web: Web, user_id: uuid.UUID | None) -> list[dict[str, Any]]:
    """Unrevoked, unexpired tokens, newest first: one user's, or everyone's with ``None``."""
    return [
        {
            "jti": t.jti,
            "kind": t.kind,
            "name": t.name,
            "client_id": t.client_id,
            "owner": t.user_email,
            "scope": t.scope,
            "issued_at": iso(t.issued_at),
            "expires_at": iso(t.expires_at),
        }
        for t in _service(web).list_for(user_id)[:500]
    ]


def revoke_token(web: Web, jti: str, owner: uuid.UUID | None) -> bool:
    """Revoke the live token ``jti`` if it is ``owner``'s (anyone's with ``None``): a personal
    access token alone, an access token with its whole grant. Whether one was revoked."""
    service = _service(web)
    if len(jti) != 32:
        return False
    try:
        record = service.get(jti)
    except NotFound:
        return False
    if record.revoked_at is not None or (owner is not None and record.user_id != owner):
        return False
    return bool(service.revoke(record.jti))
