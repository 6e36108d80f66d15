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
  and one on its user, and the cost charged to both: what a budgeted, quota'd request pays;
- ``rpm+all``: that, plus a quota on the key's model version (issue 13's whole list).

``--baseline REV`` runs this same script (these cases, this workload) on a ``git archive``
snapshot of REV and of HEAD in separate processes, interleaved round by round (one pinned core
with ``--cpu``), and prints both columns and the difference: before and after in one run.

With Redis (``--redis URL``) it also counts the round trips per admitted request (commands and
pipelines sent on the connections): a key with rpm and tpm, a user quota and hard-stop budgets
on the key and its user makes one (``ADMIT_LUA``: buckets and budgets in one script call), as
today's single-bucket key does.

    .venv/bin/python tests/perf/bench_budgets.py [--n 50000] [--repeat 5] [--redis redis://127.0.0.1:6379/15]
    .venv/bin/python tests/perf/bench_budgets.py --baseline main~3 --n 20000 --repeat 5 --cpu 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
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
    limiter: RateLimiter,
    quotas: tuple[str, ...],
    hard: bool,
    user_id: uuid.UUID,
    key_id: Any = None,
) -> tuple[KeyLimits, BudgetTracker]:
    """``KeyLimits`` and a ``BudgetTracker`` as the gateway wires them, with ``quotas``:
    ``user`` (on ``user_id``), ``version`` (on ``key_id``'s model), ``other`` (another user's)."""
    limits = KeyLimits(limiter)
    tracker = BudgetTracker(
        BudgetSettings(),
        engine=None,  # type: ignore[arg-type]  # never reached: no refresh or reconcile runs
        notifier=Notifier(NotifySettings()),
        currencies={"openai": "USD"},
        cost=_price,
    )
    limits.budgets = tracker
    rows = []
    for q in quotas:
        if q == "version":
            rows.append(
                SimpleNamespace(
                    scope="key", subject_id=key_id, model="gpt-4o-mini", rpm=BIG, tpm=None
                )
            )
        else:
            who = user_id if q == "user" else uuid.uuid4()
            rows.append(SimpleNamespace(scope="user", subject_id=who, model="", rpm=BIG, tpm=None))
    if rows or hard:
        limits.set_quotas(QuotaBook(rows), hard)
        tracker.hard = hard
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


CASES: dict[str, tuple[bool, tuple[str, ...], str]] = {
    # name: (the key has rpm, quotas, whose hard-stop budgets)
    "plain": (False, (), ""),
    "plain+budgets": (False, ("other",), "others"),
    "rpm": (True, (), ""),
    "rpm+budget": (True, (), "key"),
    "rpm+user": (True, ("user",), ""),
    "rpm+user+budget": (True, ("user",), "key,user"),
    "rpm+all": (True, ("user", "version"), "key,user"),
}


async def run(n: int, repeat: int) -> dict[str, float]:
    """Best CPU µs per request of each case over ``repeat`` interleaved rounds."""
    target = Target("openai", "gpt-4o-mini")
    user_id = uuid.uuid4()
    plain = SimpleNamespace(id=uuid.uuid4(), user_id=user_id, rpm=None, tpm=None, prefix="p")
    limited = SimpleNamespace(id=uuid.uuid4(), user_id=user_id, rpm=BIG, tpm=None, prefix="l")
    best: dict[str, float] = {}
    for _ in range(repeat):
        for name, (rpm, quotas, budgets) in CASES.items():
            key = limited if rpm else plain
            limiter = RateLimiter(RateLimitSettings(backend="memory"), None)
            limits, tracker = _setup(limiter, quotas, bool(budgets), user_id, key.id)
            rules: dict[Any, list[Rule]] = {}
            if budgets == "others":
                other = uuid.uuid4()
                rules[other] = [_rule(other, "key")]
            if "key" in budgets:
                rules[key.id] = [_rule(key.id, "key")]
            if "user" in budgets:
                rules[user_id] = [_rule(user_id, "user")]
            tracker.rules = rules
            tracker._by_id = {(r.id, r.start): r for rs in rules.values() for r in rs}
            us = await _case(limits, tracker, key, target, n)
            best[name] = min(best.get(name, 1e9), us)
            await limits.wait_settled()
    return best


async def main(n: int, repeat: int, redis: str | None) -> None:
    best = await run(n, repeat)
    print(f"CPU µs per request, best of {repeat} rounds of {n} (memory limiter, one process):")
    for name, us in best.items():
        print(f"  {name:<18} {us:7.2f}")
    print(
        f"  added for a key with no limits while budgets exist: {best['plain+budgets'] - best['plain']:+.2f} µs"
    )
    print(
        f"  added by a user quota and two budgets to a limited key: {best['rpm+user+budget'] - best['rpm']:+.2f} µs"
    )
    print(
        f"  added by user and version quotas and two budgets: {best['rpm+all'] - best['rpm']:+.2f} µs"
    )
    if redis:
        await _redis_calls(redis, Target("openai", "gpt-4o-mini"), uuid.uuid4())


def paired(baseline: str, n: int, repeat: int, cpu: int | None) -> None:
    """This script on snapshots of ``baseline`` and HEAD, interleaved round by round."""
    sys.path.insert(0, str(Path(__file__).parent))
    import benchlib as bl

    with tempfile.TemporaryDirectory(prefix="bench-budgets-") as tmp:
        srcs = {
            "baseline": bl.snapshot(Path(tmp), baseline),
            "head": bl.snapshot(Path(tmp), "HEAD"),
        }
        best: dict[str, dict[str, float]] = {"baseline": {}, "head": {}}
        for _ in range(repeat):
            for side, (src, _) in srcs.items():
                argv = [sys.executable, "-P", __file__, "--n", str(n), "--repeat", "1", "--json"]
                if cpu is not None:
                    argv = ["taskset", "-c", str(cpu), *argv]
                env = dict(os.environ, PYTHONPATH=str(src))
                out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
                for case, us in json.loads(out.stdout.splitlines()[-1]).items():
                    best[side][case] = min(best[side].get(case, 1e9), us)
        print(f"CPU µs per request, best of {repeat} interleaved rounds of {n} (memory limiter):")
        print(f"  baseline {srcs['baseline'][1]}")
        print(f"  head     {srcs['head'][1]}")
        print(f"  {'case':<18} {'baseline':>9} {'head':>9} {'change':>8}")
        for case in CASES:
            b, h = best["baseline"].get(case), best["head"].get(case)
            if b is None or h is None:
                print(f"  {case:<18} {'-' if b is None else f'{b:9.2f}':>9} {h or 0:9.2f}")
                continue
            print(f"  {case:<18} {b:9.2f} {h:9.2f} {h - b:+8.2f}")
        for side in ("baseline", "head"):
            rows = best[side]
            if "rpm" in rows:
                added = {
                    c: rows[c] - rows["rpm"] for c in ("rpm+user+budget", "rpm+all") if c in rows
                }
                print(
                    f"  {side}: added over rpm "
                    + ", ".join(f"{c} {v:+.2f}" for c, v in added.items())
                )


async def _redis_calls(url: str, target: Target, user_id: uuid.UUID) -> None:
    """Round trips per admitted request, counted on the connections (every command or pipeline
    sent); the budgets' flush (one pipeline per 0.2 s, off the request path) is not run."""
    from redis.asyncio.connection import AbstractConnection

    tag = uuid.uuid4().hex[:6]
    limiter = RateLimiter(
        RateLimitSettings(backend="redis", redis_timeout=2.0), url, key_prefix=f"bench:{tag}:"
    )
    await limiter.start()
    sent = 0
    real = AbstractConnection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await real(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        for label, key, budgets in (
            (
                "today: rpm only",
                SimpleNamespace(id=uuid.uuid4(), user_id=None, rpm=BIG, tpm=None, prefix="a"),
                False,
            ),
            (
                "rpm+tpm+user quota+budgets on key and user",
                SimpleNamespace(id=uuid.uuid4(), user_id=user_id, rpm=BIG, tpm=BIG, prefix="b"),
                True,
            ),
        ):
            limits, tracker = _setup(limiter, ("user",) if budgets else (), budgets, user_id)
            tracker._prefix = f"bench:{tag}:budget:"
            if budgets:
                tracker.rules = {
                    key.id: [_rule(key.id, "key")],
                    user_id: [_rule(user_id, "user")],
                }
                tracker._by_id = {(r.id, r.start): r for rs in tracker.rules.values() for r in rs}
            before = sent
            for _ in range(100):
                grant = await limits.admit(key, 50, target)
                assert grant is not None
                assert not budgets or grant.holds, "the budgets were held"
            print(f"  Redis round trips per admitted request, {label}: {(sent - before) / 100:.2f}")
            if tracker._timer is not None:
                tracker._timer.cancel()
    finally:
        AbstractConnection.send_packed_command = real  # type: ignore[method-assign]
        await limiter.aclose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--redis", default=None, help="also count Redis commands per request")
    ap.add_argument("--baseline", default=None, help="git revision to compare with, same run")
    ap.add_argument("--cpu", type=int, default=None, help="pin the measured processes (taskset)")
    ap.add_argument("--json", action="store_true", help="print one JSON line of the results")
    a = ap.parse_args()
    if a.baseline:
        paired(a.baseline, a.n, a.repeat, a.cpu)
    elif a.json:
        print(json.dumps(asyncio.run(run(a.n, a.repeat))))
    else:
        asyncio.run(main(a.n, a.repeat, a.redis))
