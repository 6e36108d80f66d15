"""GCRA (generic cell rate algorithm): the pure reference step and the in-process ``MemoryLimiter``.

A bucket is one number, its *theoretical arrival time* (TAT). With emission interval
``T = period / rate`` and tolerance ``tau = period - T`` a fresh bucket admits ``rate`` units at
once (capacity == rate) and refills continuously at ``rate / period``. A request of ``cost``
units is admitted when ``max(tat, now) + cost*T - now <= period``.

Arithmetic is exact: time is whole microseconds and the TAT is ``us + frac/rate`` microseconds
(``Tat``), so ``cost*T`` never rounds and "exactly ``rate`` admitted" holds at any epoch (float
seconds near 1.7e9 drift by an ulp per addition and would refuse the last unit). The Redis Lua
script (``redis_backend``) performs the same integer steps in doubles; every intermediate stays
below 2**53, which ``Limit`` guarantees by refusing ``rate * period_us >= 2**51`` (60 s: 37M units).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "BudgetAsk",
    "BudgetVerdict",
    "Decision",
    "Limit",
    "MemoryLimiter",
    "Tat",
    "gcra",
    "gcra_charge",
]

_US = 1_000_000
_MAX_PRODUCT = 2**51  # x2 for debt and refunds stays below 2**53
# How far ``adjust`` may push a bucket into debt: at most this many periods ahead of now.
DEBT_PERIODS = 2


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` units per ``period`` seconds; capacity == rate (a fresh bucket admits ``rate`` at once)."""

    rate: int
    period: float
    period_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.rate < 1:
            raise ValueError(f"rate must be >= 1, got {self.rate}")
        period_us = round(self.period * _US)
        if period_us < 1:
            raise ValueError(f"period must be at least 1 microsecond, got {self.period}")
        if self.rate * period_us >= _MAX_PRODUCT:
            raise ValueError(
                f"rate * period too large for exact arithmetic ({self.rate}/{self.period}s)"
            )
        object.__setattr__(self, "period_us", period_us)


class Decision(NamedTuple):
    """The answer for one acquire (a ``NamedTuple``: a request makes one per bucket, and a
    frozen dataclass costs ~0.7 µs more to build)."""

    allowed: bool
    limit: int
    """== Limit.rate"""
    remaining: int
    """Whole units still admissible right now after this decision (>= 0)."""
    retry_after: float
    """Seconds until ``cost`` units would be admitted; 0.0 when allowed."""
    reset_after: float
    """Seconds until the bucket is full again (remaining == limit)."""


class BudgetAsk(NamedTuple):
    """A hard-stop budget checked and held in the same Redis call as the buckets
    (``RateLimiter.admit``): its keys, its amount, and the request's estimated cost."""

    spend_key: str
    holds_key: str
    amount: float
    estimate: float
    expire_at_ms: int


class BudgetVerdict(NamedTuple):
    """Redis's answer for one ``BudgetAsk``: ``status`` 0 (held), 1 (requests in flight may
    cost the rest) or 2 (spent); the shared spend and what all instances hold."""

    status: int
    spent: float
    held: float


class Tat(NamedTuple):
    """A theoretical arrival time: ``us + frac / rate`` microseconds since the epoch."""

    us: int
    frac: int
    """0 <= frac < rate (the rate of the Limit the TAT belongs to)."""


def _add(tat: Tat, units: int, limit: Limit) -> Tat:
    """``tat + units * T`` exactly (units may be negative)."""
    q, frac = divmod(tat.frac + units * limit.period_us, limit.rate)
    return Tat(tat.us + q, frac)


def _decision(allowed: bool, tat: Tat, now_us: int, limit: Limit, retry: Tat | None) -> Decision:
    """Build the Decision from the bucket state after the step (``tat >= now``)."""
    rate, period_us = limit.rate, limit.period_us
    d = tat.us - now_us
    remaining = ((period_us - d) * rate - tat.frac) // period_us if d < period_us else 0
    retry_after = 0.0
    if retry is not None:
        retry_after = (retry.us + retry.frac / rate) / _US
    return Decision(
        allowed=allowed,
        limit=rate,
        remaining=max(0, remaining),
        retry_after=retry_after,
        reset_after=(d + tat.frac / rate) / _US,
    )


def gcra_charge(tat: Tat, now_us: int, limit: Limit, delta: int) -> Tat:
    """Move a bucket without a check: ``delta > 0`` consumes (may go into debt, at most
    ``DEBT_PERIODS`` periods ahead), ``delta < 0`` refunds (never below ``now``)."""
    if tat.us < now_us:
        tat = Tat(now_us, 0)
    bound = DEBT_PERIODS * limit.rate  # more than this either way only hits the floor or the cap
    delta = max(-bound, min(delta, bound))
    new = _add(tat, delta, limit)
    if new.us < now_us:
        return Tat(now_us, 0)
    cap = now_us + DEBT_PERIODS * limit.period_us
    if new.us > cap or (new.us == cap and new.frac > 0):
        return Tat(cap, 0)
    return new


def gcra(tat: Tat, now_us: int, limit: Limit, cost: int) -> tuple[Decision, Tat]:
    """One GCRA step: the decision and the new TAT (unchanged when refused).

    ``tat`` of a bucket never seen is ``Tat(0, 0)`` (anything in the past). ``cost`` is clamped
    to ``limit.rate`` so it can always pass eventually; ``cost <= 0`` is an adjustment (refund):
    always allowed, the TAT moves back by ``|cost| * T`` but never below ``now``.
    """
    if cost <= 0:
        new = gcra_charge(tat, now_us, limit, cost)
        return _decision(True, new, now_us, limit, None), new
    if tat.us < now_us:
        tat = Tat(now_us, 0)
    rate, period_us = limit.rate, limit.period_us
    # _add and _decision inlined on the admitted path (the same integer steps): each bucket of
    # a request pays this, so a user or version quota costs one such step, not three calls.
    q, frac = divmod(tat.frac + (cost if cost < rate else rate) * period_us, rate)
    d = tat.us + q - now_us
    if d < period_us:
        remaining = ((period_us - d) * rate - frac) // period_us
        new = Tat(tat.us + q, frac)
        return Decision(
            True, rate, remaining if remaining > 0 else 0, 0.0, (d + frac / rate) / _US
        ), new
    if d == period_us and frac == 0:
        new = Tat(tat.us + q, 0)
        return Decision(True, rate, 0, 0.0, d / _US), new
    return _decision(False, tat, now_us, limit, Tat(d - period_us, frac)), tat


_NEVER = Tat(0, 0)
_new = tuple.__new__
"""``_new(Decision, (...))`` builds a ``NamedTuple`` without its ``__new__``, which is Python
code (a frame per call: about twice the cost of the tuple itself)."""


class MemoryLimiter:
    """GCRA buckets in a dict for one process; asyncio-safe because a step has no awaits.

    The dict is bounded: past ``max_buckets`` the buckets that are full again (TAT in the past,
    the same as absent) are dropped, then if still needed those closest to full.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, max_buckets: int = 100_000
    ) -> None:
        self._clock = clock
        self._max = max(1, max_buckets)
        # bucket -> (tat.us, tat.frac, rate the frac is in): a plain tuple, one per bucket
        # stepped (a ``Tat`` in a pair cost two objects, one of them through Python code)
        self._buckets: dict[str, tuple[int, int, int]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _now_us(self) -> int:
        return int(self._clock() * _US)

    def _get(self, bucket: str, limit: Limit) -> Tat:
        entry = self._buckets.get(bucket)
        if entry is None:
            return _NEVER
        us, frac, rate = entry
        if rate != limit.rate and frac:  # limit changed: frac was in other units; round up
            return Tat(us + 1, 0)
        return Tat(us, frac)

    def _put(self, bucket: str, entry: tuple[int, int, int], now_us: int) -> None:
        if bucket not in self._buckets and len(self._buckets) >= self._max:
            self._evict(now_us)
        self._buckets[bucket] = entry

    def _evict(self, now_us: int) -> None:
        buckets = self._buckets
        for name in [n for n, e in buckets.items() if e[0] < now_us]:
            del buckets[name]
        if len(buckets) >= self._max:  # all active: drop the ~10% closest to full
            drop = max(1, len(buckets) - (self._max * 9) // 10)
            for name in sorted(buckets, key=lambda n: buckets[n][:2])[:drop]:
                del buckets[name]

    async def acquire(self, bucket: str, limit: Limit, cost: int = 1) -> Decision:
        """Take ``cost`` units from ``bucket`` if they are available."""
        return self.acquire_many_now(((bucket, limit, cost),))[0]

    def acquire_now(self, bucket: str, limit: Limit, cost: int = 1) -> Decision:
        """``acquire`` without the coroutine (for callers that are not async)."""
        return self.acquire_many_now(((bucket, limit, cost),))[0]

    def acquire_many_now(self, items: Sequence[tuple[str, Limit, int]]) -> list[Decision]:
        """All of ``items`` (bucket, limit, cost) or none: each bucket's decision; the buckets
        change only when every one allows (a refused request costs no bucket anything).

        ``gcra``'s step inlined (the same integer steps; ``gcra`` stays the reference the tests
        and the Redis script are checked against): a request steps each of its buckets here,
        so an extra bucket (a user's or a version's quota) costs the arithmetic and two tuples,
        no call, no ``Tat``."""
        return self._many(items, int(self._clock() * _US))

    def tightest_now(self, items: Sequence[tuple[str, Limit, int]]) -> Decision | list[Decision]:
        """``acquire_many_now`` for the request path, where only the tightest bucket is
        reported: when every bucket allows, the buckets are stepped and the decision of the one
        with the fewest units left (the first of equals) is returned, the only ``Decision``
        built; when one refuses nothing changes and every bucket's decision is returned (a
        list, as ``acquire_many_now``'s at the same instant) for the refusal. ``items`` is not
        empty and every ``cost`` >= 1."""
        now_us = int(self._clock() * _US)
        buckets = self._buckets
        news: list[tuple[str, tuple[int, int, int]]] = []
        least = -1
        best = (0, 0, 0)
        for bucket, limit, cost in items:
            rate = limit.rate
            entry = buckets.get(bucket)
            if entry is None or entry[0] < now_us:
                us, frac = now_us, 0
            else:
                us, frac = entry[0], entry[1]
                if frac and entry[2] != rate:  # limit changed: frac in other units; round up
                    us, frac = us + 1, 0
            period_us = limit.period_us
            q, f = divmod(frac + (cost if cost < rate else rate) * period_us, rate)
            ahead = us + q - now_us
            if ahead < period_us:
                left = ((period_us - ahead) * rate - f) // period_us
                if left < 0:
                    left = 0
            elif ahead == period_us and f == 0:
                left = 0
            else:  # refused: the decisions of every bucket, nothing stepped
                return self._many(items, now_us)
            if least < 0 or left < least:
                least = left
                best = (rate, ahead, f)
            news.append((bucket, (us + q, f, rate)))
        cap = self._max
        for bucket, entry in news:
            if bucket in buckets or len(buckets) < cap:
                buckets[bucket] = entry
            else:
                self._put(bucket, entry, now_us)
        rate, ahead, f = best
        return _new(Decision, (True, rate, least, 0.0, (ahead + f / rate) / _US))

    def _many(self, items: Sequence[tuple[str, Limit, int]], now_us: int) -> list[Decision]:
        """``acquire_many_now`` at ``now_us``."""
        buckets = self._buckets
        decisions: list[Decision] = []
        news: list[tuple[str, tuple[int, int, int]]] = []
        allowed = True
        for bucket, limit, cost in items:
            rate = limit.rate
            entry = buckets.get(bucket)
            if entry is None or entry[0] < now_us:
                us, frac = now_us, 0
            else:
                us, frac = entry[0], entry[1]
                if frac and entry[2] != rate:  # limit changed: frac in other units; round up
                    us, frac = us + 1, 0
            if cost <= 0:  # an adjustment through acquire: the reference step
                d, tat = gcra(Tat(us, frac), now_us, limit, cost)
                decisions.append(d)
                news.append((bucket, (tat.us, tat.frac, rate)))
                continue
            period_us = limit.period_us
            q, f = divmod(frac + (cost if cost < rate else rate) * period_us, rate)
            ahead = us + q - now_us
            if ahead < period_us:
                left = ((period_us - ahead) * rate - f) // period_us
                decisions.append(
                    _new(
                        Decision,
                        (True, rate, left if left > 0 else 0, 0.0, (ahead + f / rate) / _US),
                    )
                )
                news.append((bucket, (us + q, f, rate)))
            elif ahead == period_us and f == 0:
                decisions.append(_new(Decision, (True, rate, 0, 0.0, ahead / _US)))
                news.append((bucket, (us + q, 0, rate)))
            else:
                allowed = False
                retry = Tat(ahead - period_us, f)
                decisions.append(_decision(False, Tat(us, frac), now_us, limit, retry))
        if allowed:
            cap = self._max
            for bucket, entry in news:
                if bucket in buckets or len(buckets) < cap:
                    buckets[bucket] = entry
                else:
                    self._put(bucket, entry, now_us)
        return decisions

    async def adjust(self, bucket: str, limit: Limit, delta: int) -> None:
        """``delta > 0``: consume more (may go into debt); ``delta < 0``: refund."""
        self.adjust_now(bucket, limit, delta)

    def adjust_now(self, bucket: str, limit: Limit, delta: int) -> None:
        """``adjust`` without the coroutine."""
        if delta == 0:
            return
        now_us = self._now_us()
        new = gcra_charge(self._get(bucket, limit), now_us, limit, delta)
        if new.us <= now_us and new.frac == 0:
            self._buckets.pop(bucket, None)  # full again: same as absent
        else:
            self._put(bucket, (new.us, new.frac, limit.rate), now_us)
