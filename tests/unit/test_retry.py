"""Backoff with full jitter and the retry budget."""

from __future__ import annotations

import random

import pytest

from llmgw.routing.retry import RetryBudget, RetryPolicy, full_jitter


class FakeClock:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


def test_full_jitter_stays_under_an_exponential_ceiling_and_the_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (10, 1.0)]:
        samples = [full_jitter(attempt, base=0.1, cap=1.0, rng=rng) for _ in range(400)]
        assert all(0.0 <= s <= ceiling for s in samples)
        # full jitter spreads over the whole range, not around the ceiling
        assert min(samples) < ceiling * 0.1
        assert max(samples) > ceiling * 0.9


def test_budget_allows_twenty_percent_of_requests() -> None:
    clock = FakeClock()
    b = RetryBudget(ratio=0.2, min_per_second=0.0, window=10, clock=clock)
    for _ in range(100):
        b.record_request()
    spent = sum(b.try_spend() for _ in range(50))
    assert spent == 20


def test_budget_floor_allows_a_few_retries_at_low_traffic() -> None:
    clock = FakeClock()
    b = RetryBudget(ratio=0.2, min_per_second=0.5, window=10, clock=clock)
    b.record_request()
    assert sum(b.try_spend() for _ in range(20)) == 5  # 0.5/s over 10 s


def test_budget_window_slides() -> None:
    clock = FakeClock()
    b = RetryBudget(ratio=0.2, min_per_second=0.0, window=10, clock=clock)
    for _ in range(50):
        b.record_request()
    assert sum(b.try_spend() for _ in range(20)) == 10
    assert not b.try_spend()
    clock.t += 11  # old requests and retries leave the window
    assert not b.try_spend()  # no recent requests, no floor
    for _ in range(10):
        b.record_request()
    assert sum(b.try_spend() for _ in range(5)) == 2
    assert b.stats() == {"requests": 10, "retries": 2, "allowed": 2}


def test_policy_keeps_one_budget_per_provider() -> None:
    p = RetryPolicy(budget_min_per_second=0.0)
    for _ in range(10):
        p.budget("a").record_request()
    assert p.budget("a").try_spend()
    assert not p.budget("b").try_spend()


def test_retry_after_is_honoured_only_when_short() -> None:
    p = RetryPolicy(backoff_base=0.1, backoff_max=2.0, rng=random.Random(1))
    assert p.delay(1, retry_after=1.5) == 1.5
    assert p.delay(1, retry_after=30.0) is None
    d = p.delay(3)
    assert d is not None and 0 <= d <= 0.4


def test_bad_budget_is_refused() -> None:
    with pytest.raises(ValueError):
        RetryBudget(window=0.5)
