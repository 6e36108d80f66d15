"""API keys: create, authenticate, list, revoke and rotate; only a digest and a prefix are stored."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from llmgw.auth._db import db_errors
from llmgw.auth.changes import AuthChange
from llmgw.auth.keyinfo import KeyInfo
from llmgw.auth.refs import ambiguous, id_match, too_short
from llmgw.auth.users import find_user
from llmgw.errors import AuthError, Conflict, NotFound, UsageError
from llmgw.storage.tables import ApiKey, User, utcnow

__all__ = [
    "SECRET_PREFIX",
    "KeyChanges",
    "check_key_settings",
    "CreatedKey",
    "KeyInfo",
    "KeyService",
    "digest_of",
    "find_key",
    "generate_secret",
]

SECRET_PREFIX = "llmgw_"  # noqa: S105 - a public type marker, not a secret
# 32 random bytes -> 43 url-safe base64 characters (256 bits; the issue asks for >= 128).
_SECRET_BYTES = 32
_SECRET_RE = re.compile(r"llmgw_[A-Za-z0-9_-]{43}")
_SECRET_LEN = len(SECRET_PREFIX) + 43
PREFIX_LEN = 12
_NAME_MAX = 200
_MAX_LIFETIME = timedelta(days=36_525)
_BAD_KEY = "invalid API key"
_BAD_KEY_HINT = "check the key; revoked, expired and unknown keys are all refused"
# Compared against when no row matches, so both paths do a constant-time comparison.
_DUMMY_DIGEST = "0" * 64

_KEYS = ApiKey.metadata.tables["api_keys"]
_USERS = User.metadata.tables["users"]


def generate_secret() -> str:
    """A new key secret: ``llmgw_`` + 43 url-safe characters from the OS CSPRNG."""
    return SECRET_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def digest_of(secret: str) -> str:
    """The SHA-256 hex digest stored for ``secret``."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key and its secret, which is shown once and never stored."""

    info: KeyInfo
    secret: str

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"CreatedKey(info={self.info!r}, secret='{self.info.prefix}…')"


def _select() -> sa.Select[Any]:
    return sa.select(
        _KEYS.c.id,
        _KEYS.c.name,
        _KEYS.c.prefix,
        _KEYS.c.digest,
        _KEYS.c.user_id,
        _KEYS.c.expires_at,
        _KEYS.c.revoked_at,
        _KEYS.c.rpm,
        _KEYS.c.tpm,
        _KEYS.c.models,
        _KEYS.c.created_at,
        _KEYS.c.last_used_at,
        _KEYS.c.rotated_from,
        _USERS.c.email.label("user_email"),
        _USERS.c.disabled.label("user_disabled"),
        _USERS.c.role.label("user_role"),
    ).select_from(_KEYS.outerjoin(_USERS, _KEYS.c.user_id == _USERS.c.id))


# Built once: the hot path only binds the digest (the unique index answers it).
_BY_DIGEST = _select().where(_KEYS.c.digest == sa.bindparam("digest", type_=_KEYS.c.digest.type))


def _info(row: sa.Row[Any]) -> KeyInfo:
    m = row._mapping
    models = m["models"]
    return KeyInfo(
        id=m["id"],
        name=m["name"],
        prefix=m["prefix"],
        user_id=m["user_id"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
        rpm=m["rpm"],
        tpm=m["tpm"],
        models=tuple(models) if models is not None else None,
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        user_email=m["user_email"],
        user_disabled=bool(m["user_disabled"]),
        rotated_from=m["rotated_from"],
        user_role=m["user_role"],
    )


class KeyChanges(TypedDict, total=False):
    """The settings ``KeyService.update`` changes; a field left out stays as it is.

    ``None`` clears a limit (no per-key limit), the allow-list (every model) or the expiry (never).
    """

    rpm: int | None
    tpm: int | None
    models: Sequence[str] | None
    expires_at: datetime | None


def _shown(ref: str) -> str:
    """``ref`` as safe to print: a pasted secret is cut to its public prefix."""
    if ref.startswith(SECRET_PREFIX) and len(ref) > PREFIX_LEN:
        return ref[:PREFIX_LEN] + "…"
    return ref[:64]


_REF_HINT = (
    "give its name, id (8+ characters), prefix (llmgw_ + 6) or the whole secret; "
    "`llmgw keys list --all` shows them"
)


def _by_form(ref: str) -> sa.Select[Any] | None:
    """The query for ``ref`` read as a whole secret, a key prefix, an id or an id prefix;
    ``None`` when it has none of those forms."""
    if ref.startswith(SECRET_PREFIX) and len(ref) == PREFIX_LEN:
        return _select().where(_KEYS.c.prefix == ref)
    if _SECRET_RE.fullmatch(ref):  # a pasted secret: its prefix and its digest
        return _select().where(_KEYS.c.prefix == ref[:PREFIX_LEN], _KEYS.c.digest == digest_of(ref))
    match = id_match(_KEYS.c.id, ref)
    return None if match is None else _select().where(match)


def _by_name(conn: Connection, ref: str) -> builtins.list[sa.Row[Any]]:
    """The keys named exactly ``ref``: the live (not revoked) ones if there are any, else the
    revoked ones (a rotated key's name passes to its successor, so the live one is meant)."""
    if len(ref) > _NAME_MAX or _SECRET_RE.fullmatch(ref):
        return []
    rows = conn.execute(
        _select().where(_KEYS.c.name == ref).order_by(_KEYS.c.created_at, _KEYS.c.id)
    ).all()
    live = [r for r in rows if r._mapping["revoked_at"] is None]
    return live or builtins.list(rows)


def _ambiguous(ref: str, rows: Sequence[sa.Row[Any]]) -> UsageError:
    """The error for a name (or an id prefix that is also a name) matching several keys: their
    ids and prefixes, never a secret."""
    return ambiguous(
        _shown(ref),
        rows,
        "keys",
        lambda r: r._mapping["prefix"] + (", revoked" if r._mapping["revoked_at"] else ""),
        "give the id (8+ characters) or the prefix of the one you mean; "
        "`llmgw keys list --all` shows them",
    )


def find_key(conn: Connection, ref: str) -> sa.Row[Any]:
    """The one key a person's ``ref`` names: its whole id, a unique id prefix (8+ hex digits),
    its key prefix (``llmgw_`` + 6), the whole secret, or its exact name.

    A name means the one live (not revoked) key of that name, or, when none is live, the one
    revoked key of that name. A ref that names several keys (a name shared by two live keys, an
    id prefix of two keys, an id prefix that is also another key's name) is a ``UsageError``
    listing their ids and prefixes; none is ``NotFound``. The one resolver behind every command,
    admin API route and screen that takes a key (``KeyService.get``); messages never hold a
    secret.
    """
    ref = ref.strip()
    query = _by_form(ref)
    rows = conn.execute(query.limit(2)).all() if query is not None else []
    if len(rows) > 1:
        raise UsageError(
            f"{_shown(ref)!r} matches more than one key",
            hint="give more characters of the id, or the key prefix",
        )
    named = _by_name(conn, ref) if ref else []
    found = {r._mapping["id"]: r for r in (*rows, *named)}
    if len(found) == 1:
        return next(iter(found.values()))
    if found:
        raise _ambiguous(ref, builtins.list(found.values()))
    short = too_short(
        ref, "a key", "its", "a name or key prefix works too; `llmgw keys list --all` shows them"
    )
    if short is not None:
        raise short
    raise NotFound(f"no API key matches {_shown(ref)!r}", hint=_REF_HINT)


def check_key_settings(
    name: str,
    rpm: int | None,
    tpm: int | None,
    models: Sequence[str] | None,
    expires_in: timedelta | None = None,
) -> tuple[str, tuple[str, ...] | None]:
    """Validate a key's name, limits, allow-list and lifetime; return the clean name and list."""
    if expires_in is not None and not (timedelta(0) < expires_in <= _MAX_LIFETIME):
        raise UsageError(
            "the expiry must be in the future and at most 100 years away",
            hint="for example --expires 30d; leave it out for a key that never expires",
            param="expires",
        )
    name = name.strip()
    if not name or len(name) > _NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UsageError(
            "invalid key name",
            hint=f"use 1 to {_NAME_MAX} printable characters",
            param="name",
        )
    for label, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and not (1 <= value <= 2_000_000_000):
            raise UsageError(
                f"invalid {label} {value}", hint=f"--{label} takes a positive whole number"
            )
    allow: tuple[str, ...] | None = None
    if models is not None:
        cleaned = [m.strip() for m in models]
        if not cleaned or any(
            not m or len(m) > 200 or any(c.isspace() for c in m) for m in cleaned
        ):
            raise UsageError(
                "invalid model list",
                hint="give model names or aliases separated by commas: --models local/gpt-4o-mini,chat-default",
            )
        allow = tuple(dict.fromkeys(cleaned))
    return name, allow


class KeyService:
    """Key lifecycle on top of a SQLAlchemy engine (SQLite or PostgreSQL). Thread-safe.

    ``on_change`` is called after every committed revocation or rotation with the keys whose
    cached state is now stale (``ChangePublisher.publish`` announces them to running servers).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_change: Callable[[AuthChange], None] | None = None,
    ) -> None:
        self.engine = engine
        self._clock = clock
        self._on_change = on_change

    def _changed(self, key_id: uuid.UUID) -> None:
        if self._on_change is not None:
            self._on_change(AuthChange(keys=(key_id,)))

    # -- creating ---------------------------------------------------------------------------
    def create(
        self,
        name: str,
        *,
        user: str | None = None,
        expires_in: timedelta | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        models: Sequence[str] | None = None,
    ) -> CreatedKey:
        """Create a key and return it with its secret (the only time the secret is available).

        ``user`` names its owner as every command does (``find_user``: email, id, an 8+ digit
        id prefix or display name); an unknown user is ``NotFound``, a disabled one ``Conflict``.
        """
        name, allow = check_key_settings(name, rpm, tpm, models, expires_in)
        now = self._clock()
        expires_at = now + expires_in if expires_in is not None else None
        with db_errors(self.engine, "creating a key"), self.engine.begin() as conn:
            user_id = self._user_id(conn, user) if user is not None else None
            return self._insert(conn, name, user_id, now, expires_at, rpm, tpm, allow, None)

    def _user_id(self, conn: Connection, ref: str) -> uuid.UUID:
        row = find_user(conn, ref)
        if row.disabled:
            raise Conflict(
                f"user {row.email!r} is disabled",
                hint=f"enable it first: llmgw users enable {row.email}",
            )
        return cast(uuid.UUID, row.id)

    def _insert(
        self,
        conn: Connection,
        name: str,
        user_id: uuid.UUID | None,
        now: datetime,
        expires_at: datetime | None,
        rpm: int | None,
        tpm: int | None,
        models: tuple[str, ...] | None,
        rotated_from: uuid.UUID | None,
    ) -> CreatedKey:
        # A 12-character prefix carries 36 random bits: collisions are rare but possible,
        # so retry inside a savepoint instead of failing the whole command.
        for _attempt in range(5):
            secret = generate_secret()
            key_id = uuid.uuid4()
            values = {
                "id": key_id,
                "name": name,
                "user_id": user_id,
                "prefix": secret[:PREFIX_LEN],
                "digest": digest_of(secret),
                "created_at": now,
                "expires_at": expires_at,
                "revoked_at": None,
                "last_used_at": None,
                "rpm": rpm,
                "tpm": tpm,
                "models": list(models) if models is not None else None,
                "rotated_from": rotated_from,
            }
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(_KEYS).values(**values))
            except IntegrityError:
                continue
            row = conn.execute(_select().where(_KEYS.c.id == key_id)).one()
            return CreatedKey(info=_info(row), secret=secret)
        raise Conflict(
            "could not allocate a unique key prefix", hint="try again"
        )  # pragma: no cover

    # -- authenticating ---------------------------------------------------------------------
    def authenticate(self, secret: str) -> KeyInfo:
        """The key for ``secret`` if it is usable now; ``AuthError`` (one message) otherwise."""
        if (
            not isinstance(secret, str)
            or len(secret) != _SECRET_LEN
            or not _SECRET_RE.fullmatch(secret)
        ):
            raise AuthError(_BAD_KEY, hint=_BAD_KEY_HINT)
        digest = digest_of(secret)
        with db_errors(self.engine, "checking an API key"), self.engine.connect() as conn:
            row = conn.execute(_BY_DIGEST, {"digest": digest}).first()
        stored = row._mapping["digest"] if row is not None else _DUMMY_DIGEST
        if not hmac.compare_digest(stored.encode("ascii"), digest.encode("ascii")) or row is None:
            raise AuthError(_BAD_KEY, hint=_BAD_KEY_HINT)
        info = _info(row)
        if not info.is_active(self._clock()):
            raise AuthError(_BAD_KEY, hint=_BAD_KEY_HINT)
        return info

    # -- reading ----------------------------------------------------------------------------
    def list(self, *, include_revoked: bool = False) -> builtins.list[KeyInfo]:
        """Keys oldest first; revoked ones only with ``include_revoked``."""
        query = _select().order_by(_KEYS.c.created_at, _KEYS.c.id)
        if not include_revoked:
            query = query.where(_KEYS.c.revoked_at.is_(None))
        with db_errors(self.engine, "listing keys"), self.engine.connect() as conn:
            return [_info(r) for r in conn.execute(query)]

    def get(self, ref: str) -> KeyInfo:
        """The key ``ref`` names (see ``find_key``)."""
        with db_errors(self.engine, "looking up a key"), self.engine.connect() as conn:
            return _info(find_key(conn, ref))

    # -- changing ---------------------------------------------------------------------------
    def revoke(self, ref: str) -> KeyInfo:
        """Revoke the key now; revoking a revoked key changes nothing and returns it.

        The change is announced (``on_change``) after the commit, also for a key revoked
        before: announcing twice is harmless and repairs an announcement that failed.
        """
        info = self._revoke(ref)
        self._changed(info.id)
        return info

    def _revoke(self, ref: str) -> KeyInfo:
        with db_errors(self.engine, "revoking a key"), self.engine.begin() as conn:
            row = find_key(conn, ref)
            if row._mapping["revoked_at"] is None:
                key_id = row._mapping["id"]
                conn.execute(
                    sa.update(_KEYS)
                    .where(_KEYS.c.id == key_id, _KEYS.c.revoked_at.is_(None))
                    .values(revoked_at=self._clock())
                )
                row = conn.execute(_select().where(_KEYS.c.id == key_id)).one()
            return _info(row)

    def rotate(self, ref: str) -> CreatedKey:
        """Issue a new secret with the same name, owner, limits and expiry; revoke the old key."""
        created = self._rotate(ref)
        if created.info.rotated_from is not None:
            self._changed(created.info.rotated_from)
        return created

    def _rotate(self, ref: str) -> CreatedKey:
        with db_errors(self.engine, "rotating a key"), self.engine.begin() as conn:
            old = _info(find_key(conn, ref))
            now = self._clock()
            if old.revoked_at is not None:
                raise Conflict(
                    f"key {old.prefix} is revoked", hint="create a new key with `llmgw keys create`"
                )
            if old.expires_at is not None and now >= old.expires_at:
                raise Conflict(
                    f"key {old.prefix} has expired",
                    hint="create a new key with `llmgw keys create`",
                )
            # Revoke first, guarded on revoked_at IS NULL, so two concurrent rotations cannot
            # both succeed: the loser updates no row and stops here.
            done = conn.execute(
                sa.update(_KEYS)
                .where(_KEYS.c.id == old.id, _KEYS.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if done.rowcount != 1:
                raise Conflict(
                    f"key {old.prefix} was revoked meanwhile", hint="list keys and retry"
                )
            return self._insert(
                conn,
                old.name,
                old.user_id,
                now,
                old.expires_at,
                old.rpm,
                old.tpm,
                old.models,
                old.id,
            )

    def update(self, ref: str, changes: KeyChanges) -> KeyInfo:
        """Change a live key's limits, allow-list or expiry (only the fields in ``changes``).

        The same checks as ``create``; a revoked key is a ``Conflict``. Announced like a
        revocation, so running servers apply the new settings within the same bound.
        """
        values = self._checked(changes)
        with db_errors(self.engine, "updating a key"), self.engine.begin() as conn:
            old = _info(find_key(conn, ref))
            if old.revoked_at is not None:
                raise Conflict(
                    f"key {old.prefix} is revoked", hint="create a new key with `llmgw keys create`"
                )
            if values:
                conn.execute(sa.update(_KEYS).where(_KEYS.c.id == old.id).values(**values))
            info = _info(conn.execute(_select().where(_KEYS.c.id == old.id)).one())
        if values:
            self._changed(info.id)
        return info

    def _checked(self, changes: KeyChanges) -> dict[str, Any]:
        """``changes`` validated, as column values."""
        unknown = set(changes) - set(KeyChanges.__annotations__)
        if unknown:  # pragma: no cover - a programming error, not user input
            raise TypeError(f"unknown key settings: {sorted(unknown)}")
        models = changes.get("models")
        _, allow = check_key_settings("-", changes.get("rpm"), changes.get("tpm"), models)
        values: dict[str, Any] = {k: v for k, v in changes.items() if k in ("rpm", "tpm")}
        if "models" in changes:
            values["models"] = list(allow) if allow is not None else None
        if "expires_at" in changes:
            when = changes["expires_at"]
            if when is not None:
                if when.tzinfo is None:
                    raise UsageError("the expiry needs a time zone", param="expires_at")
                check_key_settings("-", None, None, None, when - self._clock())
            values["expires_at"] = when
        return values

    def touch_last_used(self, seen: Mapping[uuid.UUID, datetime]) -> None:
        """Record last-used times for many keys in one batched write (never moves time back)."""
        if not seen:
            return
        ts = sa.bindparam("ts", type_=_KEYS.c.last_used_at.type)
        stmt = (
            sa.update(_KEYS)
            .where(
                _KEYS.c.id == sa.bindparam("key_id", type_=_KEYS.c.id.type),
                sa.or_(_KEYS.c.last_used_at.is_(None), _KEYS.c.last_used_at < ts),
            )
            .values(last_used_at=ts)
        )
        params = [{"key_id": k, "ts": ts} for k, ts in seen.items()]
        with db_errors(self.engine, "recording key use"), self.engine.begin() as conn:
            conn.execute(stmt, params)
