"""The router's fallback, retry and breaker logic, with in-process fake providers (state machine only;
the end-to-end behaviour over HTTP is in test_router_e2e.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from llmgw.errors import (
    InvalidRequest,
    RateLimited,
    Unavailable,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamTimeout,
)
from llmgw.providers.base import ChatChunk
from llmgw.routing.breaker import BreakerConfig, BreakerRegistry, CircuitOpen
from llmgw.routing.health import HealthTracker
from llmgw.routing.retry import RetryPolicy
from llmgw.routing.router import Router, RouteTrace


@dataclass(frozen=True)
class Cand:
    provider: str
    model: str
    version: str | None = None
    priority: int | None = None
    weight: float = 1.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Fake:
    """A provider whose next outcomes are scripted: "ok", an exception, or a stream script."""

    kind = "fake"

    def __init__(self, name: str, fail: BaseException | None = None) -> None:
        self.name = name
        self.fail = fail
        self.calls = 0
        self.closed = 0

    async def chat(self, c: Cand) -> str:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return f"{self.name}:{c.model}"

    async def stream(self, c: Cand, fail_after: int | None = None) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        try:
            if self.fail is not None:
                raise self.fail
            for i in range(3):
                if fail_after is not None and i == fail_after:
                    raise UpstreamError("stalled", provider=self.name)
                yield ChatChunk({"i": i, "by": self.name})
        finally:
            self.closed += 1


def build(
    providers: dict[str, Any],  # Fakes: the router needs only what each test's op calls
    *,
    threshold: int = 3,
    max_retries: int = 0,
    clock: FakeClock | None = None,
    min_requests: int = 20,
) -> tuple[Router, list[float]]:
    clock = clock or FakeClock()
    cfg = BreakerConfig(failure_threshold=threshold, cooldown=30.0, min_requests=min_requests)
    breakers = BreakerRegistry(cfg, clock)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    policy = RetryPolicy(max_retries=max_retries, clock=clock, rng=random.Random(3))
    router = Router(
        None,
        providers,
        breakers,
        HealthTracker(breakers=breakers),
        policy,
        clock,
        sleep=sleep,
        rng=random.Random(5),
    )
    return router, slept


async def chat(p: Any, c: Cand) -> str:  # the "op" the server would pass (p is a Fake)
    return str(await p.chat(c))


def stream(fail_after: int | None = None) -> Any:
    """The streaming "op": open a Fake's scripted stream."""

    def op(p: Any, c: Cand) -> AsyncIterator[ChatChunk]:
        it: AsyncIterator[ChatChunk] = p.stream(c, fail_after)
        return it

    return op


A, B = Cand("a", "m1"), Cand("b", "m2", "rc")


@pytest.mark.parametrize(
    "error",
    [
        UpstreamError("boom", provider="a"),
        UpstreamTimeout("slow", provider="a"),
        RateLimited("busy", retry_after=1),
        ConnectionRefusedError(),
        TimeoutError(),
    ],
)
async def test_falls_back_on_upstream_failures(error: BaseException) -> None:
    a, b = Fake("a", error), Fake("b")
    router, _ = build({"a": a, "b": b})
    routed = await router.call([A, B], chat)
    assert routed.value == "b:m2"
    assert routed.served_by == "b/m2:rc"
    assert [x.outcome for x in routed.attempts] == ["failed", "ok"]


async def test_client_errors_are_not_retried_or_counted() -> None:
    a, b = Fake("a", InvalidRequest("bad")), Fake("b")
    router, _ = build({"a": a, "b": b}, threshold=1)
    with pytest.raises(InvalidRequest):
        await router.call([A, B], chat)
    assert b.calls == 0
    assert router.breakers.get("a", "m1").state == "closed"


async def test_breaker_opens_then_skips_the_failing_candidate_then_recovers() -> None:
    clock = FakeClock()
    a, b = Fake("a", UpstreamError("down", provider="a")), Fake("b")
    router, _ = build({"a": a, "b": b}, threshold=3, clock=clock)
    for _ in range(3):
        assert (await router.call([A, B], chat)).value == "b:m2"
    assert a.calls == 3
    for _ in range(5):
        routed = await router.call([A, B], chat)
        assert [x.outcome for x in routed.attempts] == ["open", "ok"]
    assert a.calls == 3  # fail fast: nothing reached A while open
    a.fail = None
    clock.t += 30  # cooldown over: half-open, one probe
    routed = await router.call([A, B], chat)
    assert routed.value == "a:m1"
    assert router.breakers.get("a", "m1").state == "closed"
    snap = {r["provider"]: r for r in router.health.snapshot()}
    assert snap["a"]["failures"] == 3 and snap["a"]["status"] in ("failing", "degraded", "healthy")
    assert snap["b"]["status"] == "healthy"


async def test_all_circuits_open_fails_fast_with_retry_after() -> None:
    a = Fake("a", UpstreamError("down", provider="a"))
    router, _ = build({"a": a}, threshold=1)
    with pytest.raises(UpstreamError):
        await router.call([A], chat)
    with pytest.raises(CircuitOpen) as info:
        await router.call([A], chat)
    assert info.value.http_status == 503
    assert info.value.retry_after == pytest.approx(30.0)
    assert a.calls == 1


async def test_last_upstream_error_is_raised_when_every_candidate_fails() -> None:
    a = Fake("a", UpstreamError("down", provider="a"))
    b = Fake("b", RateLimited("quota", retry_after=60))
    router, _ = build({"a": a, "b": b})
    trace: RouteTrace[Any] = RouteTrace()
    with pytest.raises(RateLimited):
        await router.call([A, B], chat, trace)
    # the server names the last candidate tried in the failure's usage record
    assert trace.candidate == B
    assert [x.outcome for x in trace.attempts] == ["failed", "failed"]


async def test_retries_with_backoff_until_success() -> None:
    a = Fake("a", UpstreamError("flaky", provider="a"))
    router, slept = build({"a": a}, max_retries=2, threshold=10)
    calls = 0

    async def op(p: Fake, c: Cand) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise UpstreamError("flaky", provider="a")
        return "ok"

    routed = await router.call([A], op)  # type: ignore[arg-type]
    assert routed.value == "ok"
    assert [x.retry for x in routed.attempts] == [False, True, True]
    assert len(slept) == 2 and slept[0] <= 0.1 and slept[1] <= 0.2


async def test_retry_after_longer_than_the_backoff_cap_is_not_waited_out() -> None:
    a = Fake("a", RateLimited("quota", retry_after=60))
    router, slept = build({"a": a}, max_retries=3, threshold=10)
    with pytest.raises(RateLimited):
        await router.call([A], chat)
    assert a.calls == 1 and slept == []


async def test_retry_budget_bounds_attempts_on_a_dead_upstream() -> None:
    a = Fake("a", UpstreamError("dead", provider="a"))
    router, _ = build({"a": a}, max_retries=3, threshold=10_000, min_requests=10_000)
    router.retry.budget_min_per_second = 0.0
    n = 200
    for _ in range(n):
        with pytest.raises(UpstreamError):
            await router.call([A], chat)
    # without a budget this would be n * 4 attempts
    assert a.calls <= n * 1.2


async def test_weighted_order_within_a_priority_group() -> None:
    fakes = {"a": Fake("a"), "b": Fake("b"), "c": Fake("c")}
    router, _ = build(fakes)
    cands = [
        Cand("a", "x", priority=0, weight=3),
        Cand("b", "x", priority=0, weight=1),
        Cand("c", "x", priority=1),
    ]
    firsts = [router.order(cands)[0].provider for _ in range(2000)]
    share = firsts.count("a") / len(firsts)
    assert 0.68 < share < 0.82  # 3:1 weights -> 75 %
    assert all(router.order(cands)[-1].provider == "c" for _ in range(50))
    plain = [A, B]
    assert all(router.order(plain) == plain for _ in range(20))


async def test_alias_weights_without_priority_spread_the_first_pick() -> None:
    router, _ = build({"a": Fake("a"), "b": Fake("b")})
    cands = [Cand("a", "x", weight=1), Cand("b", "x", weight=4)]
    firsts = [router.order(cands)[0].provider for _ in range(2000)]
    assert 0.72 < firsts.count("b") / len(firsts) < 0.88  # 4:1 -> 80 %
    assert all(len(router.order(cands)) == 2 for _ in range(10))  # the other stays as fallback


async def test_stream_falls_back_before_the_first_chunk_only() -> None:
    a, b = Fake("a", UpstreamError("down", provider="a")), Fake("b")
    router, _ = build({"a": a, "b": b})
    opened = await router.open_stream([A, B], stream())
    cand, first, rest = opened
    assert cand == B and first.data == {"i": 0, "by": "b"}
    assert [ch.data["i"] async for ch in rest] == [1, 2]
    assert a.closed == 1  # the failed attempt's iterator was closed
    assert opened.served_by == "b/m2:rc"


async def test_stream_failure_after_the_first_chunk_is_raised_not_retried() -> None:
    a, b = Fake("a"), Fake("b")
    router, _ = build({"a": a, "b": b}, threshold=1, max_retries=2)
    _, first, rest = await router.open_stream([A, B], stream(fail_after=2))
    got = [first.data["i"]]
    with pytest.raises(UpstreamError):
        async for ch in rest:
            got.append(ch.data["i"])
    assert got == [0, 1]
    assert b.calls == 0 and a.calls == 1
    assert router.breakers.get("a", "m1").state == "open"  # the mid-stream failure counted


async def test_empty_stream_counts_as_failure_and_falls_back() -> None:
    a, b = Fake("a"), Fake("b")
    router, _ = build({"a": a, "b": b})

    async def empty() -> AsyncIterator[ChatChunk]:
        return
        yield  # pragma: no cover

    def op(p: Fake, c: Cand) -> AsyncIterator[ChatChunk]:
        return empty() if p.name == "a" else p.stream(c)

    cand, _, rest = await router.open_stream([A, B], op)  # type: ignore[arg-type]
    await rest.aclose()
    assert cand == B
    assert b.closed == 1  # aclose reached the upstream iterator


async def test_a_provider_that_was_not_built_is_skipped() -> None:
    b = Fake("b")
    router, _ = build({"b": b})
    routed = await router.call([A, B], chat)
    assert routed.value == "b:m2"
    assert [x.outcome for x in routed.attempts] == ["unavailable", "ok"]
    with pytest.raises(Unavailable) as info:
        await router.call([A], chat)
    assert not isinstance(info.value, CircuitOpen)
    assert "provider a is not available" in info.value.message


async def test_local_concurrency_rejection_falls_back_without_charging_the_breaker() -> None:
    busy = RateLimited("upstream a is at its concurrency limit", retry_after=1.0, local=True)
    a, b = Fake("a", busy), Fake("b")
    router, _ = build({"a": a, "b": b}, threshold=1)
    for _ in range(3):
        routed = await router.call([A, B], chat)
        assert [x.outcome for x in routed.attempts] == ["busy", "ok"]
    assert router.breakers.get("a", "m1").state == "closed"
    assert a.calls == 3


async def test_timeouts_fall_back_but_are_not_retried() -> None:
    a = Fake("a", UpstreamTimeout("no answer within 60s", provider="a"))
    router, slept = build({"a": a}, max_retries=3, threshold=10)
    with pytest.raises(UpstreamTimeout):
        await router.call([A], chat)
    assert a.calls == 1 and slept == []  # the client already waited a whole timeout
    b = Fake("b")
    router, _ = build({"a": a, "b": b}, max_retries=3, threshold=10)
    assert (await router.call([A, B], chat)).value == "b:m2"


def _absent(p: str) -> UpstreamModelNotFound:
    return UpstreamModelNotFound(f"upstream {p} does not serve model 'm1' (HTTP 404)", provider=p)


async def test_upstream_404_falls_back_without_charging_the_breaker_or_retrying() -> None:
    """An unknown model at one provider does not stop the alias's next candidate, and the
    breaker stays closed (it would turn later truthful 404s into 503 circuit_open)."""
    a, b = Fake("a", _absent("a")), Fake("b")
    router, slept = build({"a": a, "b": b}, threshold=1, max_retries=3)
    for _ in range(3):
        routed = await router.call([A, B], chat)
        assert routed.value == "b:m2"
        assert [x.outcome for x in routed.attempts] == ["absent", "ok"]
    assert router.breakers.get("a", "m1").state == "closed"
    assert all(r["failures"] == 0 for r in router.health.snapshot() if r["provider"] == "a")
    alone, _ = build({"a": a}, threshold=1, max_retries=3)
    for _ in range(3):  # never a circuit_open: the client keeps hearing the truth
        with pytest.raises(UpstreamModelNotFound) as info:
            await alone.call([A], chat)
        assert info.value.http_status == 404 and info.value.code == "model_not_found"
    assert a.calls == 6 and slept == []  # not retried: the upstream will not learn the model


async def test_a_404_never_hides_another_candidates_real_failure() -> None:
    down = UpstreamError("upstream b failed (HTTP 500)", provider="b")
    for order in ([A, B], [B, A]):
        a, b = Fake("a", _absent("a")), Fake("b", down)
        router, _ = build({"a": a, "b": b})
        with pytest.raises(UpstreamError) as info:
            await router.call(order, chat)
        assert type(info.value) is UpstreamError and info.value.http_status == 502


async def test_a_404_with_the_other_candidate_skipped_by_an_open_circuit_is_503() -> None:
    a, b = Fake("a", _absent("a")), Fake("b", UpstreamError("down", provider="b"))
    router, _ = build({"a": a, "b": b}, threshold=1)
    with pytest.raises(UpstreamError):
        await router.call([B], chat)  # opens b's circuit
    with pytest.raises(CircuitOpen):
        await router.call([A, B], chat)


async def test_in_flight_counts_attempts_until_they_answer_whatever_the_outcome() -> None:
    """The breaker's ``in_flight`` (the admin API's "in flight") is up while an attempt waits and
    back to zero after a success, an upstream failure, a client error and a cancellation."""
    gate = asyncio.Event()
    seen: list[int] = []

    async def slow(p: Any, c: Cand) -> str:
        seen.append(router.breakers.get(c.provider, c.model).in_flight)
        await gate.wait()
        return str(await p.chat(c))

    a, b = Fake("a", UpstreamError("boom", provider="a")), Fake("b")
    router, _ = build({"a": a, "b": b})
    task = asyncio.create_task(router.call([B], slow))
    await asyncio.sleep(0)
    assert router.breakers.get("b", "m2").in_flight == 1
    gate.set()
    assert (await task).value == "b:m2"
    assert (await router.call([A, B], slow)).value == "b:m2"  # a failed, b served
    gate.clear()
    hung = asyncio.create_task(router.call([B], slow))
    await asyncio.sleep(0)
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    b.fail = InvalidRequest("bad")
    gate.set()
    with pytest.raises(InvalidRequest):
        await router.call([B], slow)
    assert seen == [1, 1, 1, 1, 1]
    assert router.breakers.get("a", "m1").in_flight == 0
    assert router.breakers.get("b", "m2").in_flight == 0
