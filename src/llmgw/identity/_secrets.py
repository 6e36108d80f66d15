"""Random secrets and the digests stored for them."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["digest", "new_secret"]


def new_secret(prefix: str = "", nbytes: int = 32) -> str:
    """``prefix`` + ``nbytes`` random bytes from the OS CSPRNG, url-safe base64."""
    return prefix + secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    """The SHA-256 hex digest stored for ``secret`` (never the secret itself)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
