"""The model catalog: configured models, models discovered from an upstream in the background, aliases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from llmgw.config import ProviderConfig, Settings
from llmgw.emulators.openai import create_app
from llmgw.emulators.runner import RunningServer, serve_in_thread
from llmgw.providers.openai_compat import OpenAICompatProvider
from llmgw.routing.catalog import ModelCatalog

KEY = "sk-catalog-test-key"


@pytest.fixture
def upstream() -> Iterator[RunningServer]:
    with serve_in_thread(create_app(api_key=KEY, models=("m-one", "m-two"))) as srv:
        yield srv


def settings(url: str) -> Settings:
    return Settings(
        providers=[
            ProviderConfig(name="fixed", kind="openai", base_url=f"{url}/v1", models=["gpt-x"]),
            ProviderConfig(name="ask", kind="openai", base_url=f"{url}/v1", connect_timeout=1.0),
        ],
        aliases={"smart": ["fixed/gpt-x", "ask/m-one"]},
    )


async def test_discovers_models_in_the_background_and_caches_them(upstream: RunningServer) -> None:
    s = settings(upstream.url)
    providers = {p.name: OpenAICompatProvider(p, KEY) for p in s.providers}
    cat = ModelCatalog(s, providers, interval=0.05)
    try:
        assert cat.ids() == ["fixed/gpt-x", "smart"]  # nothing discovered yet
        cat.start()
        for _ in range(200):
            if cat.refreshed_at is not None:
                break
            await asyncio.sleep(0.01)
        assert cat.ids() == ["fixed/gpt-x", "ask/m-one", "ask/m-two", "smart"]
        owners = {e["id"]: e["owned_by"] for e in cat.entries()}
        assert owners["ask/m-one"] == "ask" and owners["smart"] == "llmgw"
        calls = upstream.app.state.stats.listings
        for _ in range(20):
            cat.entries()  # served from the cache: no upstream call
        assert upstream.app.state.stats.listings == calls
        await asyncio.sleep(0.2)
        assert upstream.app.state.stats.listings > calls  # but refreshed periodically
    finally:
        await cat.aclose()
        for p in providers.values():
            await p.aclose()


async def test_a_failed_refresh_keeps_the_last_good_list(upstream: RunningServer) -> None:
    s = settings(upstream.url)
    providers = {p.name: OpenAICompatProvider(p, KEY) for p in s.providers}
    cat = ModelCatalog(s, providers)
    try:
        await cat.refresh()
        assert "ask/m-two" in cat.ids() and cat.errors == {}
        em = upstream.app.state.emulator
        good, em.auth = em.auth, b"Bearer another-key"  # the upstream now refuses our key
        await cat.refresh()
        assert "ask/m-two" in cat.ids()
        assert "ask" in cat.errors and KEY not in cat.errors["ask"]
        ask = next(p for p in cat.describe()["providers"] if p["provider"] == "ask")
        assert ask["stale"] and ask["error"] == cat.errors["ask"] and ask["models"] == 2
        em.auth = good
        await cat.refresh()
        assert cat.errors == {}
    finally:
        for p in providers.values():
            await p.aclose()


async def test_an_unreachable_provider_lists_nothing_and_does_not_block() -> None:
    with serve_in_thread(create_app()) as srv:
        url = srv.url
    s = settings(url)  # the server is stopped: connection refused
    providers = {p.name: OpenAICompatProvider(p, KEY) for p in s.providers}
    cat = ModelCatalog(s, providers, timeout=2.0)
    try:
        await cat.refresh()
        assert cat.ids() == ["fixed/gpt-x", "smart"]
        assert "ask" in cat.errors
    finally:
        for p in providers.values():
            await p.aclose()
