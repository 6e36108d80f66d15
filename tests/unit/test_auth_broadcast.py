"""The key change feed (llmgw.auth.broadcast) and KeyCache.apply, on real Redis and SQLite.

security.md §2.3 ("revocation propagates to every instance within a stated bound") and AUTH-4
at the unit level: what a change drops from the cache, that a missed message, a Redis restart
or a broken link are caught by the version key, and that Redis down breaks nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from sqlalchemy.engine import Engine

from llmgw.auth.broadcast import ChangeListener, ChangePublisher
from llmgw.auth.changes import AuthChange, decode, encode
from llmgw.auth.keys import KeyInfo, KeyService
from llmgw.auth.users import UserService
from llmgw.errors import AuthError
from llmgw.server.auth import KeyCache


@pytest.fixture
def sqlite_engine(home: Path) -> Iterator[Engine]:
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    eng = make_engine(f"sqlite:///{home / 'feed.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def headers(secret: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {secret}".encode())]


def cache_for(keys: Any, clock: Any, ttl: float = 30.0) -> KeyCache:
    return KeyCache(keys, ttl=ttl, clock=clock.monotonic, wall_clock=clock.time)


def test_messages_round_trip_and_garbage_is_refused() -> None:
    change = AuthChange(keys=(uuid.uuid4(),), users=(uuid.uuid4(),), forget_refusals=True)
    assert decode(f"7 {encode(change)}".encode()) == (7, change)
    assert decode("1 " + encode(AuthChange())) == (1, AuthChange())
    for bad in (
        b"x {}",
        b"3 [1]",
        b'3 {"k": ["no-uuid"]}',
        b'3 {"k": [1]}',
        b'3 {"u": 5}',
        b"\xff",
    ):
        with pytest.raises(ValueError):
            decode(bad)


async def test_a_key_change_drops_that_key_only(sqlite_engine: Engine, fake_clock: Any) -> None:
    """AUTH-4: with a 30 s cache, a revoked key is refused at the next request after apply()."""
    changes: list[AuthChange] = []
    svc = KeyService(sqlite_engine, on_change=changes.append)
    a, b = svc.create("a"), svc.create("b")
    clock = fake_clock
    cache = cache_for(svc, clock)
    await cache.authenticate(headers(a.secret))
    await cache.authenticate(headers(b.secret))
    svc.revoke(str(a.info.id))
    assert changes == [AuthChange(keys=(a.info.id,))]
    assert (await cache.authenticate(headers(a.secret))).id == a.info.id  # cached: still trusted
    lookups = cache.db_lookups
    cache.apply(changes[-1])
    with pytest.raises(AuthError):
        await cache.authenticate(headers(a.secret))
    await cache.authenticate(headers(b.secret))
    assert cache.db_lookups == lookups + 1  # b came from the cache; only a was looked up


async def test_rotation_announces_the_old_key(sqlite_engine: Engine) -> None:
    changes: list[AuthChange] = []
    svc = KeyService(sqlite_engine, on_change=changes.append)
    old = svc.create("r")
    new = svc.rotate(str(old.info.id))
    assert changes == [AuthChange(keys=(old.info.id,))]
    assert new.info.rotated_from == old.info.id


async def test_user_disable_and_enable_reach_cached_keys_and_cached_refusals(
    sqlite_engine: Engine, fake_clock: Any
) -> None:
    changes: list[AuthChange] = []
    users = UserService(sqlite_engine, on_change=changes.append)
    users.create("ann@example.com")
    svc = KeyService(sqlite_engine)
    k = svc.create("ann", user="ann@example.com")
    cache = cache_for(svc, fake_clock)
    await cache.authenticate(headers(k.secret))
    disabled = users.disable("ann@example.com")
    assert changes[-1] == AuthChange(users=(disabled.id,))
    cache.apply(changes[-1])
    with pytest.raises(AuthError):
        await cache.authenticate(headers(k.secret))
    users.enable("ann@example.com")
    assert changes[-1] == AuthChange(users=(disabled.id,), forget_refusals=True)
    with pytest.raises(AuthError):  # the refusal is cached (5 s) until the change arrives
        await cache.authenticate(headers(k.secret))
    cache.apply(changes[-1])
    assert (await cache.authenticate(headers(k.secret))).id == k.info.id


async def test_without_a_change_the_cache_bound_applies(
    sqlite_engine: Engine, fake_clock: Any
) -> None:
    """No Redis: a revoked key works until ``key_cache_seconds`` passed, then is refused."""
    svc = KeyService(sqlite_engine)
    k = svc.create("bound")
    clock = fake_clock
    cache = cache_for(svc, clock, ttl=2.0)
    await cache.authenticate(headers(k.secret))
    svc.revoke(str(k.info.id))
    clock.advance(1.9)
    assert (await cache.authenticate(headers(k.secret))).id == k.info.id
    clock.advance(0.2)
    with pytest.raises(AuthError):
        await cache.authenticate(headers(k.secret))


class GatedKeys:
    """A real ``KeyService`` whose look-ups wait for the test to open a gate."""

    def __init__(self, svc: KeyService) -> None:
        self.svc = svc
        self.gate = threading.Event()
        self.entered = threading.Event()

    def authenticate(self, secret: str) -> KeyInfo:
        info = self.svc.authenticate(secret)  # read before the change...
        self.entered.set()
        self.gate.wait(10)  # ...returned after it
        return info

    def touch_last_used(self, seen: Any) -> None:
        self.svc.touch_last_used(seen)


async def test_a_look_up_in_flight_during_a_change_is_not_cached(
    sqlite_engine: Engine, fake_clock: Any
) -> None:
    svc = KeyService(sqlite_engine)
    k = svc.create("racing")
    gated = GatedKeys(svc)
    cache = cache_for(gated, fake_clock)
    task = asyncio.create_task(cache.authenticate(headers(k.secret)))
    await asyncio.to_thread(gated.entered.wait, 10)
    svc.revoke(str(k.info.id))
    cache.apply(AuthChange(keys=(k.info.id,)))
    gated.gate.set()
    assert (await task).id == k.info.id  # that request had been let in already
    assert len(cache) == 0  # but the stale answer was not kept
    with pytest.raises(AuthError):
        await cache.authenticate(headers(k.secret))


async def test_resync_drops_refusals_and_looks_keys_up_again(
    sqlite_engine: Engine, fake_clock: Any
) -> None:
    svc = KeyService(sqlite_engine)
    k = svc.create("resync")
    cache = cache_for(svc, fake_clock)
    await cache.authenticate(headers(k.secret))
    with pytest.raises(AuthError):
        await cache.authenticate(headers("llmgw_" + "Z" * 43))
    assert len(cache) == 2
    lookups = cache.db_lookups
    cache.apply(None)
    assert len(cache) == 1  # the key stays for stale grace (database down), due for a look-up
    await cache.authenticate(headers(k.secret))
    assert cache.db_lookups == lookups + 1


# -- the feed on a real Redis ------------------------------------------------------------------


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"llmgw-test:{uuid.uuid4().hex[:12]}:auth"
    yield name
    client = redis_sync.Redis.from_url(redis_url)
    client.delete(f"{name}:version")
    client.close()


class Recorder:
    """What a listener applied, in order (``None`` = resync)."""

    def __init__(self) -> None:
        self.applied: list[AuthChange | None] = []

    def __call__(self, change: AuthChange | None) -> None:
        self.applied.append(change)

    async def wait_for(
        self, pred: Callable[[list[AuthChange | None]], bool], limit: float
    ) -> float:
        start = time.monotonic()
        while not pred(self.applied):
            assert time.monotonic() - start < limit, f"not within {limit} s: {self.applied}"
            await asyncio.sleep(0.005)
        return time.monotonic() - start


@pytest.fixture
async def feed(redis_url: str, prefix: str) -> AsyncIterator[tuple[ChangeListener, Recorder]]:
    rec = Recorder()
    listener = ChangeListener(redis_url, rec, prefix=prefix, check_interval=0.1, timeout=1.0)
    listener.start()
    start = time.monotonic()
    while not listener.connected:
        assert time.monotonic() - start < 5
        await asyncio.sleep(0.01)
    yield listener, rec
    await listener.aclose()


@pytest.mark.redis
async def test_a_published_change_arrives_within_milliseconds(
    feed: tuple[ChangeListener, Recorder], redis_url: str, prefix: str
) -> None:
    listener, rec = feed
    pub = ChangePublisher(redis_url, prefix=prefix, timeout=1.0)
    change = AuthChange(keys=(uuid.uuid4(),))
    await asyncio.to_thread(pub.publish, change)
    assert pub.error is None
    took = await rec.wait_for(lambda a: change in a, 1.0)
    assert rec.applied == [change]  # no resync: the message carried the version
    assert listener.resyncs == 0 and listener.received == 1
    assert took < 1.0
    pub.close()


@pytest.mark.redis
async def test_a_missed_message_is_caught_by_the_version_key(
    feed: tuple[ChangeListener, Recorder], redis_url: str, prefix: str
) -> None:
    """A change whose message never arrived (here: only the version moved) still drops the
    cache within a few check intervals."""
    listener, rec = feed
    client = redis_sync.Redis.from_url(redis_url)
    client.incr(f"{prefix}:version")
    await rec.wait_for(lambda a: None in a, 1.0)
    assert listener.resyncs == 1
    client.delete(f"{prefix}:version")  # Redis lost its data: the version went back
    await rec.wait_for(lambda a: a.count(None) == 2, 1.0)
    client.publish(f"{prefix}:changes", b"garbage")
    await rec.wait_for(lambda a: a.count(None) == 3, 1.0)
    client.close()


@pytest.mark.redis
async def test_a_broken_link_reconnects_and_resyncs(
    feed: tuple[ChangeListener, Recorder], redis_url: str, prefix: str
) -> None:
    listener, rec = feed
    client = redis_sync.Redis.from_url(redis_url)
    mine = [c for c in client.client_list() if c.get("name") == listener.client_name]
    assert mine, "the feed names its connections"
    for c in mine:
        client.client_kill_filter(_id=c["id"])
    await rec.wait_for(lambda a: None in a, 5.0)
    assert listener.connected
    change = AuthChange(users=(uuid.uuid4(),))
    ChangePublisher(redis_url, prefix=prefix, timeout=1.0).publish(change)
    await rec.wait_for(lambda a: change in a, 1.0)
    client.close()


async def test_redis_down_breaks_nothing() -> None:
    """Refused port: the publisher reports one line, the listener counts errors, neither raises."""
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    pub = ChangePublisher(url, prefix="x", timeout=0.2)
    pub.publish(AuthChange(keys=(uuid.uuid4(),)))
    assert pub.error is not None and "\n" not in pub.error
    rec = Recorder()
    listener = ChangeListener(
        url, rec, prefix="x", check_interval=0.05, timeout=0.2, retry_interval=0.05
    )
    listener.start()
    start = time.monotonic()
    while listener.errors < 2:
        assert time.monotonic() - start < 5
        await asyncio.sleep(0.01)
    assert not listener.connected and rec.applied == []
    await listener.aclose()
