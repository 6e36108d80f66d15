"""Tokens: RFC 9068 access JWTs, rotating refresh tokens, personal access tokens, revocation.

* **Access tokens** are JWTs signed with EdDSA (``signing.py``), header ``typ: at+jwt``, claims
  ``iss aud sub client_id scope iat exp jti`` (RFC 9068 §2.2); default lifetime 15 minutes.
  Verification pins the algorithm, requires the header type, checks ``iss`` and ``aud`` by exact
  string equality, refuses ``crit``, looks the ``kid`` up only in the loaded key map, and then
  reads the token's row (``oauth_tokens``, by ``jti``) with its user: a revoked token, a token
  of a disabled user, or a row that disagrees with the claims is refused.
* **Refresh tokens** are opaque (``llmgw_rt_`` + 256 random bits, stored as a digest), bound to
  the client and the grant's scope. Every use rotates them; presenting a used one again revokes
  the whole grant (``family_id``: its refresh tokens and its access tokens), RFC 9700 §4.14.2.
  Two concurrent refreshes with one token: exactly one wins (no grace window).
* **Personal access tokens** (``kind="pat"``) are access JWTs with a long lifetime and the
  pseudo-client ``llmgw-pat``, made by ``llmgw tokens create``.
* **Revocation** writes ``revoked_at`` on the rows (the deny-list is ``oauth_tokens`` rows with
  ``revoked_at`` set) and calls ``on_change`` with the revoked token ids, which the gateway
  announces through Redis to every instance (``llmgw.auth.broadcast``).

Every call is synchronous on an ``Engine``; the server runs them in a worker thread.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmgw.auth._db import db_errors
from llmgw.auth.changes import AuthChange
from llmgw.errors import AuthError, NotFound, UsageError
from llmgw.identity._secrets import digest, new_secret
from llmgw.identity.errors import InvalidGrant, InvalidScope
from llmgw.identity.principal import Principal
from llmgw.identity.scopes import format_scope, parse_scope
from llmgw.identity.signing import ALG, SigningKeys, load_secret
from llmgw.storage.tables import OAuthRefreshToken, OAuthToken, User, utcnow

__all__ = [
    "PAT_CLIENT",
    "GrantRevoked",
    "REFRESH_PREFIX",
    "IssuedTokens",
    "TokenRecord",
    "TokenService",
    "jti_key_id",
]

PAT_CLIENT = "llmgw-pat"
REFRESH_PREFIX = "llmgw_rt_"
TYP = "at+jwt"
LEEWAY = 30  # seconds of clock skew allowed on exp/nbf/iat
_MAX_TOKEN = 4096
_BAD = "invalid access token"
_HINT = "log in again (`llmgw login`) or create a new token; revoked and expired tokens are refused"
_RT: sa.Table = OAuthRefreshToken.__table__  # type: ignore[attr-defined]
_AT: sa.Table = OAuthToken.__table__  # type: ignore[attr-defined]
_USERS: sa.Table = User.__table__  # type: ignore[attr-defined]
_NAME_MAX = 200
_LIMIT_MAX = 2_000_000_000  # as an API key's rpm/tpm

if TYPE_CHECKING:
    from llmgw.config import Settings


class GrantRevoked(InvalidGrant):
    """A used refresh token presented again: ``invalid_grant``, and its whole grant is revoked."""

    def __init__(self, revoked: list[str]) -> None:
        super().__init__("the refresh token was already used; the grant is revoked")
        self.revoked = revoked


def jti_key_id(jti: str) -> uuid.UUID:
    """The id under which the gateway's credential cache knows a token (its ``jti`` as a UUID)."""
    return uuid.UUID(hex=jti)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A token response (RFC 6749 §5.1)."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    jti: str = ""

    def as_response(self) -> dict[str, Any]:
        """The JSON body of the token endpoint's answer."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body

    def __repr__(self) -> str:  # bearer secrets stay out of logs and tracebacks
        return f"IssuedTokens(jti={self.jti!r}, scope={self.scope!r}, expires_in={self.expires_in})"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An issued access token or personal access token, as listed (never the token itself)."""

    jti: str
    kind: str
    user_id: uuid.UUID | None
    client_id: str | None
    name: str | None
    scope: str
    family_id: uuid.UUID | None
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    user_email: str | None = None
    rpm: int | None = None
    tpm: int | None = None

    def status(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"


def _record(row: Any) -> TokenRecord:
    m = row._mapping
    return TokenRecord(
        jti=m["jti"],
        kind=m["kind"],
        user_id=m["user_id"],
        client_id=m["client_id"],
        name=m["name"],
        scope=m["scope"],
        family_id=m["family_id"],
        issued_at=m["issued_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
        user_email=m.get("user_email"),
        rpm=m.get("rpm"),
        tpm=m.get("tpm"),
    )


def _select() -> sa.Select[Any]:
    return sa.select(_AT, _USERS.c.email.label("user_email")).select_from(
        _AT.outerjoin(_USERS, _AT.c.user_id == _USERS.c.id)
    )


def _b64json(segment: str) -> Any:
    return orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


class TokenService:
    """Issue, refresh, verify, list and revoke tokens. Thread-safe."""

    def __init__(
        self,
        engine: Engine,
        keys: SigningKeys,
        *,
        issuer: str,
        audience: str = "llmgw",
        access_ttl: timedelta = timedelta(minutes=15),
        refresh_ttl: timedelta = timedelta(days=30),
        pat_max: timedelta = timedelta(days=366),
        clock: Callable[[], datetime] = utcnow,
        on_change: Callable[[AuthChange], None] | None = None,
    ) -> None:
        self.engine = engine
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.pat_max = pat_max
        self._clock = clock
        self._on_change = on_change

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engine: Engine,
        *,
        on_change: Callable[[AuthChange], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> TokenService:
        """The service as ``[identity]`` configures it (issuer, lifetimes, the keys' secret)."""
        ident = settings.identity
        configured = ident.signing_secret
        secret = load_secret(
            configured.get_secret_value() if configured is not None else None, settings.home
        )
        return cls(
            engine,
            SigningKeys(engine, secret, clock=clock),
            issuer=settings.issuer,
            audience=ident.audience,
            access_ttl=timedelta(seconds=ident.access_token_seconds),
            refresh_ttl=timedelta(days=ident.refresh_token_days),
            pat_max=timedelta(days=ident.pat_max_days),
            clock=clock,
            on_change=on_change,
        )

    # -- issuing -----------------------------------------------------------------------------
    def _sign(self, claims: dict[str, Any], signer: tuple[str, Any]) -> str:
        kid, key = signer
        return jwt.encode(claims, key, algorithm=ALG, headers={"kid": kid, "typ": TYP})

    def _access(
        self,
        conn: Connection,
        signer: tuple[str, Any],
        *,
        kind: str,
        user_id: uuid.UUID | None,
        client_id: str,
        scope: str,
        family_id: uuid.UUID | None,
        ttl: timedelta,
        name: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> tuple[str, str, datetime]:
        now = self._clock()
        jti = uuid.uuid4().hex
        exp = now + ttl
        conn.execute(
            sa.insert(_AT).values(
                jti=jti,
                kind=kind,
                user_id=user_id,
                client_id=client_id,
                name=name,
                scope=scope,
                family_id=family_id,
                issued_at=now,
                expires_at=exp,
                revoked_at=None,
                rpm=rpm,
                tpm=tpm,
            )
        )
        claims = {
            "iss": self.issuer,
            "sub": str(user_id) if user_id is not None else client_id,
            "aud": self.audience,
            "client_id": client_id,
            "scope": scope,
            "iat": int(now.timestamp()),
            "exp": int(exp.timestamp()),
            "jti": jti,
        }
        return self._sign(claims, signer), jti, exp

    def _refresh_row(
        self,
        conn: Connection,
        family_id: uuid.UUID,
        client_id: str,
        user_id: uuid.UUID | None,
        scope: str,
    ) -> str:
        token = new_secret(REFRESH_PREFIX)
        now = self._clock()
        conn.execute(
            sa.insert(_RT).values(
                id=uuid.uuid4(),
                digest=digest(token),
                family_id=family_id,
                client_id=client_id,
                user_id=user_id,
                scope=scope,
                created_at=now,
                expires_at=now + self.refresh_ttl,
                used_at=None,
                revoked_at=None,
            )
        )
        return token

    def issue(
        self,
        *,
        client_id: str,
        user_id: uuid.UUID | None,
        scope: str,
        family_id: uuid.UUID | None = None,
        refresh: bool = True,
    ) -> IssuedTokens:
        """An access token (and a refresh token of grant ``family_id`` unless ``refresh`` is
        false) for a user (or, with ``user_id=None``, for the client itself)."""
        family = family_id or uuid.uuid4()
        signer = self.keys.signer()  # before the transaction: it may write a first key
        with db_errors(self.engine, "issuing tokens"), self.engine.begin() as conn:
            token, jti, _ = self._access(
                conn,
                signer,
                kind="access",
                user_id=user_id,
                client_id=client_id,
                scope=scope,
                family_id=family,
                ttl=self.access_ttl,
            )
            rt = self._refresh_row(conn, family, client_id, user_id, scope) if refresh else None
        return IssuedTokens(token, int(self.access_ttl.total_seconds()), scope, rt, jti)

    def refresh(self, refresh_token: str, *, client_id: str, scope: str | None) -> IssuedTokens:
        """Rotate ``refresh_token`` (RFC 6749 §6, RFC 9700 §4.14.2).

        ``InvalidGrant`` for an unknown, expired, revoked or other client's token; a token used
        before revokes its whole grant first. ``scope`` may narrow the grant, never widen it
        (``InvalidScope``).
        """
        if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > 200:
            raise InvalidGrant("invalid refresh token")
        now = self._clock()
        signer = self.keys.signer()
        reused: uuid.UUID | None = None
        with db_errors(self.engine, "refreshing tokens"), self.engine.begin() as conn:
            row: Any = conn.execute(
                sa.select(_RT).where(_RT.c.digest == digest(refresh_token))
            ).first()
            if row is None or row.client_id != client_id:
                raise InvalidGrant("invalid refresh token")
            if row.revoked_at is not None or row.expires_at <= now:
                raise InvalidGrant("the refresh token was revoked or has expired")
            if row.used_at is None:
                granted = parse_scope(row.scope)
                wanted = parse_scope(scope) if scope else granted
                if not wanted or not wanted <= granted:
                    raise InvalidScope("a refresh may not widen the grant's scope", param="scope")
                won = conn.execute(
                    sa.update(_RT)
                    .where(_RT.c.id == row.id, _RT.c.used_at.is_(None))
                    .values(used_at=now)
                ).rowcount
                if won == 1:
                    new_scope = format_scope(wanted)
                    token, jti, _ = self._access(
                        conn,
                        signer,
                        kind="access",
                        user_id=row.user_id,
                        client_id=client_id,
                        scope=new_scope,
                        family_id=row.family_id,
                        ttl=self.access_ttl,
                    )
                    rt = self._refresh_row(conn, row.family_id, client_id, row.user_id, row.scope)
                    ttl = int(self.access_ttl.total_seconds())
                    return IssuedTokens(token, ttl, new_scope, rt, jti)
                # A concurrent refresh with the same token won: this one loses, the grant stays.
                raise InvalidGrant("the refresh token was already used")
            reused = row.family_id
        # Presented after it was used: RFC 9700 §4.14.2, revoke the grant.
        raise GrantRevoked(self.revoke_family(reused))

    def create_pat(
        self,
        user_id: uuid.UUID,
        name: str,
        scope: str,
        expires_in: timedelta,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> tuple[TokenRecord, str]:
        """A personal access token for ``user_id``; returns its record and the token (shown once).

        ``rpm``/``tpm`` are its own limits (``None``: the server's ``identity.token_rpm``/``tpm``).
        """
        name = name.strip()
        for value, flag in ((rpm, "rpm"), (tpm, "tpm")):
            if value is not None and not 1 <= value <= _LIMIT_MAX:
                raise UsageError(
                    f"invalid {flag} {value}",
                    hint=f"--{flag} takes a whole number from 1 to {_LIMIT_MAX}",
                    param=flag,
                )
        if not name or len(name) > _NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise UsageError("invalid token name", hint="use 1 to 200 printable characters")
        if not timedelta(0) < expires_in <= self.pat_max:
            days = int(self.pat_max.total_seconds() // 86400)
            raise UsageError(
                f"a token's lifetime must be between 1 second and {days} days",
                hint="for example --expires 365d (identity.pat_max_days sets the maximum)",
                param="expires",
            )
        scopes = parse_scope(scope)
        if not scopes:
            raise InvalidScope("give at least one scope", hint="for example --scope chat")
        signer = self.keys.signer()
        with db_errors(self.engine, "creating a token"), self.engine.begin() as conn:
            user: Any = conn.execute(
                sa.select(_USERS.c.role, _USERS.c.disabled).where(_USERS.c.id == user_id)
            ).first()
            if user is None:
                raise NotFound("no such user", hint="`llmgw users list` shows every user")
            if "admin" in scopes and user.role != "admin":
                raise InvalidScope("only an admin may hold the admin scope", param="scope")
            token, jti, _ = self._access(
                conn,
                signer,
                kind="pat",
                user_id=user_id,
                client_id=PAT_CLIENT,
                scope=format_scope(scopes),
                family_id=None,
                ttl=expires_in,
                name=name,
                rpm=rpm,
                tpm=tpm,
            )
            rec = _record(conn.execute(_select().where(_AT.c.jti == jti)).one())
        return rec, token

    # -- verifying ---------------------------------------------------------------------------
    def claims(self, token: str, *, verify_exp: bool = True) -> dict[str, Any]:
        """The claims of a well-signed access token of this issuer, or ``AuthError``.

        RFC 8725: the algorithm is pinned (``EdDSA``), ``typ`` must be ``at+jwt``, ``crit`` is
        refused, ``jku``/``x5u``/``jwk`` are never followed, the ``kid`` only selects among the
        loaded keys; ``iss`` and ``aud`` compare exactly; ``exp``, ``iat``, ``jti``, ``sub``,
        ``client_id`` and ``scope`` are required.
        """
        try:
            if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 2:
                raise ValueError("shape")
            header = _b64json(token.split(".", 1)[0])
            if not isinstance(header, dict):
                raise ValueError("header")
            kid = header.get("kid")
            if (
                header.get("alg") != ALG
                or header.get("typ") != TYP
                or "crit" in header
                or not isinstance(kid, str)
                or len(kid) > 64
            ):
                raise ValueError("header")
            key = self.keys.public_key(kid)
            if key is None:
                raise ValueError("kid")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALG],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={
                    "require": ["exp", "iat", "iss", "aud", "sub", "jti"],
                    # times are checked below against the service's clock
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
            now = self._clock().timestamp()
            times = [claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)]
            if not all(type(v) in (int, float) for v in times):
                raise ValueError("times")
            exp, iat, nbf = (float(v) for v in times)
            if (verify_exp and now >= exp + LEEWAY) or iat > now + LEEWAY or nbf > now + LEEWAY:
                raise ValueError("times")
            if (
                claims.get("iss") != self.issuer
                or claims.get("aud") != self.audience
                or not isinstance(claims.get("jti"), str)
                or len(claims["jti"]) != 32
                or not isinstance(claims.get("client_id"), str)
                or not isinstance(claims.get("scope"), str)
            ):
                raise ValueError("claims")
            jti_key_id(claims["jti"])
            parse_scope(claims["scope"])
        except Exception:  # noqa: BLE001 - any defect of a presented token is one answer: 401
            raise AuthError(_BAD, hint=_HINT) from None
        return dict(claims)

    def verify(self, token: str) -> Principal:
        """The caller behind an access token or personal access token, or ``AuthError`` (401).

        After ``claims``: the token's row must exist, be unrevoked and agree with the claims,
        and its user must exist and be enabled (``DatabaseError`` when the database is down).
        """
        claims = self.claims(token)
        with db_errors(self.engine, "checking a token"), self.engine.connect() as conn:
            row: Any = conn.execute(
                sa.select(
                    _AT.c.kind,
                    _AT.c.user_id,
                    _AT.c.client_id,
                    _AT.c.scope,
                    _AT.c.revoked_at,
                    _AT.c.expires_at,
                    _AT.c.rpm,
                    _AT.c.tpm,
                    _USERS.c.email,
                    _USERS.c.role,
                    _USERS.c.disabled,
                )
                .select_from(_AT.outerjoin(_USERS, _AT.c.user_id == _USERS.c.id))
                .where(_AT.c.jti == claims["jti"])
            ).first()
        sub = str(row.user_id) if row is not None and row.user_id is not None else None
        if (
            row is None
            or row.revoked_at is not None
            or row.client_id != claims["client_id"]
            or row.scope != claims["scope"]
            or (sub if sub is not None else row.client_id) != claims["sub"]
            or (row.user_id is not None and (row.disabled or row.email is None))
        ):
            raise AuthError(_BAD, hint=_HINT)
        return Principal(
            user_id=row.user_id,
            email=row.email,
            role=row.role,
            scopes=parse_scope(claims["scope"]),
            via="jwt",
            jti=claims["jti"],
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            client_id=None if row.kind == "pat" else row.client_id,
            rpm=row.rpm,
            tpm=row.tpm,
        )

    # -- listing -----------------------------------------------------------------------------
    def list_for(
        self, user_id: uuid.UUID | None, *, include_inactive: bool = False
    ) -> list[TokenRecord]:
        """Tokens of ``user_id`` (every user's with ``None``), newest first; expired and revoked
        ones only with ``include_inactive``."""
        query = _select().order_by(_AT.c.issued_at.desc(), _AT.c.jti)
        if user_id is not None:
            query = query.where(_AT.c.user_id == user_id)
        if not include_inactive:
            query = query.where(_AT.c.revoked_at.is_(None), _AT.c.expires_at > self._clock())
        with db_errors(self.engine, "listing tokens"), self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query.limit(10_000))]

    def get(self, jti: str) -> TokenRecord:
        """One token by ``jti`` (or a unique prefix of at least 8 characters); ``NotFound``."""
        ref = jti.strip().lower()
        if not 8 <= len(ref) <= 32 or any(c not in "0123456789abcdef" for c in ref):
            raise NotFound(f"no token {jti[:40]!r}", hint="`llmgw tokens list` shows token ids")
        with db_errors(self.engine, "looking up a token"), self.engine.connect() as conn:
            rows = conn.execute(
                _select().where(_AT.c.jti >= ref, _AT.c.jti <= ref + "g" * (32 - len(ref))).limit(2)
            ).all()
        if len(rows) != 1:
            raise NotFound(
                f"no token {jti[:40]!r}" if not rows else f"{jti!r} matches several tokens",
                hint="`llmgw tokens list` shows token ids",
            )
        return _record(rows[0])

    # -- revoking ----------------------------------------------------------------------------
    def _announce(self, jtis: Iterable[str]) -> None:
        ids = tuple(jti_key_id(j) for j in jtis)
        if ids and self._on_change is not None:
            self._on_change(AuthChange(keys=ids))

    def _revoke_where(self, conn: Connection, where: Any, now: datetime) -> list[str]:
        jtis = list(
            conn.execute(
                sa.select(_AT.c.jti).where(
                    where, _AT.c.revoked_at.is_(None), _AT.c.expires_at > now
                )
            ).scalars()
        )
        if jtis:
            conn.execute(
                sa.update(_AT)
                .where(_AT.c.jti.in_(jtis), _AT.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return jtis

    def revoke_family(self, family_id: uuid.UUID | None) -> list[str]:
        """Revoke a whole grant: its refresh tokens and access tokens. Returns revoked jtis."""
        if family_id is None:
            return []
        now = self._clock()
        with db_errors(self.engine, "revoking a grant"), self.engine.begin() as conn:
            conn.execute(
                sa.update(_RT)
                .where(_RT.c.family_id == family_id, _RT.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            jtis = self._revoke_where(conn, _AT.c.family_id == family_id, now)
        self._announce(jtis)
        return jtis

    def revoke(self, token_or_jti: str, *, client_id: str | None = None) -> list[str]:
        """Revoke a refresh token, an access token, a personal access token, or a token by
        ``jti``. A refresh or access token of a grant revokes the whole grant.

        With ``client_id`` (RFC 7009) only that client's tokens are revoked; anything else
        (unknown, garbage, another client's) is a silent no-op. Returns the revoked jtis.
        """
        text = token_or_jti.strip() if isinstance(token_or_jti, str) else ""
        if not text or len(text) > _MAX_TOKEN:
            return []
        family: uuid.UUID | None = None
        jti: str | None = None
        if text.startswith(REFRESH_PREFIX):
            with db_errors(self.engine, "revoking a token"), self.engine.connect() as conn:
                row: Any = conn.execute(
                    sa.select(_RT.c.family_id, _RT.c.client_id).where(_RT.c.digest == digest(text))
                ).first()
            if row is None or (client_id is not None and row.client_id != client_id):
                return []
            family = row.family_id
        elif text.count(".") == 2:
            try:
                claims = self.claims(text, verify_exp=False)
            except AuthError:
                return []
            if client_id is not None and claims["client_id"] != client_id:
                return []
            jti = claims["jti"]
        elif client_id is None and len(text) == 32:
            jti = text.lower()
        else:
            return []
        if jti is not None:
            with db_errors(self.engine, "revoking a token"), self.engine.connect() as conn:
                fam = conn.execute(sa.select(_AT.c.family_id).where(_AT.c.jti == jti)).first()
            if fam is None:
                return []
            family = fam.family_id
            if family is None:  # a personal access token
                now = self._clock()
                with db_errors(self.engine, "revoking a token"), self.engine.begin() as conn:
                    jtis = self._revoke_where(conn, _AT.c.jti == jti, now)
                self._announce(jtis)
                return jtis
        return self.revoke_family(family)

    def revoke_user(self, user_id: uuid.UUID) -> list[str]:
        """Revoke every token and grant of a user (logout everywhere, password change)."""
        now = self._clock()
        with db_errors(self.engine, "revoking a user's tokens"), self.engine.begin() as conn:
            conn.execute(
                sa.update(_RT)
                .where(_RT.c.user_id == user_id, _RT.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            jtis = self._revoke_where(conn, _AT.c.user_id == user_id, now)
        self._announce(jtis)
        return jtis

    def revoke_client(self, client_id: str) -> list[str]:
        """Revoke every token and grant issued to a client (after ``ClientService.revoke``)."""
        now = self._clock()
        with db_errors(self.engine, "revoking a client's tokens"), self.engine.begin() as conn:
            conn.execute(
                sa.update(_RT)
                .where(_RT.c.client_id == client_id, _RT.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            jtis = self._revoke_where(conn, _AT.c.client_id == client_id, now)
        self._announce(jtis)
        return jtis
