"""GCRA buckets shared through Redis: one Lua script does the whole step atomically on the server.

Key layout: ``llmgw:rl:{<32 hex of sha256(bucket)>}`` (the braces are a Cluster hash tag, so the
script's single key has one slot; raw key ids never reach Redis). Value: ``"<tat_us>:<frac>:<rate>"``
(the TAT as in ``gcra.Tat`` plus the rate ``frac`` is counted in), written with ``SET ... PX`` =
the time until the bucket is full again, so no key ever lives without a TTL and an idle bucket
simply disappears. Time comes from ``redis.call('TIME')``, so instances with skewed clocks agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from llmgw.ratelimit.gcra import DEBT_PERIODS, BudgetAsk, BudgetVerdict, Decision, Limit

__all__ = [
    "GCRA_LUA",
    "ADMIT_LUA",
    "KEY_PREFIX",
    "RedisBackend",
    "decision_from_reply",
    "script_args",
]

KEY_PREFIX = "llmgw:rl:"

# The same integer steps as gcra.gcra / gcra.gcra_charge, in Lua 5.1 doubles: every value is a
# whole number below 2**53 (Limit guarantees it), so + - * and floor(a/b) are exact and agree
# with Python's ints. ARGV: rate, period_us, cost, mode ('a' acquire, 'j' adjust), [now_us].
# ARGV[5] exists for the model test only; production calls never pass it. With an injected
# clock the TTL (real milliseconds) gets 600 s more, so keys do not expire between steps.
GCRA_LUA = """
local rate = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[5] then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local us, frac = 0, 0
local v = redis.call('GET', KEYS[1])
if v then
  local a, b, c = string.match(v, '^(%d+):(%d+):(%d+)$')
  if a then
    us = tonumber(a)
    frac = tonumber(b)
    if tonumber(c) ~= rate and frac > 0 then us = us + 1; frac = 0 end
  end
end
if us < now then us = now; frac = 0 end
local function add(u, f, units)
  local num = f + units * period
  local q = math.floor(num / rate)
  return u + q, num - q * rate
end
local allowed, ru, rf = 1, 0, 0
if ARGV[4] == 'j' or cost <= 0 then
  local bound = DEBT * rate
  if cost > bound then cost = bound elseif cost < -bound then cost = -bound end
  us, frac = add(us, frac, cost)
  if us < now then us = now; frac = 0 end
  local cap = now + DEBT * period
  if us > cap or (us == cap and frac > 0) then us = cap; frac = 0 end
else
  if cost > rate then cost = rate end
  local nu, nf = add(us, frac, cost)
  local d = nu - now
  if d < period or (d == period and nf == 0) then
    us, frac = nu, nf
  else
    allowed, ru, rf = 0, d - period, nf
  end
end
local d = us - now
if allowed == 1 then
  if d == 0 and frac == 0 then
    redis.call('DEL', KEYS[1])
  else
    local value = string.format('%.0f:%.0f:%.0f', us, frac, rate)
    local ttl = math.floor(d / 1000) + 1
    if ARGV[5] then ttl = ttl + TEST_PAD end
    redis.call('SET', KEYS[1], value, 'PX', ttl)
  end
end
local remaining = 0
if d < period then
  remaining = math.floor(((period - d) * rate - frac) / period)
  if remaining < 0 then remaining = 0 end
end
return {allowed, remaining, ru, rf, d, frac}
""".replace("DEBT", str(DEBT_PERIODS)).replace("TEST_PAD", "600000")


# All-or-nothing admission in one round trip: the GCRA buckets of a request (its key's, user's and
# model-version limits) and the hard-stop budgets it counts against (issue 13).
# KEYS: n bucket keys, then per budget its spend key (INCRBYFLOAT by the trackers' flush) and its
# holds hash (``h:<instance>`` = what that instance holds for requests in flight, ``t:<instance>``
# = when it last held or confirmed it, Redis ms). ARGV: n, m, now_us or '' (tests), instance,
# stale ms, then rate, period_us, cost per bucket, then amount, estimate, expire-at ms per budget.
# A bucket steps as in GCRA_LUA's acquire. A budget refuses with 2 when its spend has reached the
# amount, with 1 when spend + what every live instance holds + the estimate is over it (unless
# nothing is held: one request always goes); holds of an instance not seen for ``stale`` ms (it
# died) are dropped. The buckets are written and the estimates held only when everything allows.
# Reply: six integers per bucket as GCRA_LUA's, then per budget its status, spend and held (the
# two as strings: Lua numbers are replied as integers).
ADMIT_LUA = """
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local st = {}
local all = 1
for i = 1, n do
  local rate = tonumber(ARGV[3 * i + 3])
  local period = tonumber(ARGV[3 * i + 4])
  local cost = tonumber(ARGV[3 * i + 5])
  local us, frac = 0, 0
  local v = redis.call('GET', KEYS[i])
  if v then
    local a, b, c = string.match(v, '^(%d+):(%d+):(%d+)$')
    if a then
      us = tonumber(a)
      frac = tonumber(b)
      if tonumber(c) ~= rate and frac > 0 then us = us + 1; frac = 0 end
    end
  end
  if us < now then us = now; frac = 0 end
  if cost > rate then cost = rate end
  local num = frac + cost * period
  local q = math.floor(num / rate)
  local nu, nf = us + q, num - q * rate
  local d = nu - now
  if d < period or (d == period and nf == 0) then
    st[i] = {1, nu, nf, 0, 0, rate, period}
  else
    st[i] = {0, us, frac, d - period, nf, rate, period}
    all = 0
  end
end
local nowms = math.floor(now / 1000)
local stale = tonumber(ARGV[5])
local own = 'h:' .. ARGV[4]
local bst = {}
local base = 3 * n + 5
for j = 1, m do
  local hk = KEYS[n + 2 * j]
  local amount = tonumber(ARGV[base + 3 * j - 2])
  local est = tonumber(ARGV[base + 3 * j - 1])
  local spent = tonumber(redis.call('GET', KEYS[n + 2 * j - 1]) or '0') or 0
  local f = redis.call('HGETALL', hk)
  local vals = {}
  for i = 1, #f, 2 do vals[f[i]] = f[i + 1] end
  local held = 0
  for name, v in pairs(vals) do
    if string.sub(name, 1, 2) == 't:' then
      local h = 'h:' .. string.sub(name, 3)
      if nowms - (tonumber(v) or 0) > stale then
        redis.call('HDEL', hk, name, h)
      else
        local x = tonumber(vals[h] or '0') or 0
        if x > 0 then held = held + x end
      end
    end
  end
  local s = 0
  if spent >= amount then
    s = 2
  elseif held > 0 and spent + held + est > amount then
    s = 1
  end
  if s ~= 0 then all = 0 end
  bst[j] = {s, spent, held}
end
local out = {}
for i = 1, n do
  local s = st[i]
  local allowed, us, frac, ru, rf, rate, period = s[1], s[2], s[3], s[4], s[5], s[6], s[7]
  local d = us - now
  if all == 1 then
    if d == 0 and frac == 0 then
      redis.call('DEL', KEYS[i])
    else
      local ttl = math.floor(d / 1000) + 1
      if ARGV[3] ~= '' then ttl = ttl + TEST_PAD end
      redis.call('SET', KEYS[i], string.format('%.0f:%.0f:%.0f', us, frac, rate), 'PX', ttl)
    end
  end
  local remaining = 0
  if d < period then
    remaining = math.floor(((period - d) * rate - frac) / period)
    if remaining < 0 then remaining = 0 end
  end
  local o = 6 * (i - 1)
  out[o + 1] = allowed
  out[o + 2] = remaining
  out[o + 3] = ru
  out[o + 4] = rf
  out[o + 5] = d
  out[o + 6] = frac
end
for j = 1, m do
  local b = bst[j]
  if all == 1 then
    local hk = KEYS[n + 2 * j]
    redis.call('HINCRBYFLOAT', hk, own, ARGV[base + 3 * j - 1])
    redis.call('HSET', hk, 't:' .. ARGV[4], nowms)
    redis.call('PEXPIREAT', hk, ARGV[base + 3 * j])
  end
  local o = 6 * n + 3 * (j - 1)
  out[o + 1] = b[1]
  out[o + 2] = string.format('%.17g', b[2])
  out[o + 3] = string.format('%.17g', b[3])
end
return out
""".replace("TEST_PAD", "600000")


_new = tuple.__new__

KEYS_MEMO = 100_000
"""Bucket names whose Redis keys ``RedisBackend`` keeps (cleared when full)."""


def bucket_key(bucket: str, prefix: str = KEY_PREFIX) -> str:
    """The Redis key of ``bucket``: a hash-tagged digest, never the raw name."""
    return (
        prefix
        + "{"
        + hashlib.sha256(bucket.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        + "}"
    )


def script_args(limit: Limit, cost: int, mode: str, now_us: int | None = None) -> list[int | str]:
    """ARGV for ``GCRA_LUA``; ``now_us`` only in tests (production uses Redis TIME)."""
    args: list[int | str] = [limit.rate, limit.period_us, cost, mode]
    if now_us is not None:
        args.append(now_us)
    return args


def decision_from_reply(reply: list[Any], limit: Limit) -> Decision:
    """Turn the script's integers into a Decision exactly as ``gcra._decision`` does."""
    allowed, remaining, ru, rf, d, frac = map(int, reply)
    rate = limit.rate
    return _new(  # (allowed, limit, remaining, retry_after, reset_after), without Python code
        Decision,
        (
            allowed == 1,
            rate,
            remaining,
            0.0 if allowed else (ru + rf / rate) / 1_000_000,
            (d + frac / rate) / 1_000_000,
        ),
    )


class RedisBackend:
    """GCRA against one Redis; every call may raise redis/OS/timeout errors (the facade catches).

    The pool is bounded (``max_connections``; waiting for a free connection counts against
    ``timeout``), redis-py's own retries are off (a blackholed Redis would cost 3 timeouts), and
    the script runs by EVALSHA with a reload on NOSCRIPT (redis-py ``Script``).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.1,
        prefix: str = KEY_PREFIX,
        max_connections: int = 64,
    ) -> None:
        self.prefix = prefix
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        # from_pool: the client owns the pool, so aclose() disconnects its connections too
        # (Redis(connection_pool=pool) leaves them open: one unclosed socket per connection).
        self._client: Redis = Redis.from_pool(pool)
        self._script = self._client.register_script(GCRA_LUA)
        self._admit = self._client.register_script(ADMIT_LUA)
        self._keys: dict[str, str] = {}
        """bucket -> its Redis key: a request names the same few buckets every time, and a
        SHA-256 per bucket per request is ~1 µs each."""

    def key(self, bucket: str) -> str:
        """The Redis key holding ``bucket`` (memoised, at most ``KEYS_MEMO`` of them)."""
        found = self._keys.get(bucket)
        if found is None:
            if len(self._keys) >= KEYS_MEMO:
                self._keys.clear()
            found = self._keys[bucket] = bucket_key(bucket, self.prefix)
        return found

    async def acquire(
        self, bucket: str, limit: Limit, cost: int = 1, *, now_us: int | None = None
    ) -> Decision:
        """One GCRA step on the server (``cost <= 0`` refunds)."""
        reply = await self._script(
            keys=[self.key(bucket)], args=script_args(limit, cost, "a", now_us)
        )
        return decision_from_reply(reply, limit)

    async def acquire_many(
        self, items: Sequence[tuple[str, Limit, int]], *, now_us: int | None = None
    ) -> list[Decision]:
        """All of ``items`` (bucket, limit, cost) or none, atomically, in one round trip."""
        return (await self.admit(items, (), "", now_us=now_us))[0]

    async def admit(
        self,
        items: Sequence[tuple[str, Limit, int]],
        asks: Sequence[BudgetAsk],
        instance: str,
        stale_ms: int = 30_000,
        *,
        now_us: int | None = None,
    ) -> tuple[list[Decision], list[BudgetVerdict]]:
        """``items`` (bucket, limit, cost) and the hard-stop budgets ``asks``, all or nothing,
        atomically, in one round trip (``ADMIT_LUA``): each bucket's decision, and each
        budget's (status, shared spend, held by all instances) with status 0 (held), 1 (what
        is in flight may cost the rest) or 2 (spent)."""
        memo = self._keys
        keys = [memo.get(b) or self.key(b) for b, _, _ in items]
        args: list[int | str | float] = [
            len(items), len(asks), "" if now_us is None else now_us, instance, stale_ms
        ]  # fmt: skip
        for _, limit, cost in items:
            args += [limit.rate, limit.period_us, cost]
        for a in asks:
            keys += [a.spend_key, a.holds_key]
            args += [repr(a.amount), repr(a.estimate), a.expire_at_ms]
        reply = await self._admit(keys=keys, args=args)
        n = len(items)
        decisions = [
            decision_from_reply(reply[6 * i : 6 * i + 6], limit)
            for i, (_, limit, _) in enumerate(items)
        ]
        verdicts = [
            _new(BudgetVerdict, (int(reply[o]), float(reply[o + 1]), float(reply[o + 2])))
            for o in range(6 * n, 6 * n + 3 * len(asks), 3)
        ]
        return decisions, verdicts

    async def adjust(
        self, bucket: str, limit: Limit, delta: int, *, now_us: int | None = None
    ) -> None:
        """Move the bucket without a check: ``delta > 0`` consumes (debt), ``< 0`` refunds."""
        if delta:
            await self._script(keys=[self.key(bucket)], args=script_args(limit, delta, "j", now_us))

    async def ping(self) -> None:
        """Round trip to the server (start-up check)."""
        await self._client.ping()

    async def aclose(self) -> None:
        """Close the pool's connections."""
        await self._client.aclose()
