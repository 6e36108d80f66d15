"""The facade the server uses: Redis-shared GCRA with a bounded, observable local fallback."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from llmgw.config import RateLimitSettings
from llmgw.errors import ConfigError
from llmgw.ratelimit.gcra import BudgetAsk, BudgetVerdict, Decision, Limit, MemoryLimiter

if TYPE_CHECKING:
    from llmgw.ratelimit.redis_backend import RedisBackend

__all__ = ["RateLimiter"]

log = logging.getLogger("llmgw.ratelimit")

WARN_INTERVAL = 30.0
"""Seconds between two warnings about Redis being unusable (errors in between are counted)."""


class RateLimiter:
    """``acquire``/``adjust`` on named buckets; never raises because of the backend.

    With Redis, an error or timeout (budget ``settings.redis_timeout``) switches to *degraded*
    mode: a local ``MemoryLimiter`` answers with ``ceil(rate / instances)`` per instance (never
    unlimited), ``backend_errors`` grows, a warning is logged at most every 30 s, and at most one
    request per ``settings.retry_interval`` probes Redis again, so a blackholed Redis costs one
    timeout per interval, not one per request. The first successful Redis call clears ``degraded``.
    """

    backend_errors: int
    """Redis errors and timeouts since start."""

    def __init__(
        self,
        settings: RateLimitSettings,
        redis_url: str | None,
        *,
        instance_count: int | None = None,
        key_prefix: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._instances = max(1, instance_count or settings.instances)
        # ``clock`` (seconds; tests pass a fake one) times the degraded-mode probes and the local
        # buckets (GCRA needs only differences, so a wall-clock jump cannot refill them).
        self._clock = clock
        self._local = MemoryLimiter(clock=clock)
        self._redis: RedisBackend | None = None
        kind = settings.backend
        if kind == "auto":
            kind = "redis" if redis_url else "memory"
        if kind == "redis":
            if not redis_url:
                raise ConfigError(
                    "ratelimit.backend is 'redis' but redis_url is not set",
                    hint="set redis_url (LLMGW_REDIS_URL) or ratelimit.backend = 'memory'",
                )
            # Imported here: redis-py costs ~40 ms of start-up that the memory backend never needs.
            from llmgw.ratelimit.redis_backend import KEY_PREFIX, RedisBackend

            self._redis = RedisBackend(
                redis_url, timeout=settings.redis_timeout, prefix=key_prefix or KEY_PREFIX
            )
        self.backend_errors = 0
        self._degraded = False
        self._next_try = 0.0  # monotonic: when a degraded limiter may use Redis again
        self._last_warning = -math.inf
        self._errors_since_warning = 0
        # Local shares are memoised per Limit: Limit() validation costs more than a dict hit.
        self._shares: dict[Limit, Limit] = {}

    @property
    def backend(self) -> Literal["memory", "redis"]:
        """``"redis"`` when limits are shared through Redis, else ``"memory"``."""
        return "memory" if self._redis is None else "redis"

    @property
    def memory_step(self) -> Callable[[Sequence[tuple[str, Limit, int]]], list[Decision]] | None:
        """With the memory backend, its all-or-nothing step (``acquire_many`` without the
        coroutine, for the request path); ``None`` with Redis."""
        return self._local.acquire_many_now if self._redis is None else None

    @property
    def memory_tightest(
        self,
    ) -> Callable[[Sequence[tuple[str, Limit, int]]], Decision | list[Decision]] | None:
        """With the memory backend, ``MemoryLimiter.tightest_now`` (all or nothing, only the
        tightest decision when admitted: the request path's buckets of one unit each); ``None``
        with Redis."""
        return self._local.tightest_now if self._redis is None else None

    @property
    def degraded(self) -> bool:
        """The Redis backend is currently failing and local shares answer."""
        return self._degraded

    async def start(self) -> None:
        """Check Redis once (a failure only logs and starts degraded); never raises."""
        if self._redis is None:
            return
        try:
            async with asyncio.timeout(self._settings.redis_timeout):
                await self._redis.ping()
        except Exception as exc:  # noqa: BLE001 - any backend failure means "degraded"
            self._failed(exc)
        else:
            self._recovered()

    async def aclose(self) -> None:
        """Close the Redis connections."""
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:  # noqa: BLE001 - closing a broken connection is not an error
                log.debug("rate limiter: error closing Redis", exc_info=True)

    def _share(self, limit: Limit) -> Limit:
        share = self._shares.get(limit)
        if share is None:
            share = Limit(math.ceil(limit.rate / self._instances), limit.period)
            if len(self._shares) > 10_000:
                self._shares.clear()
            self._shares[limit] = share
        return share

    def _use_redis(self) -> bool:
        if self._redis is None:
            return False
        if not self._degraded:
            return True
        now = self._clock()
        if now < self._next_try:
            return False
        self._next_try = now + self._settings.retry_interval  # this request is the only probe
        return True

    def _failed(self, exc: BaseException) -> None:
        self.backend_errors += 1
        self._errors_since_warning += 1
        now = self._clock()
        if not self._degraded or now >= self._next_try:
            self._next_try = now + self._settings.retry_interval
        self._degraded = True
        if now - self._last_warning >= WARN_INTERVAL:
            self._last_warning = now
            log.warning(
                "rate limiter: Redis unusable (%s: %s); %d error(s) since the last warning; "
                "local limits of ceil(limit/%d) per instance apply until it answers again",
                type(exc).__name__,
                str(exc) or "timeout",
                self._errors_since_warning,
                self._instances,
            )
            self._errors_since_warning = 0

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            log.warning("rate limiter: Redis answers again; shared limits restored")

    async def acquire(self, bucket: str, limit: Limit, cost: int = 1) -> Decision:
        """Take ``cost`` units from ``bucket`` (Redis when healthy, else the local share)."""
        if self._redis is not None and self._use_redis():
            try:
                async with asyncio.timeout(self._settings.redis_timeout):
                    decision = await self._redis.acquire(bucket, limit, cost)
            except Exception as exc:  # noqa: BLE001 - never an exception to the caller
                self._failed(exc)
            else:
                self._recovered()
                return decision
            return self._local.acquire_now(bucket, self._share(limit), cost)
        if self._redis is None:
            return self._local.acquire_now(bucket, limit, cost)
        return self._local.acquire_now(bucket, self._share(limit), cost)

    async def acquire_shared(self, bucket: str, limit: Limit, cost: int = 1) -> Decision | None:
        """``acquire`` with no local fallback: ``None`` when the limit is shared through Redis
        and Redis did not answer now (an error, a timeout, or degraded between two probes), so
        the caller makes no call rather than count it on this instance alone (the alert
        classifier's ``alerts.rpm``: a local share is only exact when every instance is
        degraded the whole time and ``ratelimit.instances`` is right). A timed-out step may
        still have counted in Redis: that errs on the safe side. Without Redis: ``acquire``."""
        if self._redis is None:
            return self._local.acquire_now(bucket, limit, cost)
        if not self._use_redis():
            return None
        try:
            async with asyncio.timeout(self._settings.redis_timeout):
                decision = await self._redis.acquire(bucket, limit, cost)
        except Exception as exc:  # noqa: BLE001 - never an exception to the caller
            self._failed(exc)
            return None
        self._recovered()
        return decision

    @property
    def retry_interval(self) -> float:
        """Seconds between two probes of Redis while degraded (``ratelimit.retry_interval``)."""
        return self._settings.retry_interval

    async def acquire_many(self, items: Sequence[tuple[str, Limit, int]]) -> list[Decision]:
        """All of ``items`` (bucket, limit, cost) or none: one Redis round trip (one script
        call) when healthy, else the local shares; the buckets change only if all allow."""
        if self._redis is None:  # the memory backend: no second call to go through
            return self._local.acquire_many_now(items)
        return (await self.admit(items, ()))[0]

    async def admit(
        self,
        items: Sequence[tuple[str, Limit, int]],
        asks: Sequence[BudgetAsk],
        instance: str = "",
        stale_ms: int = 30_000,
    ) -> tuple[list[Decision], list[BudgetVerdict] | None]:
        """``acquire_many`` plus the hard-stop budgets ``asks`` checked and held in the same
        script call (``RedisBackend.admit``). The verdicts are ``None`` when Redis did not
        answer (memory backend, or degraded): the caller checks the budgets in memory."""
        if self._redis is not None and self._use_redis():
            try:
                async with asyncio.timeout(self._settings.redis_timeout):
                    decisions, verdicts = await self._redis.admit(items, asks, instance, stale_ms)
            except Exception as exc:  # noqa: BLE001 - never an exception to the caller
                self._failed(exc)
            else:
                self._recovered()
                return decisions, verdicts
        if self._redis is None:
            return self._local.acquire_many_now(items), None
        shares = [(b, self._share(lim), c) for b, lim, c in items]
        return self._local.acquire_many_now(shares), None

    async def adjust(self, bucket: str, limit: Limit, delta: int) -> None:
        """Best effort: ``delta > 0`` consumes more (may go into debt), ``< 0`` refunds."""
        if delta == 0:
            return
        if self._redis is not None and self._use_redis():
            try:
                async with asyncio.timeout(self._settings.redis_timeout):
                    await self._redis.adjust(bucket, limit, delta)
            except Exception as exc:  # noqa: BLE001 - best effort, never raises
                self._failed(exc)
            else:
                self._recovered()
                return
        local = limit if self._redis is None else self._share(limit)
        self._local.adjust_now(bucket, local, delta)
