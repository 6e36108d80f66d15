"""The kind=openai adapter against the emulator over real HTTP: forwarding, streams, error mapping."""

from __future__ import annotations

import asyncio
import socket
import time
from email.utils import formatdate
from typing import Any

import pytest

from llmgw.config import ProviderConfig
from llmgw.errors import (
    InvalidRequest,
    LlmgwError,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from llmgw.providers.base import CallContext, Provider
from llmgw.providers.openai_compat import OpenAICompatProvider, map_status
from llmgw.providers.status import retry_after
from llmgw.schemas import ChatRequest, EmbeddingRequest

KEY = "sk-upstream-secret-0123456789abcdef"
CTX = CallContext(request_id="req-1", model="gpt-4o-mini")


def chat_req(text: str = "hello there", **kw: Any) -> ChatRequest:
    return ChatRequest(
        model="local/gpt-4o-mini", messages=[{"role": "user", "content": text}], **kw
    )


def provider(base_url: str, api_key: str | None = KEY, **cfg: Any) -> OpenAICompatProvider:
    opts: dict[str, Any] = {"first_byte_timeout": 5.0, "idle_timeout": 5.0, "total_timeout": 20.0}
    opts.update(cfg)
    return OpenAICompatProvider(
        ProviderConfig(name="local", kind="openai", base_url=base_url, **opts), api_key
    )


async def chunks_of(p: OpenAICompatProvider, req: ChatRequest) -> list[Any]:
    return [c async for c in p.chat_stream(req, CTX)]


async def test_is_a_provider_and_chat_replaces_the_model(make_upstream) -> None:
    up = make_upstream(api_key=KEY)
    p = provider(up.base_url)
    try:
        assert isinstance(p, Provider)
        r = await p.chat(chat_req("hello there", temperature=0.2), CTX)
        assert r.body["object"] == "chat.completion"
        assert r.body["model"] == "gpt-4o-mini" == r.model  # the upstream got the upstream name
        assert r.body["choices"][0]["message"]["content"] == "Echo: hello there"
        assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (2, 3, 5)
    finally:
        await p.aclose()


async def test_stream_always_carries_usage_for_the_gateway(make_upstream) -> None:
    up = make_upstream(api_key=KEY)
    p = provider(up.base_url)
    try:
        chunks = await chunks_of(
            p, chat_req("a b c", stream=True)
        )  # the client did not ask for usage
        text = "".join(
            c.data["choices"][0]["delta"].get("content") or "" for c in chunks if c.data["choices"]
        )
        assert text == "Echo: a b c"
        last = chunks[-1]
        assert last.data["choices"] == [] and last.usage is not None
        assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 4)
        assert all(c.usage is None for c in chunks[:-1])
        assert all(
            c.raw is not None and c.raw.startswith(b"{") for c in chunks
        )  # relayed unchanged
        assert chunks[0].data["model"] == "gpt-4o-mini"
    finally:
        await p.aclose()


async def test_stream_keeps_client_stream_options(make_upstream) -> None:
    up = make_upstream()
    p = provider(up.base_url, api_key=None)
    try:
        req = chat_req("x", stream=True, stream_options={"include_usage": True})
        chunks = await chunks_of(p, req)
        assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    finally:
        await p.aclose()


async def test_embeddings_float_and_base64(make_upstream) -> None:
    up = make_upstream()
    p = provider(up.base_url, api_key=None)
    ctx = CallContext("req-2", "text-embedding-3-small")
    try:
        r = await p.embed(EmbeddingRequest(model="local/e", input=["a b", "c"]), ctx)
        assert len(r.body["data"]) == 2 and len(r.body["data"][0]["embedding"]) == 1536
        assert r.usage.prompt_tokens == 3 and r.model == "text-embedding-3-small"
        r64 = await p.embed(
            EmbeddingRequest(model="local/e", input="a b", encoding_format="base64"), ctx
        )
        assert isinstance(r64.body["data"][0]["embedding"], str)
    finally:
        await p.aclose()


async def test_list_models_asks_the_upstream_even_with_a_configured_list(make_upstream) -> None:
    up = make_upstream()
    p = provider(up.base_url, api_key=None)
    q = provider(up.base_url, api_key=None, models=["only-this"])
    try:
        assert [m.id for m in await p.list_models()] == ["gpt-4o-mini", "text-embedding-3-small"]
        assert all(m.owned_by == "local" for m in await p.list_models())
        # what the upstream really offers: the catalog flags "only-this" as missing
        assert [m.id for m in await q.list_models()] == ["gpt-4o-mini", "text-embedding-3-small"]
        assert up.stats.listings == 3
    finally:
        await p.aclose()
        await q.aclose()


async def test_closing_the_stream_cancels_the_upstream(make_upstream) -> None:
    up = make_upstream(chunk_delay_ms=20)
    p = provider(up.base_url, api_key=None, max_concurrency=1)
    try:
        stream = p.chat_stream(chat_req(" ".join(["w"] * 300), stream=True), CTX)
        await anext(stream)
        await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        assert p.transport.in_flight == 0
        deadline = time.monotonic() + 3
        while up.stats.in_flight or not up.stats.disconnects:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert (
            await p.chat(chat_req(), CTX)
        ).usage.total_tokens == 5  # the only slot is free again
    finally:
        await p.aclose()


# -- faults and upstream errors map to the documented classes, never leaking the key ------------

FAULT_CASES = [
    ("hang_before_headers", UpstreamTimeout, 504),
    ("stall_mid_stream", UpstreamTimeout, 504),
    ("invalid_json", UpstreamError, 502),
    ("html_error", UpstreamError, 502),
    ("redirect", UpstreamError, 502),
    ("echo_credentials", InvalidRequest, 400),
    ("drop_mid_stream", UpstreamError, 502),
]


def assert_no_secret(exc: LlmgwError) -> None:
    for text in (str(exc), exc.message, exc.hint or "", repr(exc.to_openai())):
        assert KEY not in text
        assert KEY[3:15] not in text


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("fault", "cls", "status"), FAULT_CASES, ids=[f[0] for f in FAULT_CASES])
async def test_fault_maps_to_documented_error(make_upstream, fault, cls, status, stream) -> None:
    up = make_upstream(fault=fault, api_key=KEY)
    p = provider(up.base_url, first_byte_timeout=0.3, idle_timeout=0.3)
    try:
        with pytest.raises(LlmgwError) as info:
            if stream:
                await chunks_of(p, chat_req(stream=True))
            else:
                await p.chat(chat_req(), CTX)
        assert type(info.value) is cls, info.value
        assert info.value.http_status == status
        assert_no_secret(info.value)
        assert p.transport.in_flight == 0
    finally:
        await p.aclose()


async def test_echoed_credentials_are_redacted_but_message_kept(make_upstream) -> None:
    up = make_upstream(fault="echo_credentials")
    p = provider(up.base_url)
    try:
        with pytest.raises(InvalidRequest) as info:
            await p.chat(chat_req(), CTX)
        assert "is not valid for this organization" in info.value.message
        assert "[redacted]" in info.value.message
        assert_no_secret(info.value)
    finally:
        await p.aclose()


async def test_connection_refused_names_the_provider() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = provider(f"http://127.0.0.1:{port}/v1")
    try:
        with pytest.raises(UpstreamError, match="cannot connect to local") as info:
            await p.chat(chat_req(), CTX)
        assert info.value.provider == "local"
    finally:
        await p.aclose()


async def test_wrong_upstream_key_is_a_502_about_our_credentials(make_upstream) -> None:
    up = make_upstream(api_key="sk-the-right-one")
    p = provider(up.base_url)
    try:
        for call in (p.chat(chat_req(), CTX), chunks_of(p, chat_req(stream=True))):
            with pytest.raises(UpstreamError, match="rejected the gateway's credentials") as info:
                await call
            assert info.value.http_status == 502
            assert_no_secret(info.value)
    finally:
        await p.aclose()


async def test_upstream_errors_map(make_upstream) -> None:
    up = make_upstream(fail_rate=1.0)
    p = provider(up.base_url)
    try:
        with pytest.raises(UpstreamError, match=r"failed \(HTTP 500\)"):
            await p.chat(chat_req(), CTX)
        with pytest.raises(UpstreamError, match=r"failed \(HTTP 500\)"):
            await chunks_of(p, chat_req(stream=True))
    finally:
        await p.aclose()
    up = make_upstream()
    p = provider(up.base_url)
    try:
        with pytest.raises(UpstreamError, match="does not serve model 'gpt-9'"):
            await p.chat(chat_req(), CallContext("r", "gpt-9"))
    finally:
        await p.aclose()


async def test_upstream_429_keeps_retry_after(make_upstream) -> None:
    up = make_upstream(max_concurrency=1, latency_ms=500)
    p = provider(up.base_url)
    try:
        slow = asyncio.create_task(p.chat(chat_req(), CTX))
        while not up.stats.in_flight:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        with pytest.raises(RateLimited) as info:
            await p.chat(chat_req(), CTX)
        assert info.value.retry_after == 1.0 and info.value.http_status == 429
        await slow
    finally:
        await p.aclose()


def test_map_status_table() -> None:
    body = b'{"error": {"message": "bad value for temperature, key sk-abcdefghijkl", "param": "temperature"}}'
    err = map_status("p", 400, {}, body)
    assert isinstance(err, InvalidRequest) and err.param == "temperature"
    assert (
        err.message == "upstream p rejected the request: bad value for temperature, key [redacted]"
    )
    assert isinstance(map_status("p", 422, {}, b"<html>"), InvalidRequest)
    assert (
        map_status("p", 422, {}, b"<html>secret page</html>").message
        == "upstream p rejected the request"
    )
    assert isinstance(map_status("p", 403, {}, b""), UpstreamError)
    assert isinstance(map_status("p", 413, {}, b""), PayloadTooLarge)
    assert isinstance(map_status("p", 504, {}, b""), UpstreamTimeout)
    assert type(map_status("p", 503, {}, b"")) is UpstreamError
    limited = map_status("p", 429, {"Retry-After": "7"}, b"")
    assert isinstance(limited, RateLimited) and limited.retry_after == 7.0


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after-ms": "1500"}) == 1.5
    assert retry_after({"Retry-After": "3"}) == 3.0
    later = retry_after({"Retry-After": formatdate(time.time() + 60, usegmt=True)})
    assert later is not None and 55 < later <= 60
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None
