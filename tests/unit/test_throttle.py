"""Login throttling (``llmgw.identity.throttle``): capped, doubling locks; the same decisions in
memory and in Redis (real Redis, with an injected clock)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmgw.identity.throttle import (
    LOGIN_POLICIES,
    LoginThrottle,
    MemoryStore,
    Policy,
    RedisStore,
)

P = Policy("t", free=3, base=2.0, cap=10.0, window=60.0)


def test_policy_locks_double_from_base_and_stop_at_cap() -> None:
    assert [P.lock_after(n) for n in range(1, 9)] == [0, 0, 0, 2, 4, 8, 10, 10]
    assert P.lock_after(10_000) == 10.0  # no overflow, never longer than the cap


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store_and_clock(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, list[float]]]:
    now = [1_000_000.0]
    if request.param == "memory":
        yield MemoryStore(clock=lambda: now[0]), now
        return
    url = request.getfixturevalue("redis_url")
    store = RedisStore(url, prefix=f"llmgw:test:throttle:{uuid.uuid4().hex}", clock=lambda: now[0])
    try:
        yield store, now
    finally:
        await store.aclose()


async def test_fail_lock_and_expiry_same_in_memory_and_redis(store_and_clock: Any) -> None:
    store, now = store_and_clock
    locks = [await store.fail("k", P) for _ in range(5)]
    assert locks == [0, 0, 0, 2, 4]
    assert await store.locked_for("k") == pytest.approx(4.0)
    now[0] += 3
    assert await store.locked_for("k") == pytest.approx(1.0)
    now[0] += 1.5
    assert await store.locked_for("k") == 0
    assert await store.locked_for("other") == 0
    await store.clear("k")
    assert await store.fail("k", P) == 0  # counting starts again


async def test_counts_are_forgotten_after_the_window(store_and_clock: Any) -> None:
    store, now = store_and_clock
    for _ in range(3):
        await store.fail("k", P)
    now[0] += P.window + 1
    if isinstance(store, MemoryStore):
        assert await store.fail("k", P) == 0
    else:  # Redis forgets by key expiry (PEXPIRE, Redis' own clock): the TTL says when
        ttl = await store._client.pttl(store._key("k"))
        assert 0 < ttl <= P.window * 1000


async def test_marks(store_and_clock: Any) -> None:
    store, now = store_and_clock
    assert not await store.marked("m")
    await store.mark("m", 30)
    assert await store.marked("m")
    if isinstance(store, MemoryStore):
        now[0] += 31
        assert not await store.marked("m")


async def test_login_throttle_lock_is_capped_so_nobody_is_locked_out_for_good() -> None:
    """However many misses, the pair's lock is at most 15 min after the last one; attempts made
    while locked are not counted (a retrying owner does not extend it), and then it opens."""
    now = [0.0]
    t = LoginThrottle(MemoryStore(clock=lambda: now[0]))
    for _ in range(40):
        if await t.wait("ann@example.com", "10.0.0.1") == 0:
            await t.failure("ann@example.com", "10.0.0.1")
        now[0] += 1
    wait = await t.wait("ann@example.com", "10.0.0.1")
    assert 0 < wait <= LOGIN_POLICIES["pair"].cap
    now[0] += LOGIN_POLICIES["pair"].cap
    assert await t.wait("ann@example.com", "10.0.0.1") == 0
    # Another address was never affected; the account-wide counter saw too few misses.
    assert await t.wait("ann@example.com", "10.0.0.2") == 0


async def test_emails_are_hashed_in_redis_keys(redis_url: str) -> None:
    prefix = f"llmgw:test:throttle:{uuid.uuid4().hex}"
    store = RedisStore(redis_url, prefix=prefix)
    try:
        await LoginThrottle(store).failure("Ann@Example.com", "10.0.0.1")
        keys = [k.decode() async for k in store._client.scan_iter(f"{prefix}:*")]
        assert len(keys) == 3
        assert not any("ann" in k.lower() or "10.0.0.1" in k for k in keys)
    finally:
        await store.aclose()


async def test_memory_store_is_bounded() -> None:
    store = MemoryStore(clock=lambda: 0.0, max_keys=10)
    for i in range(100):
        await store.fail(f"k{i}", P)
        await store.mark(f"m{i}", 10)
    assert len(store._counts) <= 10 and len(store._marks) <= 10


async def test_redis_down_means_unthrottled_not_locked_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis that refuses connections: no lock, no exception, one warning (port 9 is closed)."""
    store = RedisStore("redis://127.0.0.1:9/0", timeout=0.2)
    try:
        t = LoginThrottle(store)
        for _ in range(10):
            assert await t.failure("ann@example.com", "10.0.0.1") == 0
        assert await t.wait("ann@example.com", "10.0.0.1") == 0
        await t.success("ann@example.com", "10.0.0.1")
    finally:
        await store.aclose()
    warnings = [r for r in caplog.records if "login throttling is off" in r.getMessage()]
    assert len(warnings) == 1
