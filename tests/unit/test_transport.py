"""The aiohttp transport over real HTTP: timeouts, faults, SSE parsing, slot release, concurrency cap."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.emulators.runner import RunningServer, serve_in_thread
from llmgw.errors import RateLimited, UpstreamError, UpstreamTimeout
from llmgw.providers.transport import Transport, UpstreamStatus, parse_json, redact

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]}
LONG = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(400))}],
    "stream": True,
}


def transport(base_url: str, **kw: Any) -> Transport:
    opts: dict[str, Any] = {
        "connect_timeout": 2.0,
        "first_byte_timeout": 5.0,
        "idle_timeout": 5.0,
        "total_timeout": 20.0,
    }
    opts.update(kw)
    return Transport(provider="local", base_url=base_url, **opts)


async def wait_for(cond: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def collect(t: Transport, body: dict[str, Any]) -> list[bytes]:
    return [p async for p in t.open_stream("chat/completions", body)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- canned upstreams for the SSE parser ------------------------------------------------------


@pytest.fixture
def canned() -> Iterator[Callable[..., RunningServer]]:
    servers: list[RunningServer] = []

    def make(body: bytes, status: int = 200, ctype: str = "text/event-stream") -> RunningServer:
        async def endpoint(request: Request) -> Response:
            await request.body()
            return Response(body, status_code=status, media_type=ctype)

        app = Starlette(routes=[Route("/v1/chat/completions", endpoint, methods=["POST"])])
        srv = serve_in_thread(app)
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        s.stop()


async def test_sse_parser_handles_crlf_comments_multiline_and_missing_done(canned) -> None:
    body = b': keep-alive\r\n\r\nevent: message\r\ndata: {"a":1}\r\n\r\ndata: {"b":\ndata: 2}\n\nid: 7\ndata:{"c":3}\n\n'
    t = transport(canned(body).url + "/v1")
    try:
        assert await collect(t, CHAT) == [b'{"a":1}', b'{"b":\n2}', b'{"c":3}']
    finally:
        await t.aclose()


async def test_stream_stops_at_done(canned) -> None:
    t = transport(canned(b'data: {}\n\ndata: [DONE]\n\ndata: {"late":1}\n\n').url + "/v1")
    try:
        assert await collect(t, CHAT) == [b"{}"]
    finally:
        await t.aclose()


async def test_stream_without_events_or_not_sse_is_an_upstream_error(canned) -> None:
    for srv in (canned(b"data: [DONE]\n\n"), canned(b'{"marker": 1}', ctype="application/json")):
        t = transport(srv.url + "/v1")
        try:
            with pytest.raises(UpstreamError) as info:
                await collect(t, CHAT)
            assert type(info.value) is UpstreamError
            assert "marker" not in info.value.message
        finally:
            await t.aclose()


async def test_stream_error_status_is_raised_with_body_for_the_adapter(canned) -> None:
    t = transport(
        canned(b'{"error": {"message": "nope"}}', status=503, ctype="application/json").url + "/v1"
    )
    try:
        with pytest.raises(UpstreamStatus) as info:
            await collect(t, CHAT)
        assert info.value.status == 503 and b"nope" in info.value.body
        assert "nope" not in str(info.value)
        assert t.in_flight == 0
    finally:
        await t.aclose()


# -- faults of the OpenAI emulator -------------------------------------------------------------


async def test_connection_refused() -> None:
    t = transport(f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(UpstreamError, match="cannot connect to local") as info:
            await t.post_json("chat/completions", CHAT)
        assert type(info.value) is UpstreamError and info.value.http_status == 502
        with pytest.raises(UpstreamError, match="cannot connect to local"):
            await collect(t, {**CHAT, "stream": True})
        assert t.in_flight == 0
    finally:
        await t.aclose()


async def test_no_headers_before_first_byte_timeout(make_upstream) -> None:
    up = make_upstream(fault="hang_before_headers")
    t = transport(up.base_url, first_byte_timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match="no response within 0.3s") as info:
            await t.post_json("chat/completions", CHAT)
        assert time.monotonic() - started < 3
        assert info.value.http_status == 504
        with pytest.raises(UpstreamTimeout):
            await collect(t, {**CHAT, "stream": True})
        await wait_for(lambda: up.stats.disconnects == 2)  # the upstream saw both sockets close
        assert t.in_flight == 0
    finally:
        await t.aclose()


async def test_stall_mid_stream_hits_the_idle_timeout(make_upstream) -> None:
    up = make_upstream(fault="stall_mid_stream")
    t = transport(up.base_url, idle_timeout=0.3, first_byte_timeout=10)
    try:
        got: list[bytes] = []
        with pytest.raises(UpstreamTimeout, match="went silent for 0.3s"):
            async for p in t.open_stream("chat/completions", {**CHAT, "stream": True}):
                got.append(p)
        assert len(got) == 2  # what arrived before the stall was delivered
        with pytest.raises(UpstreamTimeout, match="went silent"):
            await t.post_json("chat/completions", CHAT)  # a JSON body cut in half, then silence
        await wait_for(lambda: up.stats.disconnects == 2 and up.stats.in_flight == 0)
    finally:
        await t.aclose()


async def test_total_timeout_counts(make_upstream) -> None:
    up = make_upstream(latency_ms=2000)
    t = transport(up.base_url, total_timeout=0.3)
    try:
        with pytest.raises(UpstreamTimeout, match="total timeout of 0.3s"):
            await t.post_json("chat/completions", CHAT)
    finally:
        await t.aclose()


async def test_drop_mid_stream_is_an_upstream_error(make_upstream) -> None:
    up = make_upstream(fault="drop_mid_stream")
    t = transport(up.base_url)
    try:
        with pytest.raises(UpstreamError, match="lost in the middle") as info:
            await collect(t, {**CHAT, "stream": True})
        assert type(info.value) is UpstreamError
        with pytest.raises(UpstreamError, match="lost in the middle"):
            await t.post_json("chat/completions", CHAT)
        assert t.in_flight == 0
    finally:
        await t.aclose()


async def test_redirect_is_not_followed(make_upstream) -> None:
    up = make_upstream(fault="redirect")
    t = transport(up.base_url)
    try:
        with pytest.raises(UpstreamError, match="redirect not followed") as info:
            await t.post_json("chat/completions", CHAT)
        assert "169.254" not in info.value.message
        with pytest.raises(UpstreamError, match="redirect not followed"):
            await collect(t, {**CHAT, "stream": True})
        assert up.stats.requests == 2
    finally:
        await t.aclose()


async def test_html_and_invalid_json_bodies_are_described_not_quoted(make_upstream) -> None:
    up = make_upstream(fault="html_error")
    t = transport(up.base_url)
    try:
        status, headers, body = await t.post_json("chat/completions", CHAT)
        assert status == 502 and body.startswith(b"<html>")
        with pytest.raises(UpstreamError) as info:
            parse_json("local", status, headers, body)
        assert info.value.message == "upstream local answered HTTP 502 with an HTML page"
    finally:
        await t.aclose()
    up = make_upstream(fault="invalid_json")
    t = transport(up.base_url)
    try:
        status, headers, body = await t.post_json("chat/completions", CHAT)
        with pytest.raises(UpstreamError, match="not valid JSON") as info:
            parse_json("local", status, headers, body)
        assert "chatcmpl" not in info.value.message
    finally:
        await t.aclose()


# -- connection release and the concurrency cap -------------------------------------------------


async def test_closing_a_stream_early_closes_the_upstream_connection(make_upstream) -> None:
    up = make_upstream(chunk_delay_ms=20)
    t = transport(up.base_url, max_concurrency=2)
    try:
        stream = t.open_stream("chat/completions", LONG)
        got = [await anext(stream) for _ in range(3)]
        assert len(got) == 3 and t.in_flight == 1
        await wait_for(lambda: up.stats.in_flight == 1)
        await stream.aclose()
        assert t.in_flight == 0
        await wait_for(lambda: up.stats.in_flight == 0 and up.stats.disconnects == 1)
        assert up.stats.streams_completed == 0
    finally:
        await t.aclose()


async def test_cancelling_the_consumer_cancels_the_upstream_call(make_upstream) -> None:
    up = make_upstream(chunk_delay_ms=20)
    t = transport(up.base_url)
    try:
        received = 0

        async def consume() -> None:
            nonlocal received
            async for _ in t.open_stream("chat/completions", LONG):
                received += 1

        task = asyncio.create_task(consume())
        await wait_for(lambda: received >= 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert t.in_flight == 0
        await wait_for(lambda: up.stats.in_flight == 0 and up.stats.disconnects == 1)
    finally:
        await t.aclose()


async def test_completed_streams_release_their_slot(make_upstream) -> None:
    up = make_upstream()
    t = transport(up.base_url, max_concurrency=1, queue_timeout=1.0)
    try:
        for _ in range(5):  # with one slot, a leaked slot would make the second call wait and fail
            assert len(await collect(t, {**CHAT, "stream": True})) == 6
        assert t.in_flight == 0 and up.stats.streams_completed == 5
    finally:
        await t.aclose()


async def test_concurrency_cap_holds_under_5x_load(make_upstream) -> None:
    cap = 3
    up = make_upstream(latency_ms=50)
    t = transport(up.base_url, max_concurrency=cap, queue_timeout=10.0)
    try:
        results = await asyncio.gather(
            *(t.post_json("chat/completions", CHAT) for _ in range(cap * 4)),
            *(collect(t, {**CHAT, "stream": True}) for _ in range(cap)),
        )
        assert all(r[0] == 200 for r in results[: cap * 4])
        assert all(len(r) == 6 for r in results[cap * 4 :])
        assert up.stats.max_in_flight == cap
        assert up.stats.requests == cap * 5
    finally:
        await t.aclose()


async def test_queue_timeout_gives_rate_limited(make_upstream) -> None:
    up = make_upstream(latency_ms=600)
    t = transport(up.base_url, max_concurrency=1, queue_timeout=0.1)
    try:
        first = asyncio.create_task(t.post_json("chat/completions", CHAT))
        await wait_for(lambda: t.in_flight == 1)
        with pytest.raises(RateLimited, match="concurrency limit") as info:
            await t.post_json("chat/completions", CHAT)
        assert info.value.retry_after == 1.0
        assert info.value.local is True  # the router must not blame the upstream for our queue
        assert (await first)[0] == 200
        assert up.stats.requests == 1  # the rejected call never reached the upstream
    finally:
        await t.aclose()


def test_redact_removes_secrets_and_key_shapes() -> None:
    text = "key sk-proj-abcdefghijklmnop and Bearer abc.def and mysecret-123 end\n\nmore"
    out = redact(text, ["mysecret-123"])
    assert "abcdefghijklmnop" not in out and "abc.def" not in out and "mysecret" not in out
    assert out.count("[redacted]") == 3 and "\n" not in out
    assert len(redact("x" * 2000)) == 500


def test_a_backups_file_name_is_not_taken_for_a_key() -> None:
    """AUTH-7 (the other side): the scheduled backup's log line names its file (``llmgw-<UTC stamp>.db``); it
    was logged as ``[redacted].db``. Anything else after ``llmgw-``/``llmgw_`` still goes."""
    from llmgw.providers.transport import redact_secrets

    line = "scheduled backup written: /srv/bk/llmgw-20261204T225514131518Z.db (425984 bytes)"
    assert redact_secrets(line) == line
    for key in (
        "llmgw_AbCdEf0123456789",
        "llmgw-AbCdEf0123456789",
        "llmgw-20261204T225514131518Zsecretpart",
        "llmgw-20261204T2255141315",
        "sk-20261204T225514131518Z",
    ):
        assert redact_secrets(f"x {key}.db y") == "x [redacted].db y", key


async def test_line_framing_yields_each_json_line_until_the_upstream_closes() -> None:
    async def ndjson(request: Request) -> Response:
        body = b'{"n": 1}\n\n  {"n": 2}  \r\n{"n": 3}'  # blank line, padding, no final newline
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/v1/stream", ndjson, methods=["POST"])])
    with serve_in_thread(app) as srv:
        t = transport(srv.url + "/v1")
        try:
            got = [orjson.loads(x) async for x in t.open_stream("stream", {}, framing="lines")]
            assert got == [{"n": 1}, {"n": 2}, {"n": 3}]
            assert t.in_flight == 0
            with pytest.raises(UpstreamError, match="event stream"):  # SSE framing insists on SSE
                async for _ in t.open_stream("stream", {}):
                    pass
        finally:
            await t.aclose()
