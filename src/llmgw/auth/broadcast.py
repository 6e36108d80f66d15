"""Key and user changes announced through Redis, so every gateway instance forgets them at once.

Without this, each instance trusts a key it checked for ``server.key_cache_seconds``. With
``redis_url`` set (and ``auth.broadcast`` on), every change that can turn a working key off (or
back on) is announced after its database transaction commits:

* ``{prefix}:version`` (a counter) is incremented and the change is published on the channel
  ``{prefix}:changes`` as ``"<version> <json>"``, both in one Lua script, so the message carries
  the version it made. JSON: ``{"k": [key ids], "u": [user ids], "r": 1 if refusals are to be
  forgotten (a user was enabled)}``.
* Every ``llmgw serve`` runs a ``ChangeListener``: subscribed to the channel (pushes arrive in
  about a millisecond) and, as a fallback for a missed message, reading the version key every
  ``auth.check_interval`` seconds. A version it has not seen through a message, a version that
  went backwards (Redis restarted or flushed), a message it cannot parse, or a reconnection after
  the link broke all make it drop its whole key cache: when in doubt, look again.

While Redis is unreachable nothing fails: the CLI says the servers were not told, the servers
log it (at most every 30 s) and fall back to the cache bound, ``key_cache_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmgw.auth.changes import AuthChange, channel_of, decode, encode, version_key_of
from llmgw.tasks import stop_task

if TYPE_CHECKING:  # redis-py loads only when Redis is configured
    from redis import Redis as SyncRedis
    from redis.asyncio import Redis

__all__ = ["ChangeListener", "ChangePublisher"]

log = logging.getLogger("llmgw.auth")

WARN_INTERVAL = 30.0
"""Seconds between two warnings about the change feed's Redis being unusable."""

# INCR and PUBLISH in one step: the message names the version it made, and no reader can see
# the new version without the message having been sent.
PUBLISH_LUA = """
local v = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], v .. ' ' .. ARGV[2])
return v
"""


class _Warner:
    """A warning at most every ``WARN_INTERVAL`` seconds, counting the failures in between."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = -math.inf
        self._since = 0

    def failed(self, what: str, exc: BaseException) -> None:
        self._since += 1
        now = self._clock()
        if now - self._last >= WARN_INTERVAL:
            self._last = now
            log.warning(
                "%s: Redis unusable (%s: %s); %d failure(s) since the last warning; cached keys "
                "are trusted for key_cache_seconds until it answers",
                what,
                type(exc).__name__,
                str(exc) or "timeout",
                self._since,
            )
            self._since = 0


class ChangePublisher:
    """Announce changes (blocking; the CLI and admin services call it after a commit).

    ``publish`` never raises: a failure is kept in ``error`` so the caller can tell the person
    that running servers were not told (they then refuse the key within ``key_cache_seconds``).
    Thread-safe (the admin API publishes from worker threads): one publish at a time. Its Redis
    connection is named ``client_name`` (``CLIENT LIST`` shows it: ``llmgw-cli-publisher`` for
    the CLI, ``llmgw-server-publisher`` for a server's admin API); ``close`` closes it.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str,
        timeout: float,
        client_name: str = "llmgw-cli-publisher",
    ) -> None:
        self.client_name = client_name
        self._lock = threading.Lock()
        self._url = redis_url
        self._prefix = prefix
        self._timeout = timeout
        self._client: SyncRedis | None = None
        self.error: str | None = None
        """Why the last ``publish`` failed (exception class and message), else ``None``."""
        self.published = 0

    def publish(self, change: AuthChange) -> None:
        """INCR the version and publish ``change``; on failure set ``error``."""
        with self._lock:
            self._publish(change)

    def _publish(self, change: AuthChange) -> None:
        try:
            if self._client is None:
                from redis import Redis as SyncRedis
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                # No client retries: a blackholed Redis costs one timeout, not four.
                self._client = SyncRedis.from_url(
                    self._url,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    retry=Retry(NoBackoff(), 0),
                    client_name=self.client_name,
                )
            self._client.eval(
                PUBLISH_LUA,
                1,
                version_key_of(self._prefix),
                channel_of(self._prefix),
                encode(change),
            )
        except Exception as exc:  # noqa: BLE001 - reported through .error, never raised
            self.error = f"{type(exc).__name__}: {str(exc)[:200] or 'timeout'}"
        else:
            self.error = None
            self.published += 1

    def close(self) -> None:
        """Close the connection (a later ``publish`` opens a new one)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class ChangeListener:
    """Follow the change feed and call ``apply(change)``, or ``apply(None)`` to drop everything.

    ``start()`` runs it as a task on the running loop; ``aclose()`` stops it. Never raises into
    the caller: while Redis is unusable it retries every ``retry_interval`` seconds. Its two
    Redis connections are named ``client_name`` (``CLIENT LIST`` shows them).
    """

    client_name = "llmgw-auth-feed"

    def __init__(
        self,
        redis_url: str,
        apply: Callable[[AuthChange | None], None],
        *,
        prefix: str,
        check_interval: float,
        timeout: float,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = redis_url
        self._apply = apply
        self._prefix = prefix
        self._check_interval = check_interval
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self._warner = _Warner(clock)
        self._task: asyncio.Task[None] | None = None
        self._seen = 0
        self.connected = False
        """Subscribed and the version key readable now."""
        self.received = 0
        """Changes applied from messages."""
        self.resyncs = 0
        """Times the whole cache was dropped (missed message, Redis restart, reconnection)."""
        self.errors = 0
        """Redis failures since start."""

    def start(self) -> None:
        """Start following the feed in a background task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        """Stop following the feed."""
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task, self._timeout + 5, "the key change feed")

    async def _run(self) -> None:
        sessions = 0
        while True:
            try:
                await self._session(resync=sessions > 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the feed is best effort; keep serving
                self.errors += 1
                self._warner.failed("key change feed", exc)
            if self.connected:
                log.warning("key change feed: Redis link lost; reconnecting")
            self.connected = False
            sessions += 1
            await asyncio.sleep(self._retry_interval)

    async def _session(self, *, resync: bool) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client: Redis = Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=self.client_name,
        )
        pubsub = client.pubsub()
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.subscribe(channel_of(self._prefix))
                # Subscribed first, then read: a change after this read arrives as a message.
                seen = await self._version(client)
            # Changes made while the link was down are unknown, and a version that went back
            # means Redis lost its data: look every key up again.
            if resync or seen < self._seen:
                self._resync()
            self._seen = seen
            if not self.connected:
                log.info("key change feed: following %s", channel_of(self._prefix))
            self.connected = True
            await self._follow(client, pubsub)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # untyped before redis 8.2
            await client.aclose()

    async def _version(self, client: Redis) -> int:
        raw = await client.get(version_key_of(self._prefix))
        return int(raw) if raw is not None else 0

    async def _follow(self, client: Redis, pubsub: Any) -> None:
        next_check = self._clock() + self._check_interval
        while True:
            wait = max(0.0, next_check - self._clock())
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if msg is not None:
                self._on_message(msg)
            if self._clock() >= next_check:
                await self._check(client, pubsub)
                next_check = self._clock() + self._check_interval

    def _on_message(self, msg: dict[str, Any]) -> None:
        if msg.get("type") != "message":
            return
        try:
            version, change = decode(msg["data"])
        except ValueError:
            log.warning("key change feed: unreadable message; dropping every cached key")
            self._resync()
            return
        self.received += 1
        self._apply(change)
        if version > self._seen + 1:  # one or more changes before this one never arrived
            self._resync()
        self._seen = max(self._seen, version)

    async def _check(self, client: Redis, pubsub: Any) -> None:
        async with asyncio.timeout(self._timeout):
            version = await self._version(client)
        if version == self._seen:
            return
        if version > self._seen:  # a message may be on its way: take what has arrived
            while (msg := await pubsub.get_message(ignore_subscribe_messages=True)) is not None:
                self._on_message(msg)
        if version != self._seen:
            self._resync()
            self._seen = version

    def _resync(self) -> None:
        self.resyncs += 1
        self._apply(None)
