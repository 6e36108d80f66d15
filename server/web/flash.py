"""A one-time message carried from a POST to the page it redirects to (POST-redirect-GET).

The key-create form answers 303 to ``GET /account/keys``, which shows the new key's secret once:
reloading that page, or going back, never posts the form again. The secret travels in a cookie
(``llmgw_flash``: HttpOnly, SameSite=Strict, only on ``/account/keys``, two minutes) sealed with
AES-256-GCM under a key derived (HKDF-SHA256) from the identity secret every instance shares
(``identity.signing_secret`` or ``$LLMGW_HOME/identity.key``), bound to the browser session
that made the key: another session, another instance's secret or a changed byte opens nothing.
The page that shows it deletes the cookie.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["FLASH_COOKIE", "FLASH_SECONDS", "Flash"]

FLASH_COOKIE = "llmgw_flash"
FLASH_SECONDS = 120


class Flash:
    """Seal and open one-time values bound to a session (see the module docstring)."""

    def __init__(self, secret: bytes) -> None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"llmgw web flash v1")
        self._aead = AESGCM(hkdf.derive(secret))

    def seal(self, value: dict[str, Any], bound: str, *, now: float | None = None) -> str:
        """``value`` as a cookie-safe string that only ``open(..., bound)`` reads back."""
        nonce = os.urandom(12)
        plain = orjson.dumps({"v": value, "t": time.time() if now is None else now})
        sealed = self._aead.encrypt(nonce, plain, bound.encode("utf-8"))
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")

    def open(self, text: str, bound: str, *, now: float | None = None) -> dict[str, Any] | None:
        """The value, or ``None`` when it is not ours, not this session's, or too old."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            plain = self._aead.decrypt(raw[:12], raw[12:], bound.encode("utf-8"))
            data = orjson.loads(plain)
        except (ValueError, InvalidTag, orjson.JSONDecodeError):
            return None
        age = (time.time() if now is None else now) - float(data["t"])
        if not 0 <= age <= FLASH_SECONDS or not isinstance(data.get("v"), dict):
            return None
        return dict(data["v"])
