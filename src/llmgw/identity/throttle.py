"""Login throttling: failures counted per account, per IP and per (account, IP), with locks whose
length doubles per failure and is capped, so nobody can be locked out for good.

Three counters, checked before a password is verified and bumped after a failure:

- ``pair`` (account, IP): the guesser's own lock. After ``free`` failures each further failure
  locks the pair for ``base * 2**k`` seconds, at most ``cap``. It never touches the same account
  from another address, so an attacker cannot use it against the account's owner.
- ``ip``: one address guessing across many accounts.
- ``account`` (any address): many addresses guessing one account. Its cap is short (seconds),
  and an address that has logged in to the account successfully before (remembered for
  ``known_for`` seconds) is exempt, so a distributed attack slows strangers down but does not
  keep the owner out.

While a counter is locked, attempts are refused without being counted, so retrying does not
extend a lock; a counter is forgotten ``window`` seconds after its last lock ends, and a
successful login clears the pair and the account counters. ``MemoryStore`` keeps the counters in
this process (one instance); ``RedisStore`` shares them between instances with one Lua call per
step, timed by the Redis server's clock; when Redis cannot be reached it counts nothing and
locks nobody (one warning a minute), because refusing every sign-in would be worse. Keys are
SHA-256 digests of the account and address: no email lands in Redis.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import RedisError

__all__ = [
    "DEVICE_POLICY",
    "LOGIN_POLICIES",
    "LoginThrottle",
    "MemoryStore",
    "Policy",
    "RedisStore",
    "ThrottleStore",
    "Throttle",
]


@dataclass(frozen=True, slots=True)
class Policy:
    """``free`` failures, then locks of ``base * 2**k`` seconds up to ``cap``; counts are
    forgotten ``window`` seconds after the last lock ends."""

    name: str
    free: int
    base: float
    cap: float
    window: float

    def lock_after(self, failures: int) -> float:
        """How long the ``failures``-th failure locks (0 while still free)."""
        over = failures - self.free
        if over <= 0:
            return 0.0
        return float(min(self.base * 2.0 ** min(over - 1, 60), self.cap))


LOGIN_POLICIES: dict[str, Policy] = {
    "pair": Policy("pair", free=5, base=2.0, cap=900.0, window=3600.0),
    "ip": Policy("ip", free=30, base=2.0, cap=900.0, window=3600.0),
    "account": Policy("account", free=50, base=1.0, cap=30.0, window=3600.0),
}
"""The login counters' policies (see the module docstring)."""

DEVICE_POLICY = Policy("device", free=10, base=2.0, cap=900.0, window=3600.0)
"""Wrong user codes on the device page per address (RFC 8628 §5.1: the code has ~34.5 bits)."""

log = logging.getLogger("llmgw.identity")

KNOWN_FOR = 30 * 86400.0
"""How long an address that logged in successfully stays exempt from the account-wide lock."""


class ThrottleStore(Protocol):
    """Where the counters live."""

    async def locked_for(self, key: str) -> float:
        """Seconds until ``key`` is unlocked (0 when it is not locked)."""
        ...

    async def fail(self, key: str, policy: Policy) -> float:
        """Count one failure on ``key``; the lock it starts, in seconds (0: none)."""
        ...

    async def clear(self, key: str) -> None:
        """Forget ``key``'s failures."""
        ...

    async def mark(self, key: str, ttl: float) -> None:
        """Remember ``key`` for ``ttl`` seconds."""
        ...

    async def marked(self, key: str) -> bool:
        """Whether ``key`` is remembered."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryStore:
    """Counters in this process; ``clock`` (monotonic seconds) is injectable for tests.

    Bounded: at most ``max_keys`` counters (the oldest are dropped first, which can only make
    the throttle more lenient for a very busy attacker, never lock anyone out)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self._clock = clock
        self._max = max_keys
        # key -> [failures, last failure, locked until, window]
        self._counts: dict[str, list[float]] = {}
        self._marks: dict[str, float] = {}

    def _live(self, key: str) -> list[float] | None:
        entry = self._counts.get(key)
        if entry is not None and self._clock() > entry[2] + entry[3]:
            del self._counts[key]
            return None
        return entry

    async def locked_for(self, key: str) -> float:
        """Seconds until ``key`` is unlocked."""
        entry = self._live(key)
        return max(0.0, entry[2] - self._clock()) if entry is not None else 0.0

    async def fail(self, key: str, policy: Policy) -> float:
        """One more failure; the lock it starts."""
        now = self._clock()
        entry = self._live(key)
        if entry is None:
            if len(self._counts) >= self._max:
                self._counts.pop(next(iter(self._counts)))
            entry = self._counts[key] = [0.0, now, now, policy.window]
        entry[0] += 1
        entry[1] = now
        lock = policy.lock_after(int(entry[0]))
        entry[2] = now + lock
        return lock

    async def clear(self, key: str) -> None:
        """Forget ``key``."""
        self._counts.pop(key, None)

    async def mark(self, key: str, ttl: float) -> None:
        """Remember ``key`` for ``ttl`` seconds."""
        if len(self._marks) >= self._max:
            self._marks.pop(next(iter(self._marks)))
        self._marks[key] = self._clock() + ttl

    async def marked(self, key: str) -> bool:
        """Whether ``key`` is remembered."""
        until = self._marks.get(key)
        return until is not None and until > self._clock()

    async def aclose(self) -> None:
        """Nothing to release."""


# KEYS[1]: the counter hash. ARGV: free, base, cap, window, now ('' = the Redis server's TIME).
_FAIL_LUA = """
local now
if ARGV[5] ~= '' then now = tonumber(ARGV[5]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000 end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local over = n - tonumber(ARGV[1])
local lock = 0
if over > 0 then
  lock = math.min(tonumber(ARGV[2]) * 2 ^ math.min(over - 1, 60), tonumber(ARGV[3]))
end
redis.call('HSET', KEYS[1], 'until', string.format('%.6f', now + lock))
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(ARGV[4]) + lock) * 1000))
return string.format('%.6f', lock)
"""

_LOCKED_LUA = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000 end
local u = redis.call('HGET', KEYS[1], 'until')
if not u then return '0' end
local left = tonumber(u) - now
if left < 0 then left = 0 end
return string.format('%.6f', left)
"""


class RedisStore:
    """Counters in Redis, shared by every instance; one script call per step, Redis time.

    ``clock`` (wall seconds) replaces the server's clock in tests that must move time."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "llmgw:throttle",
        timeout: float = 0.5,
        clock: Callable[[], float] | None = None,
    ) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._client: Any = Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._prefix = prefix
        self._clock = clock
        self._warned = -1e9
        self._fail = self._client.register_script(_FAIL_LUA)
        self._locked = self._client.register_script(_LOCKED_LUA)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    def _now(self) -> str:
        return "" if self._clock is None else f"{self._clock():.6f}"

    async def locked_for(self, key: str) -> float:
        """Seconds until ``key`` is unlocked (0 when Redis cannot be reached: see ``_down``)."""
        try:
            return float(await self._locked(keys=[self._key(key)], args=[self._now()]))
        except (RedisError, OSError) as exc:
            self._down(exc)
            return 0.0

    async def fail(self, key: str, policy: Policy) -> float:
        """One more failure; the lock it starts (0 when Redis cannot be reached)."""
        args: list[str | int | float] = [
            policy.free,
            policy.base,
            policy.cap,
            policy.window,
            self._now(),
        ]
        try:
            return float(await self._fail(keys=[self._key(key)], args=args))
        except (RedisError, OSError) as exc:
            self._down(exc)
            return 0.0

    def _down(self, exc: BaseException) -> None:
        """Redis is unreachable: sign-in goes on unthrottled (every attempt still costs one
        argon2 verification) rather than locking every user out; said once per minute."""
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            log.warning("login throttling is off: Redis is unreachable (%s)", type(exc).__name__)

    async def clear(self, key: str) -> None:
        """Forget ``key``."""
        try:
            await self._client.delete(self._key(key))
        except (RedisError, OSError) as exc:
            self._down(exc)

    async def mark(self, key: str, ttl: float) -> None:
        """Remember ``key`` for ``ttl`` seconds."""
        try:
            await self._client.set(self._key(key), b"1", px=max(1, math.ceil(ttl * 1000)))
        except (RedisError, OSError) as exc:
            self._down(exc)

    async def marked(self, key: str) -> bool:
        """Whether ``key`` is remembered."""
        try:
            return bool(await self._client.exists(self._key(key)))
        except (RedisError, OSError) as exc:
            self._down(exc)
            return False

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class Throttle:
    """Named counters on a store: ``retry_after`` before an attempt, ``failed`` after a miss."""

    def __init__(self, store: ThrottleStore) -> None:
        self.store = store

    async def retry_after(self, keys: Iterable[str]) -> float:
        """The longest remaining lock among ``keys`` (0: go ahead)."""
        longest = 0.0
        for key in keys:
            longest = max(longest, await self.store.locked_for(key))
        return longest

    async def failed(self, pairs: Iterable[tuple[str, Policy]]) -> float:
        """Count a failure on each key; the longest lock started."""
        longest = 0.0
        for key, policy in pairs:
            longest = max(longest, await self.store.fail(key, policy))
        return longest


class LoginThrottle(Throttle):
    """The login page's counters (see the module docstring)."""

    def __init__(
        self,
        store: ThrottleStore,
        policies: dict[str, Policy] | None = None,
        *,
        known_for: float = KNOWN_FOR,
    ) -> None:
        super().__init__(store)
        self.policies = policies or LOGIN_POLICIES
        self.known_for = known_for

    @staticmethod
    def _keys(account: str, ip: str) -> dict[str, str]:
        account = account.strip().lower()
        return {
            "pair": "pair:" + _digest(account, ip),
            "ip": "ip:" + _digest(ip),
            "account": "acct:" + _digest(account),
            "known": "known:" + _digest(account, ip),
        }

    async def wait(self, account: str, ip: str) -> float:
        """Seconds this address must wait before trying ``account`` again (0: go ahead)."""
        k = self._keys(account, ip)
        names = [k["pair"], k["ip"]]
        if not await self.store.marked(k["known"]):
            names.append(k["account"])
        return await self.retry_after(names)

    async def failure(self, account: str, ip: str) -> float:
        """Count a failed login; the lock it starts for this address, in seconds."""
        k = self._keys(account, ip)
        return await self.failed(
            (k[name], self.policies[name]) for name in ("pair", "ip", "account")
        )

    async def success(self, account: str, ip: str) -> None:
        """A good password: clear this address's and the account's counters; remember the
        address as known for the account."""
        k = self._keys(account, ip)
        await self.store.clear(k["pair"])
        await self.store.clear(k["account"])
        await self.store.mark(k["known"], self.known_for)
