"""The budgets' hard stop in the rate limiter's Redis script (issue 13): one round trip per
request for the limits and the budgets together, the holds shared by every instance, and the
holds of an instance that died dropped after ``stale_ms``. Real Redis, real SQLite; each test
works under its own key prefixes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from llmgw.budgets.store import BudgetStore
from llmgw.budgets.tracker import BudgetTracker
from llmgw.config import BudgetSettings, NotifySettings, RateLimitSettings
from llmgw.errors import BudgetExceeded, RateLimited
from llmgw.notify import Notifier
from llmgw.ratelimit import RateLimiter
from llmgw.routing.resolve import Target
from llmgw.server.quotas import QuotaBook
from llmgw.server.ratelimits import KeyLimits
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade

pytestmark = pytest.mark.redis

TARGET = Target("p", "m", "rc")


def _cost(provider: str, model: str, prompt: int, completion: int, version: str | None) -> Decimal:
    return Decimal(prompt + completion) / 100  # 0.01 a token


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


async def _instance(
    engine: Any, redis_url: str, tag: str, refresh: float = 1.0
) -> tuple[KeyLimits, BudgetTracker]:
    limiter = RateLimiter(
        RateLimitSettings(backend="redis", redis_timeout=5.0),
        redis_url,
        key_prefix=f"llmgw:test:{tag}:rl:",
    )
    await limiter.start()
    tracker = BudgetTracker(
        BudgetSettings(redis_prefix=f"llmgw:test:{tag}:budget", refresh_interval=refresh),
        engine,
        Notifier(NotifySettings()),
        {"p": "RUB"},
        redis_url=redis_url,
        cost=_cost,
    )
    limits = KeyLimits(limiter)
    limits.budgets = tracker
    tracker._on_refresh = lambda quotas, hard: limits.set_quotas(QuotaBook(quotas), hard)
    await tracker.start()
    return limits, tracker


async def _close(limits: KeyLimits, tracker: BudgetTracker) -> None:
    await tracker.aclose()
    await limits.wait_settled()
    await limits.limiter.aclose()


async def test_limits_quotas_and_budgets_cost_one_round_trip_per_request(
    engine: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key with rpm and tpm, a user quota, a version quota, and hard-stop budgets on the key
    and on its user: admitting a request is one Redis round trip (counted on the connections:
    every command or pipeline sent), and answering it none (the spend and the holds given back
    travel in one pipeline per flush, off the request path)."""
    from llmgw.auth.keys import KeyService

    info = KeyService(engine).create("counted").info
    user = uuid.uuid4()
    store = BudgetStore(engine)
    store.set_budget("key", info.id, "day", "RUB", Decimal(1000), hard_stop=True)
    store.set_budget("user", user, "day", "RUB", Decimal(1000), hard_stop=True)
    store.set_quota("user", user, "", 1000, None)
    store.set_quota("key", info.id, "m:rc", 1000, 100_000)
    # Nothing in the background meanwhile: no refresh, no timed flush (the test flushes).
    monkeypatch.setattr("llmgw.budgets.tracker.FLUSH_SECONDS", 300.0)
    limits, tracker = await _instance(engine, redis_url, uuid.uuid4().hex[:8], refresh=300.0)
    try:
        assert limits.quotas and tracker.hard and limits.extra
        key = SimpleNamespace(id=info.id, user_id=user, rpm=1000, tpm=100_000, prefix="c")
        sent = 0
        real = AbstractConnection.send_packed_command

        async def counted(self: Any, command: Any, check_health: bool = True) -> None:
            nonlocal sent
            sent += 1
            await real(self, command, check_health)

        warm = await limits.admit(key, 100, TARGET)  # the first call loads the script
        assert warm is not None
        tracker.charge(info.id, user, "p", Decimal("0.5"))
        warm.settle(100)
        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
        per_request = []
        for _ in range(10):
            before = sent
            grant = await limits.admit(key, 100, TARGET)
            per_request.append(sent - before)
            assert grant is not None and grant.holds is not None and len(grant.holds) == 2
            before = sent
            tracker.charge(info.id, user, "p", Decimal("0.5"))
            grant.settle(100)  # as reserved: no token settlement to send either
            assert sent == before  # answering costs no round trip
        assert per_request == [1] * 10
        rules = [tracker.rules[info.id][0], tracker.rules[user][0]]
        assert all(r.held == 0 and r.unheld > 0 for r in rules)  # given back here, not yet there
        before = sent
        await tracker.flush()
        assert sent - before == 1  # one pipeline: the spend, then the holds given back
        assert all(r.unheld == 0 and r.synced == 5.5 for r in rules)
        monkeypatch.undo()
        probe = tracker._redis
        assert probe is not None
        for r in rules:
            assert r.keys is not None
            held = await probe.hget(r.keys[1], f"h:{tracker.instance}")
            assert held is not None and float(held) == 0.0
    finally:
        await _close(limits, tracker)


async def test_three_instances_share_the_holds_and_the_spend(engine: Any, redis_url: str) -> None:
    """A budget of 10.00 and requests estimated at 1.00 each (100 tokens): three instances on
    one Redis hold exactly 10 between them (the 11th is 429 ``budget_in_flight`` on any
    instance), a refused request holds nothing and steps no bucket; once the spend reaches the
    amount every instance answers 402; an instance that dies holding requests stops counting
    after ``stale_ms``."""
    from llmgw.auth.keys import KeyService

    info = KeyService(engine).create("shared").info
    BudgetStore(engine).set_budget("key", info.id, "day", "RUB", Decimal(10), hard_stop=True)
    tag = uuid.uuid4().hex[:8]
    gws = [await _instance(engine, redis_url, tag) for _ in range(3)]
    try:
        key = SimpleNamespace(id=info.id, user_id=None, rpm=13, tpm=None, prefix="s")
        grants = []
        for i in range(10):
            limits = gws[i % 3][0]
            grants.append((i % 3, await limits.admit(key, 100, TARGET)))
        for limits, _ in gws:
            with pytest.raises(RateLimited) as refused:
                await limits.admit(key, 100, TARGET)
            assert refused.value.code == "budget_in_flight"
        # The three refused requests stepped no bucket: of the 13 per minute, 10 are used (had
        # they stepped, all 13 would be, and this one, asking no budget, would be refused).
        assert await gws[0][0].admit(key, 100) is not None
        # Nine answer at 1.00 and give their holds back; the tenth is still in flight.
        for n, grant in grants[:9]:
            gws[n][1].charge(info.id, None, "p", Decimal(1))
            assert grant is not None
            grant.settle(100)
        for _, tracker in gws:
            await tracker.flush()
        # 9 spent + 1 held: a request of 1.00 more would make 11
        with pytest.raises(RateLimited):
            await gws[1][0].admit(key, 100, TARGET)
        n, tenth = grants[9]
        gws[n][1].charge(info.id, None, "p", Decimal("1.5"))
        assert tenth is not None
        tenth.settle(150)
        await gws[n][1].flush()
        for limits, _ in gws:  # 10.50 of 10 spent: 402 everywhere, one round trip or none
            with pytest.raises(BudgetExceeded):
                await limits.admit(key, 100, TARGET)
    finally:
        for limits, tracker in gws:
            await _close(limits, tracker)


async def test_the_holds_of_an_instance_that_died_are_dropped(engine: Any, redis_url: str) -> None:
    from llmgw.auth.keys import KeyService

    info = KeyService(engine).create("orphan").info
    BudgetStore(engine).set_budget("key", info.id, "day", "RUB", Decimal(3), hard_stop=True)
    tag = uuid.uuid4().hex[:8]
    (a, ta), (b, tb) = [await _instance(engine, redis_url, tag) for _ in range(2)]
    try:
        key = SimpleNamespace(id=info.id, user_id=None, rpm=None, tpm=None, prefix="o")
        assert await a.admit(key, 100, TARGET) is not None  # 1.00 held by a...
        assert await a.admit(key, 100, TARGET) is not None  # ...2.00: a then "dies"
        with pytest.raises(RateLimited):  # 2.00 held + 1.50 > 3.00
            await b.admit(key, 150, TARGET)
        tb.stale_ms = 0  # b treats a, not heard from since, as dead: its holds are dropped
        await asyncio.sleep(0.01)
        grant = await b.admit(key, 150, TARGET)
        assert grant is not None and grant.holds is not None
    finally:
        await _close(a, ta)
        await _close(b, tb)


def _recorded(engine: Any, spool: Path, key_id: uuid.UUID, *costs: str) -> None:
    """Usage rows of ``key_id`` from this minute at ``costs`` (RUB: provider ``p``), written
    through the real recorder."""
    from datetime import UTC, datetime

    from llmgw.config import UsageSettings
    from llmgw.usage.recorder import UsageEvent, UsageRecorder

    rec = UsageRecorder(engine, UsageSettings(flush_interval=0.05), spool)
    rec.start()
    for cost in costs:
        rec.record(
            UsageEvent(
                request_id=uuid.uuid4().hex, created_at=datetime.now(UTC), key_id=key_id,
                provider="p", model="m", prompt_tokens=10, completion_tokens=10,
                total_tokens=20, cost=Decimal(cost),
            )
        )  # fmt: skip
    rec.close()


async def _spent(r: Any, key: str) -> float:
    """The shared spend stored at ``key`` (0 when absent)."""
    value = await r.get(key)
    return float(value) if value is not None else 0.0


async def test_the_shared_spend_is_reconciled_with_the_database(
    engine: Any, redis_url: str, tmp_path: Path
) -> None:
    """Issue 13 item 5, "reconciled with the database": an instance starting on an empty Redis
    (restarted or flushed) raises the shared spend to what the database recorded this period;
    a shared figure ahead of the database (spend not yet written) is never lowered; spend that
    reaches the database while Redis missed it is folded in by the next reconciliation, after
    which every instance refuses (402)."""
    from redis.asyncio import Redis

    from llmgw.auth.keys import KeyService

    info = KeyService(engine).create("reconciled").info
    BudgetStore(engine).set_budget("key", info.id, "day", "RUB", Decimal(5), hard_stop=True)
    _recorded(engine, tmp_path / "spool", info.id, "1.5", "2.5")  # 4.00 RUB in the database
    tag = uuid.uuid4().hex[:8]
    r = Redis.from_url(redis_url)
    key = SimpleNamespace(id=info.id, user_id=None, rpm=None, tpm=None, prefix="r")
    a = await _instance(engine, redis_url, tag)
    b = None
    try:
        rule = next(iter(a[1]._by_id.values()))
        spend_key = a[1]._prefix + rule.redis_key
        assert await _spent(r, spend_key) == 4.0 and rule.spent == 4.0
        assert await a[0].admit(key, 50, TARGET) is not None  # 4.00 + a 0.50 hold fits in 5.00

        await r.delete(spend_key)  # Redis restarted empty: a new instance raises it again
        b = await _instance(engine, redis_url, tag)
        assert await _spent(r, spend_key) == 4.0

        b[1].charge(info.id, None, "p", Decimal("0.5"))  # spent, not yet in the database
        await b[1].flush()
        await a[1].reconcile()
        assert await _spent(r, spend_key) == 4.5  # ahead of the database: kept

        _recorded(engine, tmp_path / "spool2", info.id, "1.25")  # the database: 5.25
        await a[1].reconcile()
        assert await _spent(r, spend_key) == 5.25
        await b[1].refresh()
        for limits, _ in (a, b):
            with pytest.raises(BudgetExceeded):
                await limits.admit(key, 50, TARGET)
    finally:
        for gw in (a, b):
            if gw is not None:
                await _close(*gw)
        await r.aclose()
