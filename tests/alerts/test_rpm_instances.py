"""``alerts.rpm`` across instances: two gateways on one PostgreSQL database and one Redis share the
classifier's GCRA bucket, so the LLM calls they make (the alert service's usage rows by their
time, and the OpenAI emulator's own count of requests) stay within one minute's burst plus the
refill, whatever the number of instances. A negative control (each instance on a bucket of its
own) shows the check catches an overrun; an instance whose limiter cannot reach Redis in time
makes no call (before, it counted a local bucket of the whole ``rpm`` and the two instances
together made twice the limit: the 309-330 calls in 20 s of a loaded benchmark round).
security.md cases RL-2 (one limit across instances), RL-4 (the negative control) and RL-5
(Redis failing; for ``alerts.rpm`` no local share, no call)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from llmgw.config import Settings
from llmgw.server.app import gateway_of
from tests.alerts.amdata import am_alert, am_payload
from tests.alerts.test_classification import query, running, until

HOOK = "/alerts/webhook"
RPM = 6
"""Small, so a burst and its refill are a few calls and the test takes seconds."""
ALERTS = 40
"""Distinct label sets (no cache hit, no shared flight): well above what ``RPM`` allows."""
WINDOW = 12.0
"""Seconds watched from the first delivery: the bucket refills one call per 10 s meanwhile."""


def rpm_allows(rpm: int, seconds: float) -> int:
    """The most calls a GCRA bucket of ``rpm`` per minute admits in ``seconds`` from full: its
    burst (a minute's worth) plus its refill."""
    return int(rpm + rpm * seconds / 60)


def _calls_before(pg_url: str, end: datetime) -> int:
    rows = query(
        pg_url,
        "SELECT created_at FROM usage WHERE endpoint = 'alerts' ORDER BY created_at",
    )
    return sum(1 for r in rows if r["created_at"] < end)


async def _watch(
    pg_url: str, settings: tuple[Settings, Settings], hook_auth: dict[str, str], llm: Any
) -> dict[str, Any]:
    """Two instances take ``ALERTS`` distinct alerts (half delivered to each); after ``WINDOW``
    seconds: the calls made (usage rows and the emulator's requests), the seconds, each
    instance's own calls and its jobs called or deferred, its limiter's state."""
    # calls take a while, so both instances claim their first batch before either is refused
    # (once refused, an instance defers the queue's other new jobs to their turns, 60 / RPM s
    # apart: the other instance would find none due)
    llm.server.app.state.emulator.latency = 0.5
    async with running(settings[0]) as (app_a, a), running(settings[1]) as (app_b, b):
        start, t0 = datetime.now(UTC), time.monotonic()
        for i in range(ALERTS // 10):
            alerts = [
                am_alert(f"Rpm{i}", labels={"instance": f"node{i}-{j}:9100"}) for j in range(10)
            ]
            r = await (a, b)[i % 2].post(HOOK, json=am_payload(*alerts), headers=hook_auth)
            assert r.status_code == 200 and r.json()["new"] == 10
        # the limit is reached (the test is not vacuous), then the rest of the window
        await until(lambda: llm.stats.requests >= RPM, limit=60)
        await asyncio.sleep(max(0.0, WINDOW - (time.monotonic() - t0)))
        requests, end = llm.stats.requests, datetime.now(UTC)
        gateways = [gateway_of(app) for app in (app_a, app_b)]
        for g in gateways:
            assert await asyncio.to_thread(g.flush_usage, 10.0)
        own = [g.alerts.stats.classifications["ok"] for g in gateways]
        tried = [
            own[i] + g.alerts.stats.classifications["deferred"] for i, g in enumerate(gateways)
        ]
        limiters = [(g.limiter.degraded, g.limiter.backend_errors) for g in gateways]
        classified = query(pg_url, "SELECT count(*) AS n FROM alerts WHERE cls_status = 'ok'")
    return {
        "calls": _calls_before(pg_url, end),
        "requests": requests,
        "seconds": (end - start).total_seconds(),
        "own": own,
        "tried": tried,
        "limiters": limiters,
        "classified": classified[0]["n"],
    }


def _clean(redis_url: str, *prefixes: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        for prefix in prefixes:
            keys = r.keys(f"{prefix}:*")
            if keys:
                r.delete(*keys)
    finally:
        r.close()


@pytest.mark.postgres
async def test_two_instances_share_alerts_rpm(
    pg_url: str,
    redis_url: str,
    classifying_settings: Callable[..., Settings],
    hook_auth: dict[str, str],
    llm: Any,
) -> None:
    prefix = f"llmgw-test-{uuid.uuid4().hex[:8]}"
    s = classifying_settings(pg_url, rpm=RPM, cache_prefix=prefix, top={"redis_url": redis_url})
    try:
        got = await _watch(pg_url, (s, s), hook_auth, llm)
    finally:
        _clean(redis_url, prefix)
    allowed = rpm_allows(RPM, got["seconds"])
    assert RPM <= got["calls"] <= allowed, got  # the emulator's count agrees
    assert RPM <= got["requests"] <= allowed, got
    assert all(got["tried"]), got  # both instances took jobs: one bucket between them
    assert got["classified"] < ALERTS  # the others wait for their turns


@pytest.mark.postgres
async def test_negative_control_a_bucket_per_instance_is_caught(
    pg_url: str,
    redis_url: str,
    classifying_settings: Callable[..., Settings],
    hook_auth: dict[str, str],
    llm: Any,
) -> None:
    """The same check on two instances counting separately (each its own ``cache_prefix``,
    hence its own bucket) sees the overrun: the check above is able to fail."""
    prefixes = [f"llmgw-test-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    a, b = (
        classifying_settings(pg_url, rpm=RPM, cache_prefix=p, top={"redis_url": redis_url})
        for p in prefixes
    )
    try:
        got = await _watch(pg_url, (a, b), hook_auth, llm)
    finally:
        _clean(redis_url, *prefixes)
    assert got["calls"] > rpm_allows(RPM, got["seconds"]), got
    assert got["requests"] > rpm_allows(RPM, got["seconds"]), got


@pytest.mark.postgres
async def test_an_instance_whose_limiter_cannot_reach_redis_makes_no_call(
    pg_url: str,
    redis_url: str,
    classifying_settings: Callable[..., Settings],
    hook_auth: dict[str, str],
    llm: Any,
) -> None:
    """Instance B's rate limiter times out on every Redis call (``ratelimit.redis_timeout`` of
    a microsecond: Redis "slow" as on the loaded benchmark machine) while its cache and queue
    work: its limiter is degraded, and the classifier makes no call on a local count."""
    prefix = f"llmgw-test-{uuid.uuid4().hex[:8]}"
    top = {"redis_url": redis_url}
    a = classifying_settings(pg_url, rpm=RPM, cache_prefix=prefix, top=top)
    b = classifying_settings(
        pg_url, rpm=RPM, cache_prefix=prefix, top={**top, "ratelimit": {"redis_timeout": 1e-6}}
    )
    try:
        got = await _watch(pg_url, (a, b), hook_auth, llm)
    finally:
        _clean(redis_url, prefix)
    assert got["limiters"][1][0] and got["limiters"][1][1] > 0, got  # B: degraded
    assert not got["limiters"][0][0], got
    allowed = rpm_allows(RPM, got["seconds"])
    assert RPM <= got["calls"] <= allowed, got
    assert RPM <= got["requests"] <= allowed, got
    assert got["own"][1] == 0 < got["tried"][1], got  # B deferred its jobs instead of calling
