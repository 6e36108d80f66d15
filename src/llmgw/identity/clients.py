"""OAuth clients: registered by an admin, ``public`` (the CLI, native apps) or ``confidential``.

Only a confidential client has a secret; it is shown once and only its digest is stored. The
built-in public client ``llmgw-cli`` (created by migration 0005) is what ``llmgw login`` uses.
"""

from __future__ import annotations

import builtins
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.auth._db import db_errors
from llmgw.errors import NotFound, UsageError
from llmgw.identity._secrets import digest, new_secret
from llmgw.identity.errors import InvalidClient
from llmgw.identity.scopes import SCOPES
from llmgw.storage.tables import OAuthClient, utcnow

__all__ = [
    "CLI_CLIENT_ID",
    "DEVICE_GRANT",
    "GRANT_TYPES",
    "ClientInfo",
    "ClientKind",
    "ClientService",
    "redirect_uri_allowed",
]

CLI_CLIENT_ID = "llmgw-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES: tuple[str, ...] = (
    "authorization_code",
    "refresh_token",
    DEVICE_GRANT,
    "client_credentials",
)
ClientKind = Literal["public", "confidential"]
_KINDS: tuple[str, ...] = get_args(ClientKind)
_SECRET_PREFIX = "llmgw_cs_"  # noqa: S105 - a public type marker, not a secret
_DUMMY = "0" * 64
_NAME_MAX = 200
_URI_MAX = 2000
_T: sa.Table = OAuthClient.__table__  # type: ignore[attr-defined]
# A loopback redirect with a port: the only URIs compared without their port (RFC 8252 §7.3).
_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\]):([0-9]{1,5})(/[^#]*)?")


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """One registered client; never its secret or the secret's digest."""

    client_id: str
    name: str
    kind: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def is_public(self) -> bool:
        """A public client cannot keep a secret (RFC 8252 §8.1): PKCE is its only proof."""
        return self.kind == "public"

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


def _info(row: sa.Row[Any]) -> ClientInfo:
    m = row._mapping
    return ClientInfo(
        client_id=m["client_id"],
        name=m["name"],
        kind=m["kind"],
        redirect_uris=tuple(m["redirect_uris"] or ()),
        grant_types=tuple(m["grant_types"] or ()),
        scopes=tuple(m["scopes"] or ()),
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
    )


def redirect_uri_allowed(client: ClientInfo, uri: str) -> bool:
    """Whether ``uri`` is one of the client's registered redirect URIs.

    Exact string match (RFC 9700 §2.1), with one exception: a loopback URI
    (``http://127.0.0.1`` or ``http://[::1]``) registered without a port matches the same URI
    with any port (RFC 8252 §7.3). ``localhost`` never matches an IP literal (§8.3).
    """
    if not uri or len(uri) > _URI_MAX or "#" in uri:
        return False
    if uri in client.redirect_uris:
        return True
    m = _LOOPBACK.fullmatch(uri)
    if m is None or not (1 <= int(m.group(2)) <= 65535):
        return False
    portless = f"http://{m.group(1)}{m.group(3) or ''}"
    return portless in client.redirect_uris


def check_redirect_uri(uri: str) -> str:
    """A redirect URI fit to register, else ``UsageError`` (RFC 9700 §2.6, RFC 6749 §3.1.2)."""
    bad = UsageError(
        f"invalid redirect URI {uri[:100]!r}",
        hint="use an absolute https:// URI without a fragment, or http://127.0.0.1/PATH or "
        "http://[::1]/PATH for a native app (any port is then accepted)",
        param="redirect_uris",
    )
    if not uri or len(uri) > _URI_MAX or "#" in uri or any(c.isspace() for c in uri):
        raise bad
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise bad from None
    if not parts.hostname or "@" in parts.netloc:
        raise bad
    if parts.scheme == "https":
        return uri
    if parts.scheme == "http" and parts.netloc in ("127.0.0.1", "[::1]"):
        return uri  # loopback, registered without a port
    raise bad


class ClientService:
    """Register, list, find and revoke OAuth clients; authenticate confidential ones."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self._clock = clock

    def create(
        self,
        name: str,
        kind: str,
        redirect_uris: Sequence[str],
        grant_types: Sequence[str],
        scopes: Sequence[str],
    ) -> tuple[ClientInfo, str | None]:
        """Register a client; return it and its secret (confidential only, shown once)."""
        name = name.strip()
        if not name or len(name) > _NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise UsageError("invalid client name", hint="use 1 to 200 printable characters")
        if kind not in _KINDS:
            raise UsageError(f"invalid client kind {kind!r}", hint="use public or confidential")
        grants = tuple(dict.fromkeys(grant_types))
        unknown = [g for g in grants if g not in GRANT_TYPES]
        if not grants or unknown:
            raise UsageError(
                f"invalid grant type {unknown[0]!r}" if unknown else "no grant type given",
                hint=f"grant types are: {', '.join(GRANT_TYPES)}",
                param="grant_types",
            )
        if "client_credentials" in grants and kind != "confidential":
            raise UsageError(
                "client_credentials needs a confidential client",
                hint="a public client has no secret to prove who it is",
                param="grant_types",
            )
        uris = tuple(dict.fromkeys(check_redirect_uri(u) for u in redirect_uris))
        if "authorization_code" in grants and not uris:
            raise UsageError(
                "authorization_code needs at least one redirect URI", param="redirect_uris"
            )
        allowed = tuple(dict.fromkeys(scopes))
        bad = [s for s in allowed if s not in SCOPES]
        if not allowed or bad:
            raise UsageError(
                f"invalid scope {bad[0]!r}" if bad else "no scope given",
                hint=f"scopes are: {' '.join(SCOPES)}",
                param="scopes",
            )
        secret = new_secret(_SECRET_PREFIX) if kind == "confidential" else None
        client_id = "c_" + new_secret(nbytes=12).replace("-", "x").replace("_", "y")
        with db_errors(self.engine, "registering a client"), self.engine.begin() as conn:
            conn.execute(
                sa.insert(_T).values(
                    client_id=client_id,
                    name=name,
                    kind=kind,
                    secret_digest=digest(secret) if secret else None,
                    redirect_uris=list(uris),
                    grant_types=list(grants),
                    scopes=list(allowed),
                    created_at=self._clock(),
                    revoked_at=None,
                )
            )
            row = conn.execute(sa.select(_T).where(_T.c.client_id == client_id)).one()
        return _info(row), secret

    def get(self, client_id: str) -> ClientInfo:
        """The client (revoked ones too); ``NotFound`` otherwise."""
        with db_errors(self.engine, "looking up a client"), self.engine.connect() as conn:
            row = conn.execute(sa.select(_T).where(_T.c.client_id == client_id[:64])).first()
        if row is None:
            raise NotFound(
                f"no OAuth client {client_id[:64]!r}",
                hint="`llmgw oauth clients list` shows registered clients",
            )
        return _info(row)

    def list(self, *, include_revoked: bool = False) -> builtins.list[ClientInfo]:
        """Clients, oldest first; revoked ones only with ``include_revoked``."""
        query = sa.select(_T).order_by(_T.c.created_at, _T.c.client_id)
        if not include_revoked:
            query = query.where(_T.c.revoked_at.is_(None))
        with db_errors(self.engine, "listing clients"), self.engine.connect() as conn:
            return [_info(r) for r in conn.execute(query)]

    def revoke(self, client_id: str) -> ClientInfo:
        """Revoke the client: it can get no new tokens. Idempotent. (Tokens already issued are
        revoked by ``TokenService.revoke_client``.)"""
        with db_errors(self.engine, "revoking a client"), self.engine.begin() as conn:
            conn.execute(
                sa.update(_T)
                .where(_T.c.client_id == client_id[:64], _T.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            )
        return self.get(client_id)

    def authenticate(self, client_id: str | None, secret: str | None) -> ClientInfo:
        """The active client named ``client_id``, with its secret checked if it is confidential.

        ``InvalidClient`` (401) for an unknown or revoked client, a missing or wrong secret, or a
        secret sent by a public client. Constant time in the secret.
        """
        if not client_id or len(client_id) > 64:
            raise InvalidClient("client authentication failed")
        with db_errors(self.engine, "authenticating a client"), self.engine.connect() as conn:
            row = conn.execute(sa.select(_T).where(_T.c.client_id == client_id)).first()
        stored = (row._mapping["secret_digest"] if row is not None else None) or _DUMMY
        given = digest(secret) if secret else "1" * 64
        match = hmac.compare_digest(stored.encode(), given.encode())
        if row is None or row._mapping["revoked_at"] is not None:
            raise InvalidClient("client authentication failed")
        info = _info(row)
        if info.is_public:
            if secret:
                raise InvalidClient("a public client has no secret")
            return info
        if not match:
            raise InvalidClient("client authentication failed")
        return info
