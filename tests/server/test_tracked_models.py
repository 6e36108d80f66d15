"""Per-model state is bounded on providers with ``models = []``, and one caller's model names are
never shown to another (``/api/providers``, ``provider_status``, metrics: security catalogue IN-7,
names outside the configured lists never become labels or rows)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from llmgw.config import Settings
from llmgw.routing.tracked import SHARED, TrackedModels
from llmgw.server.app import gateway_of

from .conftest import running

MSG = [{"role": "user", "content": "hi"}]


async def _catalog_ready(app: Any) -> None:
    deadline = time.monotonic() + 10
    while gateway_of(app).catalog.refreshed_at is None and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def test_in7_invented_names_share_one_state_and_stay_private(
    upstream_factory: Callable[..., Any],
    make_settings: Callable[..., Settings],
    make_key: Callable[..., Any],
    test_engine: Any,
) -> None:
    """300 distinct client-chosen names on a pass-through provider: one shared breaker and health
    row (``*``), none of the names in /api/providers, provider_status or /metrics."""
    emu = upstream_factory(models=())  # answers any model name, lists none
    settings = make_settings(emu.url, provider={"models": []})
    alice = {"Authorization": f"Bearer {make_key('alice').secret}"}
    bob = {"Authorization": f"Bearer {make_key('bob').secret}"}
    async with running(settings) as (app, c):
        await _catalog_ready(app)
        for i in range(300):
            body = {"model": f"openai/alice-secret-project-{i}", "messages": MSG}
            r = await c.post("/v1/chat/completions", json=body, headers=alice)
            assert r.status_code == 200, r.text
        g = gateway_of(app)
        assert len(g.router.breakers) == 1
        assert [(r["provider"], r["model"]) for r in g.router.health.snapshot()] == [
            ("openai", SHARED)
        ]
        seen = await c.get("/api/providers", headers=bob)
        assert seen.status_code == 200 and "alice-secret" not in seen.text
        assert [(r["model"], r["requests"]) for r in seen.json()["data"]] == [(SHARED, 300)]
        assert "alice-secret" not in (await c.get("/metrics")).text
        await asyncio.to_thread(g.health_writer.write_once)
    with test_engine.connect() as conn:
        models = conn.execute(sa.text("SELECT model FROM provider_status")).scalars().all()
    assert models == [SHARED]


async def test_upstream_listed_names_are_tracked_up_to_the_maximum(
    upstream_factory: Callable[..., Any],
    make_settings: Callable[..., Settings],
    make_key: Callable[..., Any],
    home: Any,
    db_file: str,
    test_engine: Any,
) -> None:
    """Names the upstream lists get state of their own, at most ``max_tracked_models`` per
    provider, least recently used out; unlisted names keep sharing ``*``."""
    emu = upstream_factory()  # lists gpt-4o-mini and text-embedding-3-small
    base = make_settings(emu.url, provider={"models": []})
    settings = base.model_copy(
        update={"routing": base.routing.model_copy(update={"max_tracked_models": 1})}
    )
    auth = {"Authorization": f"Bearer {make_key('k').secret}"}
    async with running(settings) as (app, c):
        await _catalog_ready(app)
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "openai/gpt-4o-mini", "messages": MSG},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        health = gateway_of(app).router.health
        assert {r["model"] for r in health.snapshot()} == {"gpt-4o-mini"}
        r = await c.post(
            "/v1/embeddings",
            json={"model": "openai/text-embedding-3-small", "input": "x"},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        # The maximum is 1: the older name's breaker and health row are gone.
        assert {r["model"] for r in health.snapshot()} == {"text-embedding-3-small"}
        assert len(gateway_of(app).router.breakers) == 1


def test_lru_evicts_the_least_recently_used_name() -> None:
    evicted: list[tuple[str, str]] = []
    t = TrackedModels(
        ["p"],
        max_tracked=2,
        offered=lambda provider, model: model.startswith("real-"),
        on_evict=lambda provider, model: evicted.append((provider, model)),
    )
    assert t.key("p", "invented") == SHARED
    assert t.key("configured", "anything") == "anything"  # a provider with a models list
    assert [t.key("p", m) for m in ("real-a", "real-b", "real-a", "real-c")] == [
        "real-a",
        "real-b",
        "real-a",
        "real-c",
    ]
    assert evicted == [("p", "real-b")] and t.tracked("p") == ["real-a", "real-c"]
