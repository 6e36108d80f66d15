"""The GigaChat adapter against the GigaChat emulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmgw.config import ProviderConfig
from llmgw.emulators import gigachat as emulator
from llmgw.emulators.runner import RunningServer, serve_in_thread
from llmgw.errors import (
    ConfigError,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamModelNotFound,
)
from llmgw.providers.base import CallContext, Provider
from llmgw.providers.gigachat import GigaChatProvider
from llmgw.schemas import ChatRequest, EmbeddingRequest

KEY = emulator.DEFAULT_CREDENTIALS
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "forecast",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        },
    },
}


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve_in_thread(emulator.create_app(max_concurrency=64)) as srv:
        yield srv


def emu(srv: RunningServer) -> emulator.GigaChatEmulator:
    return srv.app.state.emulator  # type: ignore[no-any-return]


def provider(srv: RunningServer, **kw: Any) -> GigaChatProvider:
    opts: dict[str, Any] = {
        "name": "giga",
        "kind": "gigachat",
        "base_url": f"{srv.url}/api/v1",
        "auth_url": f"{srv.url}/api/v2/oauth",
        "scope": "GIGACHAT_API_B2B",
        "max_concurrency": 64,
        "first_byte_timeout": 5,
    }
    return GigaChatProvider(ProviderConfig(**(opts | kw)), KEY)


def ctx(model: str = "GigaChat-2") -> CallContext:
    return CallContext(request_id="req-1", model=model)


def req(**kw: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "giga/GigaChat-2", "messages": [{"role": "user", "content": "hi"}]} | kw
    )


async def test_provider_protocol_and_plain_chat(server: RunningServer) -> None:
    p = provider(server)
    assert isinstance(p, Provider)
    try:
        out = await p.chat(req(temperature=0), ctx())
    finally:
        await p.aclose()
    assert out.body["object"] == "chat.completion"
    assert out.body["id"].startswith("chatcmpl-")
    assert out.body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "GigaChat emulator reply to: hi",
    }
    assert out.body["choices"][0]["finish_reason"] == "stop"
    assert out.model == "GigaChat-2:2.0.28.2"
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens > 0
    sent = emu(server).requests[-1]
    assert "temperature" not in sent and sent["top_p"] == 0  # GigaChat rejects temperature 0


async def test_request_translation_system_first_tools_and_tool_results(
    server: RunningServer,
) -> None:
    p = provider(server)
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "developer", "content": "be brief"},
        {"role": "system", "content": "second system"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Moscow"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Kazan"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_b", "content": "-3"},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"t": 12}'},
    ]
    try:
        out = await p.chat(req(messages=messages, tools=[WEATHER]), ctx())
    finally:
        await p.aclose()
    sent = emu(server).requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert [m["role"] for m in sent["messages"]] == [
        "system",
        "user",
        "user",
        "assistant",
        "function",
        "assistant",
        "function",
    ]
    assert sent["messages"][3]["function_call"] == {
        "name": "weather",
        "arguments": {"city": "Moscow"},
    }
    assert json.loads(sent["messages"][4]["content"]) == {"t": 12}  # call_a's result follows call_a
    assert sent["messages"][5]["function_call"]["arguments"] == {"city": "Kazan"}
    assert json.loads(sent["messages"][6]["content"]) == {"result": -3}  # non-objects are wrapped
    assert sent["functions"] == [
        {
            "name": "weather",
            "description": "forecast",
            "parameters": WEATHER["function"]["parameters"],
        }
    ]
    assert (
        out.body["choices"][0]["message"]["content"] == 'Function weather returned {"result": -3}.'
    )


async def test_function_call_answer_becomes_tool_calls(server: RunningServer) -> None:
    p = provider(server)
    try:
        forced = {"type": "function", "function": {"name": "weather"}}
        out = await p.chat(req(tools=[WEATHER], tool_choice=forced), ctx())
        none = await p.chat(req(tools=[WEATHER], tool_choice="none"), ctx())
    finally:
        await p.aclose()
    choice = out.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == {"city": "Москва", "days": 3}
    assert choice["message"]["content"] is None
    assert none.body["choices"][0]["finish_reason"] == "stop"
    assert "functions" not in emu(server).requests[-1]


async def test_stream_chunks_are_fixed_up_to_openai_shape(server: RunningServer) -> None:
    p = provider(server)
    try:
        chunks = [
            c
            async for c in p.chat_stream(
                req(
                    stream=True,
                    stream_options={"include_usage": True},
                    messages=[{"role": "user", "content": "a b c d e f g h"}],
                ),
                ctx(),
            )
        ]
    finally:
        await p.aclose()
    data = [c.data for c in chunks if c.data is not None]
    assert {d["object"] for d in data} == {"chat.completion.chunk"}
    assert len({d["id"] for d in data}) == 1
    content = [d for d in data if d["choices"]]
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in d["choices"][0]["delta"] for d in content[1:])
    assert (
        "".join(d["choices"][0]["delta"].get("content", "") for d in content)
        == "GigaChat emulator reply to: a b c d e f g h"
    )
    assert [d["choices"][0]["finish_reason"] for d in content][-1] == "stop"
    assert all(d["choices"][0]["finish_reason"] is None for d in content[:-1])
    last = chunks[-1]
    assert last.usage is not None and last.usage.total_tokens > 0
    assert (
        last.data is not None
        and last.data["choices"] == []
        and last.data["usage"]["total_tokens"] == last.usage.total_tokens
    )


async def test_blacklist_becomes_content_filter_and_stream_tool_call(server: RunningServer) -> None:
    p = provider(server)
    try:
        out = await p.chat(req(messages=[{"role": "user", "content": "[[blacklist]]"}]), ctx())
        chunks = [c async for c in p.chat_stream(req(stream=True, tools=[WEATHER]), ctx())]
    finally:
        await p.aclose()
    assert out.body["choices"][0]["finish_reason"] == "content_filter"
    data = [c.data for c in chunks if c.data]
    calls = [tc for d in data for tc in d["choices"][0]["delta"].get("tool_calls", [])]
    assert len(calls) == 1 and calls[0]["index"] == 0 and calls[0]["function"]["name"] == "weather"
    assert data[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert (
        chunks[-1].data is None and chunks[-1].usage is not None
    )  # usage reported, not sent unasked


async def test_embeddings_models_and_token_count(server: RunningServer) -> None:
    p = provider(server)
    try:
        emb = await p.embed(
            EmbeddingRequest(model="giga/Embeddings", input="hello"), ctx("Embeddings")
        )
        b64 = await p.embed(
            EmbeddingRequest(model="x", input=["a", "b"], encoding_format="base64"),
            ctx("Embeddings"),
        )
        models = await p.list_models()
        counts = await p.count_tokens(["Hello world", "x"], "GigaChat-2")
    finally:
        await p.aclose()
    assert len(emb.body["data"][0]["embedding"]) == emulator.EMBED_DIM
    assert emulator.DEFAULT_CREDENTIALS not in json.dumps(emb.body)
    assert (
        emb.usage.prompt_tokens > 0 and emb.body["usage"]["total_tokens"] == emb.usage.prompt_tokens
    )
    assert emu(server).requests[0]["input"] == ["hello"]  # a bare string goes up as a list
    assert all(isinstance(d["embedding"], str) for d in b64.body["data"])
    assert {"GigaChat-2-Max", "Embeddings"} <= {m.id for m in models}
    assert counts == [3, 1]


@pytest.mark.parametrize("seconds", [False, True], ids=["expires_at-ms", "expires_at-seconds"])
async def test_fifty_concurrent_requests_at_token_expiry_fetch_one_token(seconds: bool) -> None:
    app = emulator.create_app(token_ttl=2.0, max_concurrency=64, expires_at_seconds=seconds)
    with serve_in_thread(app) as srv:
        p = provider(srv)
        try:
            await p.chat(req(), ctx())
            assert emu(srv).oauth_calls == 1
            await asyncio.sleep(
                1.2
            )  # under half the 2 s lifetime left: the token is due for refresh
            results = await asyncio.gather(*(p.chat(req(), ctx()) for _ in range(50)))
        finally:
            await p.aclose()
        assert len(results) == 50
        assert emu(srv).oauth_calls == 2
        assert p.tokens.fetches == 2


async def test_401_causes_one_refresh_and_one_retry(server: RunningServer) -> None:
    p = provider(server)
    e = emu(server)
    try:
        await p.chat(req(), ctx())
        e.expire_tokens()
        calls = e.api_calls
        out = await p.chat(req(), ctx())
        assert out.body["choices"][0]["message"]["content"]
        assert (e.oauth_calls, e.auth_failures, e.api_calls - calls) == (2, 1, 1)
        e.expire_tokens()
        chunks = [c async for c in p.chat_stream(req(stream=True), ctx())]
        assert chunks[-1].usage is not None
        assert e.oauth_calls == 3
        # Concurrent 401s share one refresh.
        e.expire_tokens()
        await asyncio.gather(*(p.chat(req(), ctx()) for _ in range(10)))
        assert e.oauth_calls == 4
    finally:
        await p.aclose()


@pytest.mark.parametrize(
    "fault", ["invalid_json", "html", "redirect", "echo_credentials", "500", "timeout"]
)
async def test_bad_upstream_answers_become_sanitized_upstream_errors(
    server: RunningServer, fault: str
) -> None:
    e = emu(server)
    e.hang_seconds = 3
    p = provider(server, first_byte_timeout=1)
    try:
        token = await p.tokens.get()
        e.fault = fault
        with pytest.raises(UpstreamError) as info:
            await p.chat(req(), ctx())
        with pytest.raises(UpstreamError) as info_stream:
            _ = [c async for c in p.chat_stream(req(stream=True), ctx())]
    finally:
        await p.aclose()
    for err in (info.value, info_stream.value):
        text = f"{err} {err.hint or ''} {err.to_openai()}"
        assert KEY not in text and token not in text and token[:40] not in text
        assert err.http_status in (502, 504)
        assert err.provider == "giga"


async def test_credential_echo_on_the_oauth_endpoint_is_not_repeated(server: RunningServer) -> None:
    emu(server).oauth_fault = "echo_credentials"
    p = provider(server)
    try:
        with pytest.raises(UpstreamError) as info:
            await p.chat(req(), ctx())
    finally:
        await p.aclose()
    assert KEY not in str(info.value) and "HTTP 500" in str(info.value)


async def test_an_error_inside_the_stream_ends_it_with_upstream_error(
    server: RunningServer,
) -> None:
    p = provider(server)
    got: list[Any] = []
    try:
        with pytest.raises(UpstreamError, match="error in the stream"):
            async for c in p.chat_stream(
                req(
                    stream=True,
                    messages=[{"role": "user", "content": "[[stream_error]] a b c d e f g"}],
                ),
                ctx(),
            ):
                got.append(c)
    finally:
        await p.aclose()
    assert len(got) == 2  # what arrived before the error was relayed


async def test_a_failing_token_endpoint_is_asked_once_per_burst(server: RunningServer) -> None:
    e = emu(server)
    e.oauth_fault = "500"
    p = provider(server)
    try:
        results = await asyncio.gather(
            *(p.chat(req(), ctx()) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, UpstreamError) for r in results)
        assert e.oauth_requests == 1  # the waiters share the failed fetch
        e.oauth_fault = None
        await p.chat(req(), ctx())  # a later request tries again
        assert (e.oauth_requests, e.oauth_calls) == (2, 1)
    finally:
        await p.aclose()


async def test_upstream_client_errors_map_to_the_error_tree(server: RunningServer) -> None:
    p = provider(server)
    try:
        with pytest.raises(UpstreamModelNotFound) as absent:
            await p.chat(req(), ctx("NoSuchModel"))
        assert (absent.value.http_status, absent.value.code) == (404, "model_not_found")
        with pytest.raises(InvalidRequest, match="no versions"):
            await p.chat(req(), CallContext(request_id="r", model="GigaChat-2", version="rc"))
        with pytest.raises(InvalidRequest, match="invalid function result|JSON"):
            bad = [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": "{not json"},
                        }
                    ],
                }
            ]
            await p.chat(req(messages=bad), ctx())
        emu(server).fault = "429"
        with pytest.raises(RateLimited) as info:
            await p.chat(req(), ctx())
        assert info.value.retry_after == 1.0
    finally:
        await p.aclose()


async def test_personal_account_requests_queue_instead_of_hitting_429() -> None:
    app = emulator.create_app(latency_ms=150)  # PERS accounts: 1 concurrent request upstream
    with serve_in_thread(app) as srv:
        p = provider(srv, scope="GIGACHAT_API_PERS", max_concurrency=None)
        try:
            assert p.max_concurrency == 1
            started = time.monotonic()
            out = await asyncio.gather(*(p.chat(req(), ctx()) for _ in range(4)))
        finally:
            await p.aclose()
    assert len(out) == 4
    assert time.monotonic() - started >= 0.55  # served one after another


def test_missing_key_and_bad_ca_bundle_are_config_errors(tmp_path: Path) -> None:
    config = ProviderConfig(name="giga", kind="gigachat")
    with pytest.raises(ConfigError, match="authorization key"):
        GigaChatProvider(config, None)
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="CA bundle"):
        GigaChatProvider(ProviderConfig(name="giga", kind="gigachat", ca_bundle=bad), KEY)
