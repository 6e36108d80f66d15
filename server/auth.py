"""API-key authentication for the hot path: an in-process TTL cache in front of ``KeyService``.

Bounded staleness: a key found valid is trusted for ``key_cache_seconds`` (default 2 s) without a
database look-up, so a revoked key stops working at most that long after ``llmgw keys revoke``
(an expiry time is checked on every request, so expired keys stop at once). With Redis, the
change feed (``llmgw.auth.broadcast``) calls ``apply`` on every revocation, rotation and user
disable/enable, so the entries concerned go at once on every instance; a look-up that was in
flight while a change arrived is not cached (it may have read the row before the change). Failed look-ups are
cached for the same time (never longer than 5 s) to blunt repeated guessing; the cache holds at most
``max_entries`` digests. Misses run ``KeyService.authenticate`` in a worker thread, one look-up
per digest at a time (single flight) and at most ``max_lookups`` at once. When the database is
unreachable a key that was valid within the last ``stale_grace`` seconds keeps working (nobody can
revoke it meanwhile: revoking writes to the same database); unknown keys get 503.

``last_used_at`` is collected in memory and written with ``KeyService.touch_last_used`` in one
batch every ``touch_interval`` seconds, never per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from llmgw.auth.keys import SECRET_PREFIX, digest_of
from llmgw.errors import AuthError, DatabaseError, LlmgwError, PermissionDenied

if TYPE_CHECKING:
    from llmgw.auth.changes import AuthChange
    from llmgw.auth.keys import KeyService
    from llmgw.identity.principal import Principal
    from llmgw.identity.tokens import TokenService

__all__ = [
    "JWT_CACHE_SECONDS",
    "Credentials",
    "KeyCache",
    "KeyLookup",
    "TokenKey",
    "credentials_from_headers",
]

log = logging.getLogger("llmgw.server")

_MISSING = "missing API key"
_MISSING_HINT = "send `Authorization: Bearer <key>` or `x-api-key: <key>`"
_INVALID = "invalid API key"
# RFC 6750 token68 characters, bounded (an access JWT is ~600 characters; an API key 49):
# anything else is refused before any look-up.
_TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/=]{1,4096}")
# A verified access token is trusted at most this long without reading its row again: the bound
# on revocation when Redis is not there to announce it (with Redis, the change feed drops it).
JWT_CACHE_SECONDS = 1.0
_NEGATIVE_MAX_SECONDS = 5.0


class _Key(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def prefix(self) -> str: ...
    @property
    def user_id(self) -> uuid.UUID | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def rpm(self) -> int | None: ...
    @property
    def tpm(self) -> int | None: ...

    def allows_model(self, model: str) -> bool: ...


class KeyLookup(Protocol):
    """The part of ``KeyService`` the cache uses."""

    def authenticate(self, secret: str) -> _Key: ...

    def touch_last_used(self, seen: Mapping[uuid.UUID, datetime]) -> None: ...


def credentials_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The key from ``Authorization: Bearer`` or ``x-api-key``; ``AuthError`` when absent or malformed."""
    auth: bytes | None = None
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            auth = value
        elif name == b"x-api-key":
            api_key = value
    if auth is not None:
        scheme, _, token = auth.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            raise AuthError("unsupported Authorization scheme; use Bearer", hint=_MISSING_HINT)
        raw = token.strip()
    elif api_key is not None:
        raw = api_key.strip()
    else:
        raise AuthError(_MISSING, hint=_MISSING_HINT)
    if not raw:
        raise AuthError(_MISSING, hint=_MISSING_HINT)
    if not _TOKEN.fullmatch(raw):
        raise AuthError(_INVALID)
    return raw.decode("ascii")


class TokenKey:
    """A verified access token (or personal access token) as the pipeline sees a key.

    Same attributes as ``KeyInfo`` where the pipeline reads them: ``id`` is the token's ``jti``
    as a UUID (so a revocation announced for it drops it from the cache like a key), and the
    ``chat`` scope stands in for the model allow-list: ``allows_model`` refuses every model (403
    ``insufficient_scope``) to a token without it, so the OpenAI routes need ``chat``.
    ``require_admin`` reads ``scopes`` for the ``admin`` scope.

    Rate limits (``rpm``, ``tpm``, counted in the buckets named by ``bucket``; docs/auth.md):
    a personal access token has buckets of its own (``pat:<jti>``) and its own limits, else the
    defaults; the access tokens of a login share their user's buckets (``user:<id>``: a refresh
    every 15 minutes must not refill them, nor a second session double them) and a
    ``client_credentials`` token its client's (``client:<id>``), with the defaults
    (``identity.token_rpm``/``token_tpm``). The usage row names the user and the token
    (``token_id``), never a key.
    """

    __slots__ = (
        "bucket",
        "cache_ttl",
        "client_id",
        "expires_at",
        "id",
        "jti",
        "prefix",
        "principal",
        "rpm",
        "scopes",
        "tpm",
        "user_email",
        "user_id",
        "user_role",
    )

    def __init__(
        self, principal: Principal, rpm: int | None = None, tpm: int | None = None
    ) -> None:
        from llmgw.identity.tokens import jti_key_id

        jti = principal.jti or ""
        self.principal = principal
        self.jti = jti
        self.id = jti_key_id(jti)
        self.prefix = "jwt:" + jti[:8]
        self.user_id = principal.user_id
        self.user_email = principal.email
        self.user_role = principal.role
        self.scopes = principal.scopes
        self.client_id = principal.client_id
        self.expires_at = principal.expires_at
        self.cache_ttl = JWT_CACHE_SECONDS
        if principal.client_id is None:  # a personal access token
            self.bucket = "pat:" + jti
            self.rpm = principal.rpm if principal.rpm is not None else rpm
            self.tpm = principal.tpm if principal.tpm is not None else tpm
        else:
            who = principal.user_id
            self.bucket = f"user:{who}" if who is not None else f"client:{principal.client_id}"
            self.rpm, self.tpm = rpm, tpm

    def allows_model(self, model: str) -> bool:
        """Every model with the ``chat`` scope; ``PermissionDenied`` (403) without it."""
        if "chat" not in self.scopes:
            raise PermissionDenied(
                "this token does not carry the chat scope",
                code="insufficient_scope",
                hint="log in (or create the token) with --scope chat",
            )
        return True


class Credentials:
    """The ``KeyLookup`` the gateway's cache uses: API keys by ``KeyService``, anything else
    that looks like a JWT by ``TokenService`` (only on a cache miss: a cached credential of
    either kind costs the same digest and dictionary look-up)."""

    def __init__(
        self,
        keys: KeyService,
        tokens: TokenService | None,
        *,
        token_rpm: int | None = None,
        token_tpm: int | None = None,
    ) -> None:
        self._keys = keys
        self._tokens = tokens
        self._rpm = token_rpm
        self._tpm = token_tpm

    def authenticate(self, secret: str) -> _Key:
        """The key or token behind ``secret``; ``AuthError`` otherwise."""
        if secret.startswith(SECRET_PREFIX) or self._tokens is None or secret.count(".") != 2:
            return self._keys.authenticate(secret)
        return TokenKey(self._tokens.verify(secret), self._rpm, self._tpm)

    def touch_last_used(self, seen: Mapping[uuid.UUID, datetime]) -> None:
        """Last-used times of keys (tokens' ids match no key row and change nothing)."""
        self._keys.touch_last_used(seen)


class _Entry:
    __slots__ = ("checked", "expires", "fresh_until", "info")

    def __init__(self, info: _Key | None, fresh_until: float, checked: float) -> None:
        self.info = info
        self.fresh_until = fresh_until
        self.checked = checked
        exp = info.expires_at if info is not None else None
        self.expires = exp.timestamp() if exp is not None else None


class KeyCache:
    """Authenticate requests against a ``KeyService`` through a bounded TTL cache.

    ``clock`` (monotonic seconds) times the cache; ``wall_clock`` (Unix seconds) is compared with
    keys' expiry and stamps last use. Tests pass fake clocks instead of sleeping.
    """

    def __init__(
        self,
        keys: KeyLookup,
        *,
        ttl: float,
        max_entries: int = 10_000,
        max_lookups: int = 4,
        stale_grace: float = 60.0,
        touch_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._wall = wall_clock
        self.ttl = ttl
        self._negative_ttl = min(ttl, _NEGATIVE_MAX_SECONDS)
        self._max = max_entries
        self._stale_grace = stale_grace
        self._touch_interval = touch_interval
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._pending: dict[str, asyncio.Task[_Key]] = {}
        self._lookups = asyncio.Semaphore(max_lookups)
        self._seen: dict[uuid.UUID, float] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._generation = 0  # grows with every change applied; see _fetch
        self.db_lookups = 0
        """How many look-ups reached ``KeyService`` (tests and benchmarks read it)."""

    # -- authenticating ----------------------------------------------------------------------
    async def authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> _Key:
        """The key behind the request's credentials, or ``AuthError`` / ``DatabaseError``."""
        secret = credentials_from_headers(headers)
        digest = digest_of(secret)  # the stored form, so one cache entry per key
        now = self._clock()
        entry = self._entries.get(digest)
        if entry is not None and now < entry.fresh_until:
            info = entry.info
            if info is None:
                raise AuthError(_INVALID)
            wall = self._wall()
            if entry.expires is not None and wall >= entry.expires:
                raise AuthError(_INVALID)
            self._seen[info.id] = wall
            return info
        info = await self._lookup(secret, digest, entry)
        self._seen[info.id] = self._wall()
        return info

    @staticmethod
    def check_model(info: _Key, model: str) -> None:
        """``PermissionDenied`` (403) when the key's allow-list does not admit ``model``."""
        if not info.allows_model(model):
            raise PermissionDenied(
                f"this API key may not use model {model!r}",
                param="model",
                hint="ask an admin to extend the key's model list",
            )

    async def _lookup(self, secret: str, digest: str, stale: _Entry | None) -> _Key:
        # One look-up per digest at a time, in its own task: a requester that goes away (client
        # disconnect) must not cancel the look-up the other requesters wait for.
        task = self._pending.get(digest)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(secret, digest, stale))
            self._pending[digest] = task
            task.add_done_callback(lambda t: self._done(digest, t))
        return await asyncio.shield(task)

    def _done(self, digest: str, task: asyncio.Task[_Key]) -> None:
        if self._pending.get(digest) is task:
            del self._pending[digest]
        if not task.cancelled():
            task.exception()  # retrieved here, so an error with no waiter left is not "lost"

    async def _fetch(self, secret: str, digest: str, stale: _Entry | None) -> _Key:
        async with self._lookups:
            self.db_lookups += 1
            generation = self._generation
            try:
                info = await asyncio.to_thread(self._keys.authenticate, secret)
            except AuthError:
                if generation == self._generation:
                    self._store(digest, None, self._negative_ttl)
                raise AuthError(_INVALID) from None
            except DatabaseError:
                now = self._clock()
                if (
                    stale is not None
                    and stale.info is not None
                    and now - stale.checked < self._stale_grace
                ):
                    return stale.info
                raise
            except LlmgwError:
                raise
        # A change applied meanwhile may concern this key, and the row may predate it: use the
        # answer for this request only and look it up again next time.
        if generation == self._generation:
            self._store(digest, info, min(self.ttl, getattr(info, "cache_ttl", self.ttl)))
        return info

    def _store(self, digest: str, info: _Key | None, ttl: float) -> None:
        if ttl <= 0:
            self._entries.pop(digest, None)
            return
        now = self._clock()
        entries = self._entries
        entries[digest] = _Entry(info, now + ttl, now)
        entries.move_to_end(digest)
        while len(entries) > self._max:
            entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    # -- changes announced by other processes (llmgw.auth.broadcast) --------------------------
    def apply(self, change: AuthChange | None) -> None:
        """Forget what ``change`` makes stale; ``None`` (changes unknown) looks every key up again.

        Called on the loop by the change feed. Entries of the changed keys and of every key of the
        changed users go, and, when a user was enabled, every cached refusal too (a refusal does
        not record whose key it was). ``None`` drops every refusal and makes every key due for a
        look-up, but keeps them for ``stale_grace`` should the database be down (ST-5). Costs one
        pass over at most ``max_entries`` entries.
        """
        self._generation += 1
        if change is None:
            for digest in [d for d, e in self._entries.items() if e.info is None]:
                del self._entries[digest]
            for entry in self._entries.values():
                entry.fresh_until = -math.inf
            return
        keys = set(change.keys)
        users = set(change.users)
        stale = [
            digest
            for digest, entry in self._entries.items()
            if (entry.info is None and change.forget_refusals)
            or (
                entry.info is not None
                and (entry.info.id in keys or (users and entry.info.user_id in users))
            )
        ]
        for digest in stale:
            del self._entries[digest]

    # -- last_used_at batching ------------------------------------------------------------
    def start(self) -> None:
        """Start the background task that writes ``last_used_at`` in batches."""
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._touch_interval)
            await self.flush_last_used()

    async def flush_last_used(self) -> None:
        """Write the collected ``last_used_at`` times now (one batched statement)."""
        if not self._seen:
            return
        seen, self._seen = self._seen, {}
        batch = {k: datetime.fromtimestamp(ts, UTC) for k, ts in seen.items()}
        try:
            await asyncio.to_thread(self._keys.touch_last_used, batch)
        except Exception as exc:  # noqa: BLE001 - last-used is best effort; keep serving
            log.warning("could not record key last-used times: %s", type(exc).__name__)
            for k, ts in seen.items():  # keep them for the next round
                self._seen[k] = max(ts, self._seen.get(k, 0.0))

    async def close(self) -> None:
        """Stop the background task and write the last batch."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush_last_used()
