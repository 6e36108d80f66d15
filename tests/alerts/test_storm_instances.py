"""Single-flight classification across instances: two gateways on one PostgreSQL database (and
one Redis, or the database's claims without it) take a storm's jobs from the same queue and make
one LLM call per distinct label set, counted at the emulator and in the usage rows (the 10,000
alert storm with two ``llmgw serve`` processes is tests/perf/bench_alerts.py's)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from llmgw.config import Settings
from llmgw.server.app import gateway_of
from tests.alerts.amdata import am_alert, am_payload, later
from tests.alerts.test_classification import query, running, until

HOOK = "/alerts/webhook"


@pytest.mark.postgres
@pytest.mark.parametrize("shared", ["redis", "database"])
async def test_two_instances_make_one_call_per_label_set(
    pg_url: str,
    classifying_settings: Callable[..., Settings],
    hook_auth: dict[str, str],
    llm: Any,
    shared: str,
    request: pytest.FixtureRequest,
) -> None:
    top: dict[str, Any] = {}
    prefix = f"llmgw-test-{uuid.uuid4().hex[:8]}"
    if shared == "redis":
        top["redis_url"] = request.getfixturevalue("redis_url")
    llm.server.app.state.emulator.latency = 0.3  # calls overlap: the race is real
    settings = classifying_settings(pg_url, concurrency=8, cache_prefix=prefix, top=top)
    names = ("HighCPU", "DiskFull", "MemoryLow")
    per_name = 200
    async with running(settings) as (app_a, a), running(settings) as (app_b, b):
        for i in range(per_name // 10):
            for k, name in enumerate(names):
                alerts = [am_alert(name, starts=later(i * 10 + j)) for j in range(10)]
                hook = (a, b)[(i + k) % 2]  # the storm reaches both instances
                r = await hook.post(HOOK, json=am_payload(*alerts), headers=hook_auth)
                assert r.status_code == 200 and r.json()["new"] == 10
        total = per_name * len(names)
        await until(
            lambda: (
                query(pg_url, "SELECT count(*) AS n FROM alerts WHERE cls_status = 'ok'")[0]["n"]
                == total
            ),
            limit=120,
        )
        for app in (app_a, app_b):
            assert await asyncio.to_thread(gateway_of(app).flush_usage, 10.0)
        ran = [
            gateway_of(app).alerts.stats.classifications["ok"]
            + gateway_of(app).alerts.stats.cache["hit"]
            for app in (app_a, app_b)
        ]
        waited = sum(gateway_of(app).alerts.stats.cache["waited"] for app in (app_a, app_b))
    assert llm.stats.requests == len(names)
    usage = query(pg_url, "SELECT metadata FROM usage WHERE endpoint = 'alerts'")
    assert len(usage) == len(names)
    assert all(ran), ran  # both instances classified part of the storm
    assert waited >= 1  # one waited for the other's claim at least once
    hits = query(pg_url, "SELECT classification FROM alerts")
    assert sum(1 for h in hits if not h["classification"]["cache_hit"]) == len(names)
    if shared == "redis":
        import redis

        cache = redis.Redis.from_url(top["redis_url"])
        try:
            keys = cache.keys(f"{prefix}:*") + cache.keys("lock:*")
            assert len(cache.keys(f"{prefix}:cls:*")) == len(names)
            if keys:
                cache.delete(*cache.keys(f"{prefix}:*"))
        finally:
            cache.close()
    else:
        rows = query(pg_url, "SELECT key FROM alert_cls_cache")
        assert len([k for k in rows if not k["key"].startswith("lock:")]) == len(names)
        assert [k for k in rows if k["key"].startswith("lock:")] == []  # claims given back
