"""CPU cost of budgets and quotas on the request path, against today's path in the same run.

Issue 13's target: budget and per-user checks add <= 10 µs per request in memory, and at most
one Redis round trip shared with the rate limiter's. In one process, with the memory limiter,
each case runs ``N`` requests' worth of the gateway's own calls (``KeyLimits.admit``, the grant's
settlement, ``BudgetTracker.charge`` where the gateway calls it) and reports CPU µs per request
(``time.process_time``), best of ``--repeat`` interleaved rounds:

- ``plain``: a key without limits, no budget or quota anywhere (today: one attribute check);
- ``plain+budgets``: the same key while other subjects have budgets and quotas (the new checks);
- ``rpm``: a key with rpm (today's limited path: one bucket);
- ``rpm+user+budget``: the same key, plus a user quota (rpm) and a hard-stop budget on the key
  and one on its user, and the cost charged to both: what a budgeted, quota'd request pays.

With Redis (``--redis URL``) it also counts the script calls per admitted request: a key with
rpm and tpm and a user quota makes one ``EVALSHA`` (``GCRA_MANY_LUA``), as today's single-bucket
key does.

    .venv/bin/python tests/perf/bench_budgets.py [--n 50000] [--repeat 5] [--redis redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from llmgw.budgets.periods import period_bounds
from llmgw.budgets.tracker import BudgetTracker, Rule
from llmgw.config import BudgetSettings, NotifySettings, RateLimitSettings
from llmgw.notify import Notifier
from llmgw.ratelimit import RateLimiter
from llmgw.routing.resolve import Target
from llmgw.server.quotas import QuotaBook
from llmgw.server.ratelimits import KeyLimits

BIG = 2_000_000_000


_PRICES: dict[tuple[Any, ...], Decimal] = {}


def _price(provider: str, model: str, prompt: int, completion: int, version: str | None) -> Decimal:
    """Like ``Resolver.cost``: memoised per (provider, model, version, tokens)."""
    k = (provider, model, version, prompt, completion)
    found = _PRICES.get(k)
    if found is None:
        found = _PRICES[k] = Decimal(prompt + completion) * Decimal("0.0000006")
    return found


def _rule(subject: uuid.UUID, scope: str) -> Rule:
    start, end = period_bounds("day", datetime.now(UTC))
    return Rule(
        id=uuid.uuid4(), scope=scope, subject_id=subject, period="day", currency="USD",
        amount=1e12, thresholds=[80, 100], hard_stop=True, start=start, end=end,
        end_ts=end.timestamp(), label="bench",
    )  # fmt: skip


def _setup(
    limiter: RateLimiter, with_budgets: bool, user_id: uuid.UUID
) -> tuple[KeyLimits, BudgetTracker]:
    limits = KeyLimits(limiter)
    tracker = BudgetTracker(
        BudgetSettings(),
        engine=None,  # type: ignore[arg-type]  # never reached: no refresh or reconcile runs
        notifier=Notifier(NotifySettings()),
        currencies={"openai": "USD"},
        cost=_price,
    )
    limits.budgets = tracker
    if with_budgets:
        quotas = [SimpleNamespace(scope="user", subject_id=user_id, model="", rpm=BIG, tpm=None)]
        limits.set_quotas(QuotaBook(quotas), True)
        tracker.hard = True
    return limits, tracker


async def _case(
    limits: KeyLimits, tracker: BudgetTracker, key: Any, target: Target, n: int
) -> float:
    t0 = time.process_time()
    for _ in range(n):
        grant = None
        if key.rpm or key.tpm or limits.extra:
            grant = await limits.admit(key, 50, target)
        if grant is not None:
            grant.settle(40)
        if tracker.rules:
            tracker.charge(key.id, key.user_id, "openai", 0.001)
    cpu = time.process_time() - t0
    if tracker._timer is not None:
        tracker._timer.cancel()
        tracker._timer = None
    return cpu / n * 1e6


async def main(n: int, repeat: int, redis: str | None) -> None:
    target = Target("openai", "gpt-4o-mini")
    user_id = uuid.uuid4()
    plain = SimpleNamespace(id=uuid.uuid4(), user_id=user_id, rpm=None, tpm=None, prefix="p")
    limited = SimpleNamespace(id=uuid.uuid4(), user_id=user_id, rpm=BIG, tpm=None, prefix="l")
    best: dict[str, float] = {}
    for _ in range(repeat):
        for name, key, budgets in (
            ("plain", plain, False),
            ("plain+budgets", plain, "others"),
            ("rpm", limited, False),
            ("rpm+budget", limited, "budget"),
            ("rpm+user", limited, "user"),
            ("rpm+user+budget", limited, True),
        ):
            limiter = RateLimiter(RateLimitSettings(backend="memory"), None)
            limits, tracker = _setup(
                limiter, bool(budgets), user_id if budgets is True else uuid.uuid4()
            )
            if budgets is True:
                rules = {key.id: [_rule(key.id, "key")], user_id: [_rule(user_id, "user")]}
            elif budgets:
                other = uuid.uuid4()
                rules = {other: [_rule(other, "key")]}
            else:
                rules = {}
            tracker.rules = rules
            tracker._by_id = {(r.id, r.start): r for rs in rules.values() for r in rs}
            us = await _case(limits, tracker, key, target, n)
            best[name] = min(best.get(name, 1e9), us)
            await limits.wait_settled()
    print(f"CPU µs per request, best of {repeat} rounds of {n} (memory limiter, one process):")
    for name, us in best.items():
        print(f"  {name:<18} {us:7.2f}")
    print(
        f"  added for a key with no limits while budgets exist: {best['plain+budgets'] - best['plain']:+.2f} µs"
    )
    print(
        f"  added by a user quota and two budgets to a limited key: {best['rpm+user+budget'] - best['rpm']:+.2f} µs"
    )
    if redis:
        await _redis_calls(redis, target, user_id)


async def _script_calls(probe: Any) -> int:
    stats = await probe.info("commandstats")
    return sum(
        int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
    )


async def _redis_calls(url: str, target: Target, user_id: uuid.UUID) -> None:
    from redis.asyncio import Redis

    probe = Redis.from_url(url)
    limiter = RateLimiter(
        RateLimitSettings(backend="redis", redis_timeout=2.0),
        url,
        key_prefix=f"bench:{uuid.uuid4().hex[:6]}:",
    )
    await limiter.start()
    for label, key, budgets in (
        (
            "today: rpm only",
            SimpleNamespace(id=uuid.uuid4(), user_id=None, rpm=BIG, tpm=None, prefix="a"),
            False,
        ),
        (
            "rpm+tpm+user quota+budget",
            SimpleNamespace(id=uuid.uuid4(), user_id=user_id, rpm=BIG, tpm=BIG, prefix="b"),
            True,
        ),
    ):
        limits, tracker = _setup(limiter, budgets, user_id)
        if budgets:
            tracker.rules = {key.id: [_rule(key.id, "key")]}
            tracker._by_id = {(r.id, r.start): r for rs in tracker.rules.values() for r in rs}
        before = await _script_calls(probe)
        for _ in range(100):
            await limits.admit(key, 50, target)
        after = await _script_calls(probe)
        print(
            f"  Redis round trips (script calls) per admitted request, {label}: {(after - before) / 100:.2f}"
        )
    await limiter.aclose()
    await probe.aclose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--redis", default=None, help="also count Redis commands per request")
    a = ap.parse_args()
    asyncio.run(main(a.n, a.repeat, a.redis))
