"""The budgets' hard stop holds the estimated cost of the requests in flight (issue 13): each
instance admits requests while what it holds fits its share of what is left, one always while
it holds nothing, so the overshoot is at most one request per instance. The three gateways on
one Redis: ``tests/server/test_budgets_e2e.py``."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmgw.budgets.store import BudgetStore
from llmgw.budgets.tracker import BudgetTracker
from llmgw.config import BudgetSettings, NotifySettings
from llmgw.errors import BudgetExceeded, RateLimited
from llmgw.notify import Notifier
from llmgw.routing.resolve import Target
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade


def _cost(provider: str, model: str, prompt: int, completion: int, version: str | None) -> Decimal:
    return Decimal(prompt + completion) / 100  # 0.01 a token


async def test_holds_bound_the_requests_in_flight(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        upgrade(engine)
        from llmgw.auth.keys import KeyService

        info = KeyService(engine).create("held").info
        BudgetStore(engine).set_budget("key", info.id, "day", "RUB", Decimal(10), hard_stop=True)
        tracker = BudgetTracker(
            BudgetSettings(),
            engine,
            Notifier(NotifySettings()),
            {"p": "RUB", "u": "USD"},
            cost=_cost,
            instances=2,
        )
        await tracker.refresh()
        key = SimpleNamespace(id=info.id, user_id=None)
        rule = tracker.rules[info.id][0]
        t = Target("p", "m")
        first = tracker.check(key, 600, t)  # 6.00 > 10 / 2, but nothing is in flight: admitted
        assert first is not None and rule.held == 6.0
        with pytest.raises(RateLimited) as refused:  # 6 + 1 > 5: wait for the one in flight
            tracker.check(key, 100, t)
        assert refused.value.code == "budget_in_flight" and refused.value.retry_after == 1.0
        assert tracker.deferred == 1
        assert tracker.check(key, 100, Target("u", "m")) is None  # a USD provider: not this budget
        assert tracker.check(key, 100, False) is None  # /api/chat before its model is known
        assert tracker.check(key, 0, t) is None  # no estimate: nothing held
        tracker.charge(info.id, None, "p", Decimal(3))  # the first request answered...
        tracker.release(first)  # ...and gave its hold back
        assert rule.held == 0.0 and rule.spent == 3.0
        with pytest.raises(RateLimited):  # 3 spent here since the shared figure, + 3 > 5
            tracker.check(key, 300, t)
        await tracker.flush()  # the shared figure now has it (no Redis: this process's)
        assert rule.synced == 3.0
        assert rule.avg == 3.0  # from now on the hold is the average cost, not the tokens'
        second = tracker.check(key, 300, t)  # nothing held or unshared: one always goes
        assert second is not None
        await tracker.refresh()  # a refresh keeps what is held (the rules are rebuilt)
        rule = tracker.rules[info.id][0]
        assert rule.held == 3.0
        with pytest.raises(RateLimited):  # 3 + 3 > (10 - 3) / 2
            tracker.check(key, 100, t)
        tracker.charge(info.id, None, "p", Decimal(8))
        tracker.release(second)
        with pytest.raises(BudgetExceeded):  # 11 of 10 spent: 402 until the reset
            tracker.check(key, 100, t)
        await tracker.aclose()
    finally:
        engine.dispose()


async def test_a_grant_carries_the_hold_and_a_refusal_gives_it_back(tmp_path: Path) -> None:
    """Through ``KeyLimits.admit``: the hold rides on the grant and is given back when it
    settles; a request the rate limiter refuses holds nothing."""
    from llmgw.config import RateLimitSettings
    from llmgw.ratelimit import RateLimiter
    from llmgw.server.ratelimits import KeyLimits

    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        upgrade(engine)
        from llmgw.auth.keys import KeyService

        info = KeyService(engine).create("held").info
        BudgetStore(engine).set_budget("key", info.id, "day", "RUB", Decimal(100), hard_stop=True)
        tracker = BudgetTracker(
            BudgetSettings(), engine, Notifier(NotifySettings()), {"p": "RUB"}, cost=_cost
        )
        await tracker.refresh()
        limits = KeyLimits(RateLimiter(RateLimitSettings(), None))
        limits.budgets = tracker
        limits.set_quotas(limits.quotas, True)
        t = Target("p", "m")
        rule = tracker.rules[info.id][0]
        free = SimpleNamespace(id=info.id, user_id=None, rpm=None, tpm=None)
        grant = await limits.admit(free, 100, t)  # no limit of its own: a grant for the hold
        assert grant is not None and grant.holds is not None and rule.held == 1.0
        grant.settle(10)
        assert rule.held == 0.0
        limited = SimpleNamespace(id=info.id, user_id=None, rpm=1, tpm=None)
        assert await limits.admit(limited, 100, t) is not None
        assert rule.held == 1.0
        with pytest.raises(RateLimited, match="requests per minute"):
            await limits.admit(limited, 100, t)
        assert rule.held == 1.0  # the refused request's hold was given back
        await tracker.aclose()
        await limits.wait_settled()
    finally:
        engine.dispose()
