"""PKCE (RFC 7636), S256 only: the verifier grammar and the challenge it must hash to."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

__all__ = ["CHALLENGE_RE", "VERIFIER_RE", "challenge_of", "verifier_matches"]

# §4.1: 43..128 characters of the unreserved set.
VERIFIER_RE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
# BASE64URL(SHA256(...)) without padding: always 43 characters.
CHALLENGE_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def challenge_of(verifier: str) -> str:
    """``BASE64URL(SHA256(ASCII(verifier)))`` without padding (§4.2)."""
    raw = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def verifier_matches(verifier: object, challenge: str) -> bool:
    """Whether ``verifier`` is well-formed and hashes to ``challenge`` (constant-time compare)."""
    if not isinstance(verifier, str) or not VERIFIER_RE.fullmatch(verifier):
        return False
    return hmac.compare_digest(challenge_of(verifier).encode(), challenge.encode())
