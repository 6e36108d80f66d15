"""GCRA reference step and MemoryLimiter: exact capacity, refill, refunds, debt, eviction."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmgw.config import Settings
from llmgw.ratelimit import Decision, Limit, MemoryLimiter
from llmgw.ratelimit.gcra import Tat, gcra, gcra_charge

EPOCH = 1_780_000_000.0  # a realistic epoch: float seconds here lose sub-microsecond precision


class Clock:
    """A settable clock in float seconds."""

    def __init__(self, t: float = EPOCH) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    ("rate", "period"), [(10, 1.0), (7, 60.0), (60, 60.0), (1000, 60.0), (3, 0.001)]
)
async def test_fresh_bucket_admits_exactly_rate_then_retry_after_is_one_interval(
    rate: int, period: float
) -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    limit = Limit(rate, period)
    decisions = [await lim.acquire("b", limit) for _ in range(rate + 10)]
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == rate
    assert all(d.allowed for d in decisions[:rate])
    assert [d.remaining for d in allowed] == list(range(rate - 1, -1, -1))
    refused = decisions[rate]
    assert refused.remaining == 0 and refused.limit == rate
    assert refused.retry_after == pytest.approx(period / rate, abs=2e-6)
    assert refused.reset_after == pytest.approx(period, abs=2e-6)
    clock.t += refused.retry_after + 1e-6
    d = await lim.acquire("b", limit)
    assert d.allowed and d.remaining == 0
    assert not (await lim.acquire("b", limit)).allowed


async def test_refills_continuously() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    limit = Limit(60, 60.0)
    for _ in range(60):
        assert (await lim.acquire("b", limit)).allowed
    clock.t += 30.0
    got = [(await lim.acquire("b", limit)).allowed for _ in range(40)]
    assert got.count(True) == 30
    clock.t += 60.0
    d = await lim.acquire("b", limit)
    assert d.allowed and d.remaining == 59 and d.reset_after == pytest.approx(1.0, abs=2e-6)


async def test_cost_and_retry_after_for_cost() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    limit = Limit(100, 10.0)  # T = 0.1 s
    assert (await lim.acquire("t", limit, 70)).remaining == 30
    d = await lim.acquire("t", limit, 50)
    assert not d.allowed and d.remaining == 30
    assert d.retry_after == pytest.approx(2.0, abs=2e-6)  # 20 more units at 0.1 s
    clock.t += 2.0
    assert (await lim.acquire("t", limit, 50)).allowed


async def test_cost_above_rate_is_clamped_not_refused_forever() -> None:
    lim = MemoryLimiter(clock=Clock())
    d = await lim.acquire("t", Limit(10, 1.0), 1000)
    assert d.allowed and d.remaining == 0


async def test_refund_and_debt() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    limit = Limit(100, 60.0)
    await lim.acquire("t", limit, 80)
    await lim.adjust("t", limit, -50)  # reserved too much
    assert (await lim.acquire("t", limit, 1)).remaining == 69
    await lim.adjust("t", limit, -10_000)  # refund never goes below "full"
    assert (await lim.acquire("t", limit, 1)).remaining == 99
    await lim.adjust("t", limit, +500)  # used far more than reserved: debt, capped at 2 periods
    d = await lim.acquire("t", limit, 1)
    assert not d.allowed and d.remaining == 0
    assert d.retry_after == pytest.approx(60.0 + 0.6, abs=1e-5)
    assert d.reset_after == pytest.approx(120.0, abs=1e-5)


async def test_buckets_are_independent_and_names_are_opaque() -> None:
    lim = MemoryLimiter(clock=Clock())
    limit = Limit(2, 60.0)
    names = ["rpm:a", "rpm:b", "rpm:a ", "tpm:a", "rpm:ключ/{x}*?\x00", ""]
    for n in names:
        assert (await lim.acquire(n, limit)).allowed
        assert (await lim.acquire(n, limit)).allowed
        assert not (await lim.acquire(n, limit)).allowed


async def test_bounded_dict_evicts_full_buckets_first() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock, max_buckets=100)
    limit = Limit(5, 1.0)
    for i in range(100):
        await lim.acquire(f"old{i}", limit)
    assert len(lim) == 100
    clock.t += 2.0  # all full again
    await lim.acquire("busy", limit, 5)
    assert len(lim) == 1
    for i in range(150):
        await lim.acquire(f"new{i}", limit)
    assert len(lim) <= 100
    assert not (await lim.acquire("busy", limit)).allowed  # the most drained bucket survived


def test_limit_validation() -> None:
    with pytest.raises(ValueError, match="rate"):
        Limit(0, 60.0)
    with pytest.raises(ValueError, match="period"):
        Limit(1, 0.0)
    with pytest.raises(ValueError, match="too large"):
        Limit(10**9, 3600.0)
    assert Limit(30_000_000, 60.0).period_us == 60_000_000  # 30M tokens per minute
    assert Limit(5, 1.0) == Limit(5, 1.0)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.integers(1, 500),
    period_ms=st.integers(1, 120_000),
    steps=st.lists(st.tuples(st.integers(0, 3_000_000), st.integers(-20, 40)), max_size=40),
)
def test_gcra_invariants(rate: int, period_ms: int, steps: list[tuple[int, int]]) -> None:
    """Against a simple model: units admitted in any window never exceed what GCRA allows,
    remaining is within [0, rate], retry_after is exact (admitted just after, not just before)."""
    limit = Limit(rate, period_ms / 1000)
    tat, now = Tat(0, 0), 1_780_000_000_000_000
    for dt, cost in steps:
        now += dt
        d, new = gcra(tat, now, limit, cost)
        assert isinstance(d, Decision) and 0 <= d.remaining <= rate and d.limit == rate
        assert d.reset_after >= 0
        if cost > 0 and not d.allowed:
            assert new == tat and d.retry_after > 0
            wait_us = math.ceil(d.retry_after * 1_000_000 - 1e-3)
            assert gcra(tat, now + wait_us + 1, limit, cost)[0].allowed
            assert not gcra(tat, now + max(0, wait_us - 2), limit, cost)[0].allowed
        elif cost > 0:
            assert d.retry_after == 0.0 and d.remaining <= rate - min(cost, rate)
        tat = new


@settings(max_examples=300, deadline=None)
@given(
    rates=st.lists(st.integers(1, 300), min_size=1, max_size=3),
    period_ms=st.integers(1, 120_000),
    steps=st.lists(
        st.tuples(
            st.integers(0, 3_000_000),  # microseconds since the previous step
            st.lists(st.tuples(st.integers(0, 3), st.integers(-20, 400)), min_size=1, max_size=4),
        ),
        max_size=30,
    ),
)
def test_memory_steps_agree_with_the_reference(
    rates: list[int], period_ms: int, steps: list[tuple[int, list[tuple[int, int]]]]
) -> None:
    """``MemoryLimiter.acquire_many_now`` (the GCRA step inlined, plain tuples in its dict) gives
    the decisions ``gcra`` gives, changes the buckets only when every one allows, rounds a
    bucket whose limit changed as ``_get`` does, and ``adjust_now`` agrees with ``gcra_charge``
    on what it stored: a bucket named twice in a call, a refund (cost <= 0) and a bucket used
    under another limit than before included."""
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    limits = [Limit(r, period_ms / 1000) for r in rates]
    model: dict[str, tuple[Tat, int]] = {}  # bucket -> (tat, rate the frac is in)

    def tat_of(bucket: str, limit: Limit) -> Tat:
        tat, rate = model.get(bucket, (Tat(0, 0), limit.rate))
        return Tat(tat.us + 1, 0) if rate != limit.rate and tat.frac else tat

    for dt, asks in steps:
        clock.t += dt / 1_000_000
        now = int(clock.t * 1_000_000)
        items = [(f"b{b % 2}", limits[(b + c) % len(limits)], c) for b, c in asks]
        expected, news, allowed = [], [], True
        for bucket, limit, cost in items:
            d, new = gcra(tat_of(bucket, limit), now, limit, cost)
            expected.append(d)
            news.append((bucket, new, limit.rate))
            allowed = allowed and d.allowed
        got = lim.acquire_many_now(items)
        assert got == expected and all(isinstance(d, Decision) for d in got)
        if allowed:
            for bucket, new, rate in news:
                model[bucket] = (new, rate)
        if asks[0][1] % 7 == 0:  # now and then a settlement through adjust_now
            bucket, limit, _ = items[0]
            delta = asks[0][1] - 200
            lim.adjust_now(bucket, limit, delta)
            if delta:
                new = gcra_charge(tat_of(bucket, limit), now, limit, delta)
                if new.us <= now and new.frac == 0:
                    model.pop(bucket, None)
                else:
                    model[bucket] = (new, limit.rate)
        assert len(lim) == len(model)


@settings(max_examples=300, deadline=None)
@given(
    rates=st.lists(st.integers(1, 300), min_size=1, max_size=3),
    period_ms=st.integers(1, 120_000),
    steps=st.lists(
        st.tuples(
            st.integers(0, 3_000_000),  # microseconds since the previous step
            st.lists(st.tuples(st.integers(0, 3), st.integers(1, 400)), min_size=1, max_size=4),
        ),
        max_size=30,
    ),
)
def test_the_tightest_step_agrees_with_every_buckets_step(
    rates: list[int], period_ms: int, steps: list[tuple[int, list[tuple[int, int]]]]
) -> None:
    """``tightest_now`` (the request path's step) admits and refuses exactly when
    ``acquire_many_now`` does and leaves the same buckets; admitted, it answers the decision of
    the bucket with the fewest units left (the first of equals, as the headers name it);
    refused, every bucket's decision, as ``acquire_many_now`` gives them at that instant."""
    clock = Clock()
    many, tightest = MemoryLimiter(clock=clock), MemoryLimiter(clock=clock)
    limits = [Limit(r, period_ms / 1000) for r in rates]
    for dt, asks in steps:
        clock.t += dt / 1_000_000
        items = [(f"b{b % 2}", limits[(b + c) % len(limits)], c) for b, c in asks]
        expected = many.acquire_many_now(items)
        got = tightest.tightest_now(items)
        if all(d.allowed for d in expected):
            least = min(d.remaining for d in expected)
            assert got == next(d for d in expected if d.remaining == least)
            assert isinstance(got, Decision)
        else:
            assert got == expected and isinstance(got, list)
        assert tightest._buckets == many._buckets


def test_the_tightest_step_refuses_like_the_reference_at_the_edge() -> None:
    """One period ahead is admitted (0 left), a period ahead plus a fraction refused with every
    bucket's decision; a refusal by the second bucket steps neither."""
    clock = Clock(1.0)
    lim = MemoryLimiter(clock=clock)
    limit, roomy = Limit(3, 0.001), Limit(100, 60)
    assert lim.tightest_now([("b", limit, 2)]) == lim_ref_admit(limit, 2)
    clock.t = 1.0003335
    got = lim.tightest_now([("roomy", roomy, 1), ("b", limit, 2)])
    assert isinstance(got, list) and got[0].allowed and not got[1].allowed
    assert "roomy" not in lim._buckets  # all or nothing
    d = lim.tightest_now([("roomy", roomy, 1), ("b", limit, 1)])
    assert isinstance(d, Decision) and d.allowed and d.remaining == 0 and d.limit == 3


def lim_ref_admit(limit: Limit, cost: int) -> Decision:
    """``gcra``'s decision for ``cost`` units of a fresh bucket of ``limit`` at t = 1 s."""
    return gcra(Tat(0, 0), 1_000_000, limit, cost)[0]


def test_memory_step_at_a_period_ahead_plus_a_fraction_refuses() -> None:
    """The edge the random steps rarely reach: after the step the bucket would be exactly one
    period ahead plus a fraction of a microsecond: refused, like ``gcra`` (exactly one period
    ahead is allowed)."""
    clock = Clock(1.0)
    lim = MemoryLimiter(clock=clock)
    limit = Limit(3, 0.001)  # T = 333.33 µs
    assert lim.acquire_now("b", limit, 2).remaining == 1  # TAT now + 666 µs + 2/3
    clock.t = 1.0003335  # 333 µs later
    d = lim.acquire_many_now([("b", limit, 2)])[0]
    reference, _ = gcra(Tat(1_000_666, 2), 1_000_333, limit, 2)
    assert d == reference and not d.allowed and d.retry_after > 0
    clock.t = 1.0
    lim2 = MemoryLimiter(clock=clock)
    lim2.acquire_now("b", limit, 2)
    clock.t = 1.0003335
    assert lim2.acquire_many_now([("b", limit, 1)])[0].allowed  # 1 unit fits: 667 µs ahead


def test_settings_section() -> None:
    s = Settings()
    assert s.ratelimit.backend == "auto" and s.ratelimit.instances == 1
    assert s.ratelimit.redis_timeout == 0.1 and s.ratelimit.retry_interval == 1.0
    with pytest.raises(ValueError):
        Settings(ratelimit={"instances": 0})
