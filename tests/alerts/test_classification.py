"""Classification through the gateway's own router: results marked as AI output, usage
attributed to the alert service, one LLM call per label set in a storm, and failures that leave
alerts unclassified and retried, never lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from llmgw.alerts.classifier import OUTPUT_SCHEMA, ClassificationResult, parse_output
from llmgw.config import Settings
from llmgw.server import create_app
from llmgw.server.app import gateway_of
from llmgw.storage.db import make_engine
from tests.alerts.amdata import am_alert, am_payload, later
from tests.asyncdump import bounded

HOOK = "/alerts/webhook"
RUNNING_LIMIT = 240.0
"""Seconds for a whole ``running`` block (pytest-timeout's 300 s would only show threads)."""


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app with its lifespan running and an in-process client to it.

    Bounded as a whole (start-up, the test's body, shutdown): httpx's timeouts do not apply
    to ``ASGITransport`` and a lifespan can wait on a task, so a hang fails here with every
    asyncio task's awaits rather than as pytest-timeout's dump of idle threads."""
    app = create_app(settings)
    async with (
        bounded(RUNNING_LIMIT, "the app (start-up, test, shutdown)"),
        app.router.lifespan_context(app),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://llmgw", timeout=20) as c:
            yield app, c


def query(db_url: str, sql: str) -> list[dict[str, Any]]:
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            out = []
            for r in conn.execute(sa.text(sql)).mappings():
                row = dict(r)
                for k, v in row.items():
                    if isinstance(v, str) and v[:1] in "{[":
                        with contextlib.suppress(ValueError):
                            row[k] = json.loads(v)
                out.append(row)
            return out
    finally:
        eng.dispose()


async def until(check: Callable[[], Any], limit: float = 60.0) -> Any:
    """Poll ``check`` (a background worker is doing the work) until it is truthy; bounded.

    60 s (was 20): on CI's 2 cores under pytest -n auto a worker's first classification (server
    start, the emulated LLM, the queue's poll) can be slow; a fast run returns as soon as it holds."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        value = check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def test_output_parsing_is_strict() -> None:
    good = {
        "severity": "warning",
        "category": "latency",
        "summary": "p99 up",
        "probable_cause": "GC",
        "recommendations": ["look"],
        "confidence": 0.7,
    }
    assert parse_output(json.dumps(good)) == ClassificationResult(**good)
    assert parse_output("```json\n" + json.dumps(good) + "\n```").severity == "warning"
    for bad in (
        "the alert is bad",
        "[]",
        json.dumps({**good, "severity": "sev1"}),
        json.dumps({**good, "confidence": 2}),
        json.dumps({**good, "extra": 1}),
        json.dumps({**good, "recommendations": ["x"] * 6}),
    ):
        with pytest.raises(ValueError):
            parse_output(bad)
    assert set(OUTPUT_SCHEMA["required"]) == set(ClassificationResult.model_fields)


async def test_classified_through_the_router_marked_ai_with_usage_for_the_alert_service(
    db_url: str,
    classifying_settings: Callable[..., Settings],
    hook_auth: dict[str, str],
    llm: Any,
) -> None:
    async with running(classifying_settings(db_url)) as (app, c):
        r = await c.post(HOOK, json=am_payload(), headers=hook_auth)
        assert r.status_code == 200
        (alert,) = await until(
            lambda: query(db_url, "SELECT * FROM alerts WHERE cls_status = 'ok'")
        )
        assert await asyncio.to_thread(gateway_of(app).flush_usage, 10.0)
    cls = alert["classification"]
    assert cls["model"] == "openai/gpt-4o-mini" and cls["prompt_version"] == "v1"
    assert cls["severity"] in ("critical", "error", "warning", "info")
    assert cls["cache_hit"] is False and "classified_at" in cls
    assert alert["category"] == cls["category"]
    assert llm.stats.requests == 1
    (usage,) = query(db_url, "SELECT * FROM usage")
    assert usage["endpoint"] == "alerts" and usage["key_id"] is None
    assert usage["metadata"]["service"] == "alerts"
    assert usage["metadata"]["alert_id"] == alert["id"]
    assert (usage["provider"], usage["model"], usage["status"]) == ("openai", "gpt-4o-mini", 200)
    assert usage["prompt_tokens"] > 0 and float(usage["cost"]) > 0
    events = query(db_url, f"SELECT kind, actor FROM alert_events WHERE alert_id = {alert['id']}")
    assert {"kind": "classified", "actor": "llm"} in events
    jobs = query(db_url, "SELECT state FROM alert_jobs WHERE step = 'classify'")
    assert jobs == [{"state": "done"}]


async def test_a_storm_of_one_alert_costs_one_call(
    db_url: str, classifying_settings: Callable[..., Settings], hook_auth: dict[str, str], llm: Any
) -> None:
    """300 occurrences of the same label set (batches of 10) plus 2 other label sets: 3 calls."""
    settings = classifying_settings(db_url, concurrency=16)
    async with running(settings) as (_, c):
        n = 0
        for batch in range(30):
            alerts = [am_alert(starts=later(batch * 10 + i)) for i in range(10)]
            r = await c.post(HOOK, json=am_payload(*alerts), headers=hook_auth)
            assert r.status_code == 200 and r.json()["new"] == 10
            n += 10
        for name in ("DiskFull", "MemoryLow"):
            r = await c.post(HOOK, json=am_payload(am_alert(name)), headers=hook_auth)
            assert r.status_code == 200
        await until(
            lambda: (
                query(db_url, "SELECT count(*) AS n FROM alerts WHERE cls_status = 'ok'")[0]["n"]
                == n + 2
            ),
            limit=60,
        )
    assert llm.stats.requests == 3
    hits = query(db_url, "SELECT classification FROM alerts")
    assert sum(1 for h in hits if h["classification"]["cache_hit"]) == n + 2 - 3


@pytest.mark.redis
async def test_the_cache_is_redis_with_a_ttl_when_configured(
    db_url: str,
    classifying_settings: Callable[..., Settings],
    hook_auth: dict[str, str],
    llm: Any,
    redis_url: str,
) -> None:
    import uuid

    import redis

    prefix = f"llmgw-test-{uuid.uuid4().hex[:8]}"
    settings = classifying_settings(
        db_url, cache_prefix=prefix, cache_ttl=600, top={"redis_url": redis_url}
    )
    async with running(settings) as (_, c):
        await c.post(HOOK, json=am_payload(am_alert(starts=later(0))), headers=hook_auth)
        await until(lambda: query(db_url, "SELECT id FROM alerts WHERE cls_status = 'ok'"))
        await c.post(HOOK, json=am_payload(am_alert(starts=later(60))), headers=hook_auth)
        await until(
            lambda: len(query(db_url, "SELECT id FROM alerts WHERE cls_status = 'ok'")) == 2
        )
    assert llm.stats.requests == 1
    r = redis.Redis.from_url(redis_url)
    try:
        keys = r.keys(f"{prefix}:cls:*")
        assert len(keys) == 1
        assert 0 < r.ttl(keys[0]) <= 600
        r.delete(*keys)
    finally:
        r.close()
    assert query(db_url, "SELECT * FROM alert_cls_cache") == []


@pytest.mark.parametrize("failure", ["provider_down", "invalid_json", "timeout"])
async def test_failures_leave_alerts_unclassified_and_retried_never_lost(
    db_url: str,
    classifying_settings: Callable[..., Settings],
    hook_auth: dict[str, str],
    llm: Any,
    failure: str,
) -> None:
    em = llm.server.app.state.emulator
    knobs: dict[str, Any] = {"max_attempts": 3}
    if failure == "provider_down":
        em.fail_rate = 1.0
        knobs["top"] = {"routing": {"max_retries": 0}}
    elif failure == "invalid_json":
        knobs["structured_output"] = False  # the emulator echoes the prompt: not JSON
    else:
        em.latency = 3.0
        knobs["timeout"] = 0.3
    expected = {"provider_down": "error", "invalid_json": "invalid_output", "timeout": "timeout"}
    async with running(classifying_settings(db_url, **knobs)) as (_, c):
        r = await c.post(HOOK, json=am_payload(), headers=hook_auth)
        assert r.status_code == 200  # the webhook never waits for the LLM
        (job,) = await until(
            lambda: query(db_url, "SELECT * FROM alert_jobs WHERE state = 'failed'")
        )
        (alert,) = query(db_url, "SELECT * FROM alerts")
        assert alert["status"] == "firing" and alert["cls_status"] == expected[failure]
        assert alert["classification"] is None
        assert job["attempts"] == 3 and job["last_error"].startswith(expected[failure])
        fails = query(db_url, "SELECT kind FROM alert_events WHERE kind = 'classification_failed'")
        assert len(fails) == 3
        # the provider is healthy again: a re-classify on demand succeeds
        em.fail_rate, em.latency = 0.0, 0.0
        if failure != "invalid_json":
            from llmgw.alerts.queries import AlertHistory

            eng = make_engine(db_url)
            AlertHistory(eng).reclassify(alert["id"], "ops@example.com")
            eng.dispose()
            await until(lambda: query(db_url, "SELECT id FROM alerts WHERE cls_status = 'ok'"))


async def test_a_used_up_rpm_fails_fast_and_retries_after_the_limiter_allows(
    db_url: str, classifying_settings: Callable[..., Settings], hook_auth: dict[str, str], llm: Any
) -> None:
    """``alerts.rpm = 1``: one call; the others are deferred to when the limiter allows one
    (still ``pending``, no event: nothing was attempted) without spending an attempt; later
    alerts are deferred at once, without asking the limiter again, until then."""
    settings = classifying_settings(db_url, rpm=1, retry_backoff=1)
    async with running(settings) as (app, c):
        for name in ("HighCPU", "DiskFull", "MemoryLow"):
            r = await c.post(HOOK, json=am_payload(am_alert(name)), headers=hook_auth)
            assert r.status_code == 200

        def settled() -> list[dict[str, Any]]:
            rows = query(db_url, "SELECT state, last_error FROM alert_jobs WHERE step = 'classify'")
            return rows if all(r["state"] == "done" or r["last_error"] for r in rows) else []

        await until(settled)
        completer = gateway_of(app).alerts.worker.steps["classify"].classifier.complete
        assert 50 < completer.blocked_for() <= 60  # the next token, one minute after the first
        # the deployment's own bucket: another one's calls on the same Redis never count
        assert completer.bucket == f"alerts:classifier:{settings.alerts.cache_prefix}"
        r = await c.post(HOOK, json=am_payload(am_alert("Late")), headers=hook_auth)
        await until(lambda: len(settled()) == 4)
    assert llm.stats.requests == 1
    statuses = sorted(r["cls_status"] for r in query(db_url, "SELECT cls_status FROM alerts"))
    assert statuses == ["ok", "pending", "pending", "pending"]
    assert not query(db_url, "SELECT id FROM alert_events WHERE kind = 'classification_failed'")
    waiting = query(
        db_url,
        "SELECT state, attempts, last_error, run_after FROM alert_jobs"
        " WHERE step = 'classify' AND state = 'pending'",
    )
    assert len(waiting) == 3  # queued again, for when the limiter allows a call
    assert all("alerts.rpm is used up" in w["last_error"] for w in waiting)
    # no call was made for them: a storm above alerts.rpm does not use up alerts.max_attempts
    assert [w["attempts"] for w in waiting] == [0, 0, 0]


async def test_occurrences_refused_by_a_used_up_rpm_come_back_one_per_turn_oldest_first() -> None:
    """Issue 14: a backlog refused by ``alerts.rpm`` is queued again at about the rate the
    limiter can take it (one ``60 / rpm`` apart, from when it allows again), not all due at
    once, where every retry period claimed, read and settled the whole backlog for a few calls."""
    from llmgw.alerts.classifier import Classifier
    from llmgw.alerts.stats import AlertStats
    from llmgw.config import AlertsSettings

    now = [1000.0]

    class Blocked:
        calls = 0

        def blocked_for(self) -> float:
            return 5.0

        async def __call__(self, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            raise AssertionError("no call while alerts.rpm is used up")

    complete = Blocked()
    classifier = Classifier(
        complete, None, AlertsSettings(rpm=60), AlertStats(), clock=lambda: now[0]
    )
    waits = []
    for i in range(3):
        out = await classifier.classify({"labels": {"alertname": f"A{i}"}})
        assert (out.status, out.called) == ("error", False)
        assert out.retry_after is not None
        waits.append(round(out.retry_after, 3))
    assert waits == [5.1, 6.1, 7.1]  # just after the limiter allows, then one second apart
    now[0] += 3600  # the backlog's turns are long past: the next refusal starts afresh
    out = await classifier.classify({"labels": {"alertname": "B"}})
    assert out.retry_after is not None and round(out.retry_after, 3) == 5.1
    assert complete.calls == 0
