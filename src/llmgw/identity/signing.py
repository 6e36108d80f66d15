"""JWT signing keys: Ed25519 (EdDSA), the private half encrypted at rest, rotation with overlap.

A key signs from its creation until ``retires_at`` (set when a newer key is made by
``rotate``), and verifies until ``expires_at``: long enough for every token it signed to expire
(access tokens, and personal access tokens alive at the rotation). The private key is stored
AES-256-GCM encrypted (the ``kid`` is the associated data) under a key derived with HKDF from
``identity.signing_secret`` or, when that is unset, from a random secret in
``$LLMGW_HOME/identity.key`` (0600). Private keys never leave this module in clear.

Verification keys are looked up by ``kid`` in an in-memory map, never in the database with the
raw ``kid``; an unknown ``kid`` reloads the map at most once per ``reload_cooldown`` seconds.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import Engine

from llmgw.auth._db import db_errors
from llmgw.errors import ConfigError
from llmgw.storage.tables import OAuthSigningKey, OAuthToken, utcnow

__all__ = ["ALG", "KeyRecord", "SigningKeys", "load_secret"]

ALG = "EdDSA"
_T: sa.Table = OAuthSigningKey.__table__  # type: ignore[attr-defined]
_TOKENS: sa.Table = OAuthToken.__table__  # type: ignore[attr-defined]
_FORMAT = "aesgcm1:"
_MIN_SECRET = 32


def load_secret(configured: str | None, home: Path) -> bytes:
    """The secret that encrypts signing keys: ``configured`` (>= 32 characters) or the contents
    of ``home/identity.key``, created with 32 random bytes (mode 0600) on first use."""
    if configured is not None:
        if len(configured) < _MIN_SECRET:
            raise ConfigError(
                "identity.signing_secret is too short",
                hint="use at least 32 random characters, e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`",
            )
        return configured.encode("utf-8")
    path = home / "identity.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    return raw


def _aead(secret: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"llmgw signing keys v1")
    return AESGCM(hkdf.derive(secret))


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One signing key as listed (public facts only)."""

    kid: str
    alg: str
    created_at: datetime
    retires_at: datetime | None
    expires_at: datetime | None

    def state(self, now: datetime) -> str:
        """``signing``, ``verifying`` (retired, inside its overlap) or ``expired``."""
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.retires_at is not None and now >= self.retires_at:
            return "verifying"
        return "signing"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class SigningKeys:
    """The signing keys of one database; thread-safe."""

    def __init__(
        self,
        engine: Engine,
        secret: bytes,
        *,
        clock: Callable[[], datetime] = utcnow,
        reload_cooldown: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self._aead = _aead(secret)
        self._clock = clock
        self._cooldown = reload_cooldown
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._public: dict[str, Ed25519PublicKey] = {}
        self._signer: tuple[str, Ed25519PrivateKey, datetime | None] | None = None
        self._loaded_at = -float("inf")
        self.reloads = 0
        """How many times the key map was read from the database (tests read it: JWT-4)."""

    # -- encryption -------------------------------------------------------------------------
    def _seal(self, kid: str, key: Ed25519PrivateKey) -> str:
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        nonce = secrets.token_bytes(12)
        return _FORMAT + _b64(nonce + self._aead.encrypt(nonce, raw, kid.encode()))

    def _open(self, kid: str, sealed: str) -> Ed25519PrivateKey:
        if not sealed.startswith(_FORMAT):
            raise ConfigError(f"signing key {kid} is in an unknown format")
        blob = base64.urlsafe_b64decode(sealed[len(_FORMAT) :] + "==")
        try:
            raw = self._aead.decrypt(blob[:12], blob[12:], kid.encode())
        except Exception:  # noqa: BLE001 - InvalidTag: the wrong secret
            raise ConfigError(
                f"cannot decrypt signing key {kid}: identity.signing_secret (or "
                "$LLMGW_HOME/identity.key) differs from the one it was made with",
                hint="give every instance the same LLMGW_IDENTITY__SIGNING_SECRET",
            ) from None
        return Ed25519PrivateKey.from_private_bytes(raw)

    # -- keys -------------------------------------------------------------------------------
    def _create(self, conn: sa.Connection, now: datetime) -> str:
        key = Ed25519PrivateKey.generate()
        kid = now.strftime("%Y%m%d") + "-" + secrets.token_hex(4)
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(public), "kid": kid}
        jwk.update({"alg": ALG, "use": "sig"})
        conn.execute(
            sa.insert(_T).values(
                kid=kid,
                alg=ALG,
                private_key=self._seal(kid, key),
                public_jwk=jwk,
                created_at=now,
                retires_at=None,
                expires_at=None,
            )
        )
        return kid

    def _rows(self, conn: sa.Connection) -> list[Any]:
        # Newest first; among keys made in the same instant, the unretired one first.
        return list(
            conn.execute(
                sa.select(_T).order_by(
                    _T.c.created_at.desc(), _T.c.retires_at.is_(None).desc(), _T.c.kid
                )
            )
        )

    def _load(self, now: datetime) -> None:
        with db_errors(self.engine, "loading signing keys"), self.engine.begin() as conn:
            rows = self._rows(conn)
            if not any(r.retires_at is None or r.retires_at > now for r in rows):
                self._create(conn, now)
                rows = self._rows(conn)
        public: dict[str, Ed25519PublicKey] = {}
        signer = None
        for r in rows:
            if r.expires_at is not None and now >= r.expires_at:
                continue
            x = base64.urlsafe_b64decode(r.public_jwk["x"] + "==")
            public[r.kid] = Ed25519PublicKey.from_public_bytes(x)
            if signer is None and (r.retires_at is None or r.retires_at > now):
                signer = (r.kid, self._open(r.kid, r.private_key), r.retires_at)
        self._public, self._signer = public, signer
        self._loaded_at = self._monotonic()
        self.reloads += 1

    def signer(self) -> tuple[str, Ed25519PrivateKey]:
        """The ``(kid, key)`` new tokens are signed with (a key is made on first use)."""
        with self._lock:
            now = self._clock()
            s = self._signer
            if s is None or (s[2] is not None and now >= s[2]):
                self._load(now)
                s = self._signer
            assert s is not None  # noqa: S101 - _load makes one
            return s[0], s[1]

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        """The verification key named ``kid``, or ``None``.

        An unknown ``kid`` reloads the keys from the database at most once per cooldown
        (another instance may have rotated), so a stream of made-up kids costs nothing more.
        """
        key = self._public.get(kid)
        if key is not None:
            return key
        with self._lock:
            if self._monotonic() - self._loaded_at >= self._cooldown:
                self._load(self._clock())
            return self._public.get(kid)

    def refresh(self) -> None:
        """Read the keys again now (after a rotation by this process)."""
        with self._lock:
            self._load(self._clock())

    def rotate(self, overlap: timedelta) -> KeyRecord:
        """Make a new signing key; older keys stop signing now and verify until ``overlap`` has
        passed, or longer while an unrevoked personal access token issued before now lives."""
        now = self._clock()
        with db_errors(self.engine, "rotating signing keys"), self.engine.begin() as conn:
            longest = conn.execute(
                sa.select(sa.func.max(_TOKENS.c.expires_at)).where(
                    _TOKENS.c.revoked_at.is_(None),
                    _TOKENS.c.expires_at > now,
                    _TOKENS.c.kind == "pat",
                )
            ).scalar()
            until = now + overlap
            if longest is not None and longest > until:
                until = longest
            conn.execute(
                sa.update(_T)
                .where(sa.or_(_T.c.retires_at.is_(None), _T.c.retires_at > now))
                .values(retires_at=now)
            )
            conn.execute(
                sa.update(_T)
                .where(sa.or_(_T.c.expires_at.is_(None), _T.c.expires_at > until))
                .values(expires_at=until)
            )
            kid = self._create(conn, now)
        self.refresh()
        return next(k for k in self.list() if k.kid == kid)

    def list(self) -> list[KeyRecord]:
        """Every key, newest first."""
        with db_errors(self.engine, "listing signing keys"), self.engine.connect() as conn:
            return [
                KeyRecord(r.kid, r.alg, r.created_at, r.retires_at, r.expires_at)
                for r in self._rows(conn)
            ]

    def jwks(self) -> dict[str, Any]:
        """The JWK Set of the keys that still verify (RFC 7517), for ``/.well-known/jwks.json``."""
        now = self._clock()
        with db_errors(self.engine, "reading signing keys"), self.engine.connect() as conn:
            rows = self._rows(conn)
        return {
            "keys": [dict(r.public_jwk) for r in rows if r.expires_at is None or now < r.expires_at]
        }
