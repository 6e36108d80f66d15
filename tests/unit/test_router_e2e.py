"""The router end to end over real HTTP: two OpenAI emulators behind the real OpenAI-compatible adapter.

Candidate A fails (500s, first-byte timeouts, 429s), candidate B is healthy: requests to the alias
succeed on B, A's breaker opens after its threshold and then no request reaches A, and the breaker
closes once A recovers. Also: the retry budget bounds attempts on a dead upstream (UP-4).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llmgw.config import ProviderConfig, RoutingSettings, Settings
from llmgw.emulators.openai import create_app
from llmgw.emulators.runner import RunningServer, serve_in_thread
from llmgw.errors import UpstreamError
from llmgw.providers.base import CallContext, ChatChunk, ChatResponse, Provider
from llmgw.providers.openai_compat import OpenAICompatProvider
from llmgw.routing.health import HealthWriter
from llmgw.routing.resolve import Resolver, Target
from llmgw.routing.router import Router, build_router
from llmgw.schemas import ChatRequest

KEY = "sk-e2e-emulator-key"
MODEL = "gpt-4o-mini"


class JumpClock:
    """Real monotonic time plus a jump the test controls (to pass a cooldown without sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def emulators() -> Iterator[tuple[RunningServer, RunningServer]]:
    with (
        serve_in_thread(create_app(api_key=KEY, seed=1)) as a,
        serve_in_thread(create_app(api_key=KEY, seed=2)) as b,
    ):
        yield a, b


def settings_for(a: RunningServer, b: RunningServer) -> Settings:
    def prov(name: str, srv: RunningServer) -> ProviderConfig:
        return ProviderConfig(
            name=name,
            kind="openai",
            base_url=f"{srv.url}/v1",
            models=[MODEL],
            first_byte_timeout=0.5,
            connect_timeout=1.0,
        )

    return Settings(
        providers=[prov("a", a), prov("b", b)],
        aliases={"smart": [f"a/{MODEL}", f"b/{MODEL}"]},
    )


async def make_router(
    settings: Settings, clock: JumpClock, **routing: Any
) -> tuple[Router, dict[str, Provider]]:
    providers: dict[str, Provider] = {
        p.name: OpenAICompatProvider(p, KEY) for p in settings.providers
    }
    cfg = RoutingSettings(**{"failure_threshold": 3, "cooldown": 10.0, "max_retries": 0, **routing})
    return build_router(cfg, providers, Resolver(settings).candidates, clock=clock), providers


def request() -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "smart", "messages": [{"role": "user", "content": "hello"}]}
    )


async def chat(p: Provider, c: Target) -> ChatResponse:
    return await p.chat(request(), CallContext(request_id="t", model=c.model, version=c.version))


def make_a_fail(app: Any, mode: str) -> None:
    em = app.state.emulator
    em.fail_rate, em.fault, em.max_concurrency = 0.0, None, None
    if mode == "500":
        em.fail_rate = 1.0
    elif mode == "timeout":
        em.fault = "hang_before_headers"
    elif mode == "429":
        em.max_concurrency = 0  # every request answered 429 with Retry-After
    elif mode != "healthy":
        raise AssertionError(mode)


async def close_all(providers: dict[str, Provider]) -> None:
    for p in providers.values():
        await p.aclose()


@pytest.mark.parametrize("mode", ["500", "timeout", "429"])
async def test_alias_falls_back_and_breaker_fails_fast_then_recovers(
    emulators: tuple[RunningServer, RunningServer], mode: str
) -> None:
    a, b = emulators
    clock = JumpClock()
    router, providers = await make_router(settings_for(a, b), clock)
    try:
        make_a_fail(a.app, mode)
        # up to the threshold: A is tried, fails, B answers
        for _ in range(3):
            routed = await router.call("smart", chat)
            assert routed.served_by == f"b/{MODEL}"
            assert routed.value.body["choices"][0]["message"]["content"]
            assert [x.outcome for x in routed.attempts] == ["failed", "ok"]
        assert a.app.state.stats.requests == 3
        assert router.breakers.get("a", MODEL).state == "open"

        # open: fail fast, nothing reaches A, every request still succeeds on B
        b_before = b.app.state.stats.requests
        for _ in range(10):
            routed = await router.call("smart", chat)
            assert routed.served_by == f"b/{MODEL}"
            assert routed.attempts[0].outcome == "open"
        assert a.app.state.stats.requests == 3
        assert b.app.state.stats.requests == b_before + 10

        # still failing after the cooldown: one half-open probe, which fails and re-opens
        clock.offset += 10.0
        routed = await router.call("smart", chat)
        assert routed.served_by == f"b/{MODEL}"
        assert a.app.state.stats.requests == 4
        assert router.breakers.get("a", MODEL).state == "open"

        # A recovers: after the (doubled) cooldown the probe succeeds and the circuit closes
        make_a_fail(a.app, "healthy")
        clock.offset += 20.0
        routed = await router.call("smart", chat)
        assert routed.served_by == f"a/{MODEL}"
        assert router.breakers.get("a", MODEL).state == "closed"
        for _ in range(3):
            assert (await router.call("smart", chat)).served_by == f"a/{MODEL}"
        assert a.app.state.stats.requests == 8
        snap = {r["provider"]: r for r in router.health.snapshot()}
        assert snap["a"]["failures"] == 4 and snap["a"]["requests"] == 8
        assert snap["b"]["status"] == "healthy"
    finally:
        await close_all(providers)


async def test_stream_falls_back_before_the_first_chunk(
    emulators: tuple[RunningServer, RunningServer],
) -> None:
    a, b = emulators
    router, providers = await make_router(settings_for(a, b), JumpClock())
    try:
        make_a_fail(a.app, "500")

        def op(p: Provider, c: Target) -> AsyncIterator[ChatChunk]:
            req = ChatRequest.model_validate(
                {"model": "smart", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            )
            return p.chat_stream(req, CallContext(request_id="s", model=c.model))

        opened = await router.open_stream("smart", op)
        cand, first, rest = opened
        assert cand.provider == "b" and opened.served_by == f"b/{MODEL}"
        assert first.data is not None or first.raw is not None
        chunks = [c async for c in rest]
        assert chunks  # the rest of B's stream arrives through the tail
        assert a.app.state.stats.requests == 1
    finally:
        await close_all(providers)


async def test_retry_budget_bounds_attempts_on_a_dead_upstream(
    emulators: tuple[RunningServer, RunningServer],
) -> None:
    a, b = emulators
    settings = settings_for(a, b)
    clock = JumpClock()
    router, providers = await make_router(
        settings,
        clock,
        failure_threshold=1000,
        error_rate_min_requests=100_000,
        max_retries=2,
        backoff_base=0.001,
        backoff_max=0.01,
    )
    try:
        make_a_fail(a.app, "500")
        n = 60
        for _ in range(n):
            with pytest.raises(UpstreamError):
                await router.call(f"a/{MODEL}", chat)
        attempts = a.app.state.stats.requests
        assert n < attempts <= n * 1.2  # some retries, never more than the 20 % budget
    finally:
        await close_all(providers)


async def test_health_reaches_provider_status(
    emulators: tuple[RunningServer, RunningServer], tmp_path: Path
) -> None:
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    a, b = emulators
    router, providers = await make_router(settings_for(a, b), JumpClock())
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    upgrade(engine)
    try:
        make_a_fail(a.app, "500")
        for _ in range(3):
            await router.call("smart", chat)
        assert HealthWriter(engine, router.health).write_once() == 2
        with engine.connect() as conn:
            rows = {
                r.provider: r
                for r in conn.execute(
                    sa.text("SELECT provider, status, last_error FROM provider_status")
                )
            }
        assert rows["a"].status == "open"
        assert "HTTP 500" in rows["a"].last_error and KEY not in rows["a"].last_error
        assert rows["b"].status == "healthy"
    finally:
        engine.dispose()
        await close_all(providers)


@pytest.mark.parametrize("fault", ["500", "timeout", "429"])
async def test_gigachat_failing_alias_succeeds_on_yandexgpt(fault: str) -> None:
    """The issue's scenario: GigaChat's emulator failing, YandexGPT's healthy, one alias."""
    from llmgw.emulators import gigachat as giga_emu
    from llmgw.emulators import yandexgpt as ya_emu
    from llmgw.providers.registry import SecretResolver, build_providers

    with (
        serve_in_thread(giga_emu.create_app(max_concurrency=64, hang_seconds=3.0)) as g,
        serve_in_thread(ya_emu.create_app(max_concurrency=64)) as y,
    ):
        settings = Settings(
            providers=[
                ProviderConfig(
                    name="giga",
                    kind="gigachat",
                    base_url=f"{g.url}/api/v1",
                    auth_url=f"{g.url}/api/v2/oauth",
                    scope="GIGACHAT_API_B2B",
                    api_key_env="GIGA_KEY",
                    models=["GigaChat"],
                    first_byte_timeout=0.5,
                ),
                ProviderConfig(
                    name="yandex",
                    kind="yandexgpt",
                    base_url=y.url,
                    iam_url=f"{y.url}/iam/v1/tokens",
                    folder_id=ya_emu.DEFAULT_FOLDER,
                    api_key_env="YA_KEY",
                    models=["yandexgpt-lite"],
                ),
            ],
            aliases={"smart": ["giga/GigaChat", "yandex/yandexgpt-lite:rc"]},
        )
        env = {"GIGA_KEY": giga_emu.DEFAULT_CREDENTIALS, "YA_KEY": ya_emu.DEFAULT_API_KEY}
        providers = build_providers(settings, SecretResolver(env, use_keyring=False))
        clock = JumpClock()
        cfg = RoutingSettings(failure_threshold=3, cooldown=10.0, max_retries=0)
        router = build_router(cfg, providers, Resolver(settings).candidates, clock=clock)
        gem, yem = g.app.state.emulator, y.app.state.emulator
        try:
            gem.fault = fault
            for _ in range(3):
                routed = await router.call("smart", chat)
                assert routed.served_by == "yandex/yandexgpt-lite:rc"
                assert routed.value.body["choices"][0]["message"]["content"]
            assert router.breakers.get("giga", "GigaChat").state == "open"
            assert yem.requests[-1]["modelUri"].endswith("/yandexgpt-lite/rc")
            giga_api_calls = gem.api_calls
            assert giga_api_calls == 3  # each failing attempt did reach GigaChat
            for _ in range(5):  # fail fast: GigaChat is not contacted at all
                assert (await router.call("smart", chat)).served_by.startswith("yandex/")
            assert gem.api_calls == giga_api_calls
            gem.fault = None  # GigaChat recovers
            clock.offset += 10.0
            routed = await router.call("smart", chat)
            assert routed.served_by == "giga/GigaChat"
            assert router.breakers.get("giga", "GigaChat").state == "closed"
        finally:
            await close_all(providers)
