"""The circuit breaker's state machine, driven by a hand-moved clock."""

from __future__ import annotations

import pytest

from llmgw.routing.breaker import BreakerConfig, BreakerRegistry, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def state_of(b: CircuitBreaker) -> str:
    """The breaker's state, read afresh (mypy would keep a narrowed ``b.state`` across calls)."""
    return b.state


def make(clock: FakeClock, **kw: float) -> CircuitBreaker:
    cfg = BreakerConfig(**{"failure_threshold": 3, "cooldown": 10.0, "max_cooldown": 40.0, **kw})  # type: ignore[arg-type]
    return CircuitBreaker(("p", "m"), cfg, clock)


def fail(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        assert b.acquire()
        b.record_failure()


def test_opens_after_threshold_consecutive_failures_and_fails_fast() -> None:
    clock = FakeClock()
    b = make(clock)
    fail(b, 2)
    assert b.state == "closed"
    fail(b, 1)
    assert state_of(b) == "open"
    assert not b.acquire()
    assert b.retry_after() == pytest.approx(10.0)
    clock.advance(4)
    assert not b.acquire()
    assert b.retry_after() == pytest.approx(6.0)


def test_success_resets_the_consecutive_count() -> None:
    b = make(FakeClock())
    fail(b, 2)
    assert b.acquire()
    b.record_success()
    fail(b, 2)
    assert b.state == "closed"


def test_half_open_lets_a_bounded_number_of_probes_through() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=2)
    fail(b, 3)
    clock.advance(10)
    assert b.state == "half_open"
    assert b.acquire()
    assert b.acquire()
    assert not b.acquire()  # third concurrent probe refused
    b.release()  # a probe ended without a verdict: its slot comes back
    assert b.acquire()


def test_successful_probe_closes() -> None:
    clock = FakeClock()
    b = make(clock)
    fail(b, 3)
    clock.advance(10)
    assert b.acquire()
    b.record_success()
    assert b.state == "closed"
    assert b.acquire() and b.acquire()


def test_failed_probe_reopens_with_doubled_cooldown_capped() -> None:
    clock = FakeClock()
    b = make(clock)
    fail(b, 3)
    for expected in (20.0, 40.0, 40.0):
        clock.advance(b.retry_after())
        assert b.acquire()
        b.record_failure()
        assert b.state == "open"
        assert b.retry_after() == pytest.approx(expected)
    clock.advance(40)
    assert b.acquire()
    b.record_success()
    # after closing, the next opening starts from the base cooldown again
    fail(b, 3)
    assert b.retry_after() == pytest.approx(10.0)


def test_error_rate_window_opens_without_a_consecutive_run() -> None:
    clock = FakeClock()
    b = make(clock, failure_threshold=100, error_rate_threshold=0.5, min_requests=10, window=30.0)
    for _ in range(5):  # alternate: never 2 failures in a row, 50 % errors
        assert b.acquire()
        b.record_success()
        assert b.acquire()
        b.record_failure()
        clock.advance(1)
    assert b.state == "open"


def test_error_rate_forgets_outcomes_older_than_the_window() -> None:
    clock = FakeClock()
    b = make(clock, failure_threshold=100, error_rate_threshold=0.5, min_requests=10, window=30.0)
    for _ in range(8):
        assert b.acquire()
        b.record_failure()
    clock.advance(40)  # those failures are out of the window now
    for _ in range(9):
        assert b.acquire()
        b.record_success()
    assert b.acquire()
    b.record_failure()
    assert b.state == "closed"  # 1 failure in 10, not 9 in 18


def test_min_requests_guards_the_error_rate() -> None:
    b = make(FakeClock(), failure_threshold=100, min_requests=10)
    fail(b, 9)
    assert b.state == "closed"
    fail(b, 1)
    assert state_of(b) == "open"


def test_registry_gives_one_breaker_per_provider_and_model() -> None:
    reg = BreakerRegistry(BreakerConfig(failure_threshold=1))
    a = reg.get("giga", "GigaChat")
    assert reg.get("giga", "GigaChat") is a
    assert reg.get("giga", "GigaChat-Pro") is not a
    assert reg.find("yandex", "lite") is None
    a.acquire()
    a.record_failure()
    assert reg.get("giga", "GigaChat-Pro").state == "closed"
    assert {b.key for b in reg} == {("giga", "GigaChat"), ("giga", "GigaChat-Pro")}


@pytest.mark.parametrize(
    "kw",
    [
        {"failure_threshold": 0},
        {"error_rate_threshold": 0.0},
        {"cooldown": 50.0, "max_cooldown": 10.0},
    ],
)
def test_bad_config_is_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(**kw)  # type: ignore[arg-type]
