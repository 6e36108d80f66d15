"""Who made a request: the user behind an API key or a JWT, and what the credential may do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``scopes`` are what the credential grants (an API key grants ``chat`` and, for an admin's
    key, ``admin``); ``via`` says which kind of credential it was; ``jti`` and ``expires_at``
    belong to JWTs (``None`` for keys). ``client_id`` is the OAuth client a token was issued to
    (``None`` for keys and personal access tokens). ``rpm`` and ``tpm`` are a personal access
    token's own limits (``None``: none of its own; the server applies ``identity.token_rpm``).
    """

    user_id: uuid.UUID | None
    email: str | None
    role: str | None
    scopes: frozenset[str]
    via: Literal["key", "jwt"]
    jti: str | None = None
    expires_at: datetime | None = None
    client_id: str | None = None
    rpm: int | None = None
    tpm: int | None = None

    def has(self, scope: str) -> bool:
        """Whether the credential carries ``scope``."""
        return scope in self.scopes

    @property
    def is_admin(self) -> bool:
        """An admin user holding the ``admin`` scope (both are needed)."""
        return self.role == "admin" and "admin" in self.scopes
