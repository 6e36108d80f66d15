"""The YandexGPT adapter against the YandexGPT emulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmgw.config import ProviderConfig
from llmgw.emulators import yandexgpt as emulator
from llmgw.emulators.runner import RunningServer, serve_in_thread
from llmgw.errors import ConfigError, RateLimited, UpstreamError, UpstreamModelNotFound
from llmgw.providers.base import CallContext, Provider
from llmgw.providers.yandexgpt import YandexGPTProvider
from llmgw.providers.yandexgpt_wire import CumulativeText
from llmgw.schemas import ChatRequest, EmbeddingRequest

FOLDER = emulator.DEFAULT_FOLDER
API_KEY = emulator.DEFAULT_API_KEY
VERSIONS = emulator.MODEL_VERSIONS
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def sa_key() -> dict[str, str]:
    return emulator.make_service_account_key()


@pytest.fixture
def key_file(tmp_path: Path, sa_key: dict[str, str]) -> Path:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(sa_key))
    return path


@pytest.fixture
def server(sa_key: dict[str, str]) -> Iterator[RunningServer]:
    with serve_in_thread(
        emulator.create_app(service_account_keys=[sa_key], max_concurrency=64)
    ) as srv:
        yield srv


def emu(srv: RunningServer) -> emulator.YandexGPTEmulator:
    return srv.app.state.emulator  # type: ignore[no-any-return]


def provider(srv: RunningServer, key: str | None = API_KEY, **kw: Any) -> YandexGPTProvider:
    opts: dict[str, Any] = {
        "name": "yc",
        "kind": "yandexgpt",
        "base_url": srv.url,
        "iam_url": f"{srv.url}/iam/v1/tokens",
        "folder_id": FOLDER,
        "max_concurrency": 64,
        "first_byte_timeout": 5,
    }
    return YandexGPTProvider(ProviderConfig(**(opts | kw)), key)


def ctx(model: str = "yandexgpt-lite", version: str | None = None) -> CallContext:
    return CallContext(request_id="req-1", model=model, version=version)


def req(text: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "yc/yandexgpt-lite", "messages": [{"role": "user", "content": text}]} | kw
    )


def joined(chunks: list[Any]) -> str:
    return "".join(
        c.data["choices"][0]["delta"].get("content", "")
        for c in chunks
        if c.data and c.data["choices"]
    )


async def test_chat_translation_and_version_uri(server: RunningServer) -> None:
    p = provider(server)
    assert isinstance(p, Provider)
    messages = [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]
    try:
        latest = await p.chat(req(messages=messages, temperature=0.8, max_tokens=300), ctx())
        rc = await p.chat(req(), ctx("yandexgpt-lite", "rc"))
    finally:
        await p.aclose()
    sent = emu(server).requests[0]
    assert sent["modelUri"] == f"gpt://{FOLDER}/yandexgpt-lite/latest"
    assert sent["completionOptions"] == {"stream": False, "temperature": 0.4, "maxTokens": "300"}
    assert sent["messages"] == [
        {"role": "system", "text": "be brief"},
        {"role": "user", "text": "hi"},
    ]
    assert latest.body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "yandexgpt-lite/latest reply to: hi",
    }
    assert latest.body["choices"][0]["finish_reason"] == "stop"
    assert (
        latest.usage.total_tokens == latest.usage.prompt_tokens + latest.usage.completion_tokens > 0
    )
    assert latest.body["usage"]["total_tokens"] == latest.usage.total_tokens  # ints, not strings
    assert emu(server).requests[1]["modelUri"] == f"gpt://{FOLDER}/yandexgpt-lite/rc"
    assert rc.model == f"gpt://{FOLDER}/yandexgpt-lite/rc"
    assert (
        rc.body["system_fingerprint"]
        == VERSIONS["yandexgpt-lite"]["rc"]
        != latest.body["system_fingerprint"]
    )
    assert emu(server).last_headers == {"scheme": "Api-Key", "x-folder-id": ""}


async def test_tool_calls_both_ways(server: RunningServer) -> None:
    p = provider(server)
    try:
        first = await p.chat(
            req("weather?", tools=[WEATHER], tool_choice="required"), ctx("yandexgpt")
        )
        call = first.body["choices"][0]["message"]["tool_calls"][0]
        history = [
            {"role": "user", "content": "weather?"},
            first.body["choices"][0]["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "-5"},
        ]
        second = await p.chat(req(messages=history, tools=[WEATHER]), ctx("yandexgpt"))
    finally:
        await p.aclose()
    assert first.body["choices"][0]["finish_reason"] == "tool_calls"
    assert call["id"].startswith("call_") and json.loads(call["function"]["arguments"]) == {
        "city": "Moscow"
    }
    sent = emu(server).requests
    assert sent[0]["tools"] == [
        {
            "function": {
                "name": "get_weather",
                "description": "",
                "parameters": WEATHER["function"]["parameters"],
            }
        }
    ]
    assert sent[0]["toolChoice"] == {"mode": "REQUIRED"}
    assert sent[1]["messages"][1] == {
        "role": "assistant",
        "toolCallList": {
            "toolCalls": [
                {"functionCall": {"name": "get_weather", "arguments": {"city": "Moscow"}}}
            ]
        },
    }
    assert sent[1]["messages"][2] == {
        "role": "user",
        "toolResultList": {
            "toolResults": [{"functionResult": {"name": "get_weather", "content": "-5"}}]
        },
    }
    assert second.body["choices"][0]["message"]["content"] == "Results: get_weather -> -5"


async def test_stream_becomes_deltas_with_usage(server: RunningServer) -> None:
    p = provider(server)
    try:
        chunks = [
            c
            async for c in p.chat_stream(
                req(
                    "one two three four five six seven",
                    stream=True,
                    stream_options={"include_usage": True},
                ),
                ctx("yandexgpt", "rc"),
            )
        ]
    finally:
        await p.aclose()
    data = [c.data for c in chunks if c.data and c.data["choices"]]
    assert (
        joined(chunks) == "yandexgpt/rc reply to: one two three four five six seven"
    )  # no repeats
    assert len(data) > 3 and data[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [d["choices"][0]["finish_reason"] for d in data] == [None] * (len(data) - 1) + ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].data is not None
    assert chunks[-1].data["usage"]["completion_tokens"] == chunks[-1].usage.completion_tokens > 0


async def test_stream_with_rewrite_and_content_filter(server: RunningServer) -> None:
    p = provider(server)
    try:
        rewrite = [
            c
            async for c in p.chat_stream(
                req("[[rewrite]] a b c d e f g h", stream=True), ctx("yandexgpt")
            )
        ]
        filtered = [
            c
            async for c in p.chat_stream(
                req("[[content_filter]] a b c d e f g h", stream=True), ctx("yandexgpt")
            )
        ]
        whole = await p.chat(req("[[content_filter]] a b c d e f g h"), ctx("yandexgpt"))
    finally:
        await p.aclose()
    text = joined(rewrite)
    final = "Revised reply to: [[rewrite]] a b c d e f g h"
    # Text already sent is kept; the rest continues after it without repeating anything.
    assert text == "yandexgpt/latest reply to: [[rewrite]] a b c d e f g h"
    assert text.endswith(final[len("Revised") :])
    assert p.stream_rewrites == 1
    assert emulator.FILTERED_TEXT not in joined(filtered)
    last = [c.data for c in filtered if c.data and c.data["choices"]][-1]
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert whole.body["choices"][0]["finish_reason"] == "content_filter"
    assert whole.body["choices"][0]["message"]["content"] == emulator.FILTERED_TEXT


async def test_an_error_line_inside_the_stream_ends_it(server: RunningServer) -> None:
    p = provider(server)
    got: list[Any] = []
    try:
        with pytest.raises(UpstreamError, match="error in the stream"):
            async for c in p.chat_stream(req("[[stream_error]] a b c d e f g", stream=True), ctx()):
                got.append(c)
        with pytest.raises(UpstreamError, match="HTTP 500"):
            await p.chat(req("[[stream_error]] a b c"), ctx())
    finally:
        await p.aclose()
    assert len(got) == 2 and joined(got)


def test_cumulative_text_algorithm() -> None:
    ct = CumulativeText()
    assert [
        ct.feed(t)
        for t in ("Hel", "Hello", "Hello wor", "Hallo world and more", "Hallo world and more!")
    ] == [
        "Hel",
        "lo",
        " wor",
        "ld and more",  # the first word was rewritten; the tail after "lo wor" continues
        "!",
    ]
    assert ct.sent == "Hello world and more!"
    ct = CumulativeText()
    assert [ct.feed(t) for t in ("abcdefgh", "xyz", "xyz!")] == [
        "abcdefgh",
        "",
        "!",
    ]  # nothing to anchor on
    ct = CumulativeText()
    assert [ct.feed(t) for t in ("The quick brown fox", "A quick brown fox jumps")] == [
        "The quick brown fox",
        " jumps",
    ]
    assert ct.rewrites == 1


async def test_embeddings_doc_and_query(server: RunningServer) -> None:
    p = provider(server)
    try:
        doc = await p.embed(EmbeddingRequest(model="yc/doc", input=["hello", "world"]), ctx("doc"))
        query = await p.embed(
            EmbeddingRequest(model="yc/text-search-query", input="hello"), ctx("text-search-query")
        )
    finally:
        await p.aclose()
    uris = [r["modelUri"] for r in emu(server).requests]
    assert uris == [f"emb://{FOLDER}/text-search-doc/latest"] * 2 + [
        f"emb://{FOLDER}/text-search-query/latest"
    ]
    assert [len(d["embedding"]) for d in doc.body["data"]] == [256, 256]
    assert doc.body["data"][0]["embedding"] != query.body["data"][0]["embedding"]
    assert doc.usage.prompt_tokens == 4 and doc.body["usage"]["prompt_tokens"] == 4


async def test_iam_token_from_service_account_key(server: RunningServer, key_file: Path) -> None:
    p = provider(server, key=None, service_account_key_file=key_file)
    e = emu(server)
    try:
        await p.chat(req(), ctx())
        assert e.iam_calls == 1 and e.last_headers == {"scheme": "Bearer", "x-folder-id": FOLDER}
        e.expire_tokens()  # the next call gets 401: one refresh, one retry
        await p.chat(req(), ctx())
        assert e.iam_calls == 2
        e.expire_tokens()
        chunks = [c async for c in p.chat_stream(req(stream=True), ctx())]
        assert chunks[-1].usage is not None and e.iam_calls == 3
    finally:
        await p.aclose()


async def test_fifty_concurrent_requests_at_iam_expiry_fetch_one_token(
    sa_key: dict[str, str], key_file: Path
) -> None:
    app = emulator.create_app(service_account_keys=[sa_key], iam_token_ttl=2.0, max_concurrency=64)
    with serve_in_thread(app) as srv:
        p = provider(srv, key=None, service_account_key_file=key_file)
        try:
            await p.chat(req(), ctx())
            await asyncio.sleep(1.2)
            results = await asyncio.gather(*(p.chat(req(), ctx()) for _ in range(50)))
        finally:
            await p.aclose()
        assert len(results) == 50 and emu(srv).iam_calls == 2


@pytest.mark.parametrize("fault", ["invalid_json", "html", "redirect", "echo_credentials", "500"])
async def test_bad_upstream_answers_are_sanitized(server: RunningServer, fault: str) -> None:
    emu(server).fault = fault
    p = provider(server)
    try:
        with pytest.raises(UpstreamError) as plain:
            await p.chat(req(), ctx())
        with pytest.raises(UpstreamError) as streamed:
            _ = [c async for c in p.chat_stream(req(stream=True), ctx())]
    finally:
        await p.aclose()
    for err in (plain.value, streamed.value):
        assert API_KEY not in f"{err} {err.hint} {err.to_openai()}"
        assert err.http_status == 502


async def test_auth_quota_and_model_errors(server: RunningServer) -> None:
    bad = provider(server, key="AQVN-wrong-key-000000")
    p = provider(server)
    try:
        with pytest.raises(UpstreamError, match="credentials") as info:
            await bad.chat(req(), ctx())
        assert "AQVN-wrong" not in str(info.value)
        with pytest.raises(UpstreamModelNotFound) as absent:  # 400 "invalid model_uri"
            await p.chat(req(), ctx("no-such-model"))
        assert (absent.value.http_status, absent.value.code) == (404, "model_not_found")
        emu(server).max_concurrency = 0
        with pytest.raises(RateLimited, match="gauge quota") as quota:
            await p.chat(req(), ctx())
        assert quota.value.retry_after == 1.0
    finally:
        await bad.aclose()
        await p.aclose()


def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="folder_id"):
        YandexGPTProvider(ProviderConfig(name="yc", kind="yandexgpt"), API_KEY)
    with pytest.raises(ConfigError, match="no YandexGPT API key"):
        YandexGPTProvider(ProviderConfig(name="yc", kind="yandexgpt", folder_id=FOLDER), None)
    broken = tmp_path / "key.json"
    broken.write_text('{"id": "x"}')
    not_pem = tmp_path / "not-pem.json"
    not_pem.write_text(
        json.dumps({"id": "k", "service_account_id": "sa", "private_key": "-----BEGIN nothing"})
    )
    with pytest.raises(ConfigError, match="PEM private key"):
        YandexGPTProvider(
            ProviderConfig(
                name="yc", kind="yandexgpt", folder_id=FOLDER, service_account_key_file=not_pem
            ),
            None,
        )
    with pytest.raises(ConfigError, match="service_account_id"):
        YandexGPTProvider(
            ProviderConfig(
                name="yc", kind="yandexgpt", folder_id=FOLDER, service_account_key_file=broken
            ),
            None,
        )


def test_registry_builds_both_kinds(key_file: Path) -> None:
    from llmgw.config import Settings
    from llmgw.providers.gigachat import GigaChatProvider
    from llmgw.providers.registry import SecretResolver, build_providers

    settings = Settings(
        providers=[
            ProviderConfig(
                name="giga", kind="gigachat", api_key_env="GIGA_KEY", scope="GIGACHAT_API_CORP"
            ),
            ProviderConfig(name="yc", kind="yandexgpt", api_key_env="YC_KEY", folder_id=FOLDER),
            ProviderConfig(
                name="yc-iam", kind="yandexgpt", folder_id=FOLDER, service_account_key_file=key_file
            ),
        ]
    )
    secrets = SecretResolver(env={"GIGA_KEY": "a2V5", "YC_KEY": API_KEY}, use_keyring=False)
    built = build_providers(settings, secrets)
    assert isinstance(built["giga"], GigaChatProvider) and built["giga"].max_concurrency == 10
    assert isinstance(built["yc"], YandexGPTProvider) and "api-key" in repr(built["yc"])
    assert "auth=iam" in repr(built["yc-iam"])
    with pytest.raises(ConfigError, match="no credential"):
        build_providers(settings, SecretResolver(env={}, use_keyring=False))
