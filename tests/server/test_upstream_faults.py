"""Upstream faults: documented 502/504 before the first byte, a final SSE error event after it,
and one usage record naming the failure either way."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from llmgw.server import create_app
from llmgw.server.app import gateway_of

from .conftest import running

MSG = [{"role": "user", "content": "one two three four five"}]
FAST = {"first_byte_timeout": 0.5, "idle_timeout": 0.5, "connect_timeout": 1.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(text: str) -> list[Any]:
    out: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            payload = block[6:]
            out.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return out


async def _one_usage(app: Any, read_usage: Callable[[], list[dict[str, Any]]]) -> dict[str, Any]:
    assert await asyncio.to_thread(gateway_of(app).flush_usage, 10.0)
    rows = read_usage()
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_connection_refused_is_502(
    make_settings: Any, test_engine: Any, auth: Any, read_usage: Any, stream: bool
) -> None:
    settings = make_settings(f"http://127.0.0.1:{_free_port()}", provider=FAST)
    async with running(settings) as (app, client):
        t0 = time.monotonic()
        body = {"model": "gpt-4o-mini", "messages": MSG, "stream": stream}
        r = await client.post("/v1/chat/completions", json=body, headers=auth)
        assert time.monotonic() - t0 < 5
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == "upstream_error"
        row = await _one_usage(app, read_usage)
    assert (row["status"], row["error_type"], row["provider"]) == (502, "upstream_error", "openai")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_no_headers_before_timeout_is_504(
    make_settings: Any,
    upstream_factory: Any,
    test_engine: Any,
    auth: Any,
    read_usage: Any,
    stream: bool,
) -> None:
    up = upstream_factory(fault="hang_before_headers")
    async with running(make_settings(up.url, provider=FAST)) as (app, client):
        t0 = time.monotonic()
        body = {"model": "gpt-4o-mini", "messages": MSG, "stream": stream}
        r = await client.post("/v1/chat/completions", json=body, headers=auth)
        assert 0.4 < time.monotonic() - t0 < 5
        assert r.status_code == 504, r.text
        assert r.json()["error"]["code"] == "upstream_timeout"
        row = await _one_usage(app, read_usage)
    assert (row["status"], row["error_type"]) == (504, "upstream_timeout")


async def test_stall_mid_stream_ends_with_error_event(
    make_settings: Any, upstream_factory: Any, test_engine: Any, auth: Any, read_usage: Any
) -> None:
    up = upstream_factory(fault="stall_mid_stream")
    async with running(make_settings(up.url, provider=FAST)) as (app, client):
        body = {"model": "gpt-4o-mini", "messages": MSG, "stream": True}
        r = await client.post("/v1/chat/completions", json=body, headers=auth)
        assert r.status_code == 200  # the status went out with the first chunk
        events = _events(r.text)
        assert events[0]["object"] == "chat.completion.chunk"
        assert events[-1]["error"]["code"] == "upstream_timeout"
        assert "[DONE]" not in events
        row = await _one_usage(app, read_usage)
    assert row["error_type"] == "upstream_timeout"
    assert row["status"] == 504 and row["stream"] in (1, True)
    assert b"partial" in orjson.dumps(row["metadata"]) or "partial" in str(row["metadata"])


async def test_drop_mid_stream_ends_with_error_event(
    make_settings: Any, upstream_factory: Any, test_engine: Any, auth: Any, read_usage: Any
) -> None:
    up = upstream_factory(fault="drop_mid_stream")
    async with running(make_settings(up.url, provider=FAST)) as (app, client):
        body = {"model": "gpt-4o-mini", "messages": MSG, "stream": True}
        r = await client.post("/v1/chat/completions", json=body, headers=auth)
        events = _events(r.text)
        assert r.status_code == 200 and "error" in events[-1]
        row = await _one_usage(app, read_usage)
    assert row["error_type"] == "upstream_error" and row["status"] == 502


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_invalid_json_is_502(
    make_settings: Any,
    upstream_factory: Any,
    test_engine: Any,
    auth: Any,
    read_usage: Any,
    stream: bool,
) -> None:
    up = upstream_factory(fault="invalid_json")
    async with running(make_settings(up.url, provider=FAST)) as (app, client):
        body = {"model": "gpt-4o-mini", "messages": MSG, "stream": stream}
        r = await client.post("/v1/chat/completions", json=body, headers=auth)
        if r.status_code == 200:  # streamed: the bad event arrived after the first byte
            assert "error" in _events(r.text)[-1]
        else:
            assert r.status_code == 502, r.text
            assert r.json()["error"]["type"] == "api_error"
        row = await _one_usage(app, read_usage)
    assert row["error_type"] == "upstream_error" and row["status"] == 502


async def test_upstream_credentials_never_leak(
    make_settings: Any, upstream_factory: Any, test_engine: Any, auth: Any, upstream_key: str
) -> None:
    up = upstream_factory(fault="echo_credentials")
    async with running(make_settings(up.url, provider=FAST)) as (_app, client):
        r = await client.post(
            "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG}, headers=auth
        )
    assert 400 <= r.status_code < 600 and r.status_code != 500
    assert "error" in r.json()
    assert upstream_key not in r.text


def test_client_disconnect_cancels_the_upstream_stream(
    make_settings: Any, upstream_factory: Any, test_engine: Any, key: Any, read_usage: Any
) -> None:
    from llmgw.emulators.runner import serve_in_thread

    up = upstream_factory(chunk_delay_ms=200)
    server = serve_in_thread(create_app(make_settings(up.url)))
    try:
        body = {"model": "gpt-4o-mini", "messages": MSG * 20, "stream": True}
        headers = {"Authorization": f"Bearer {key.secret}"}
        with (
            httpx.Client(timeout=10) as c,
            c.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=headers) as r,
        ):
            assert r.status_code == 200
            next(r.iter_bytes())  # the first chunk arrived; now hang up
        deadline = time.monotonic() + 5
        while up.app.state.stats.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert up.app.state.stats.disconnects == 1  # the upstream call was cancelled
        assert up.app.state.stats.streams_completed == 0
        assert gateway_of(server.app).flush_usage(10.0)
        rows = read_usage()
    finally:
        server.stop()
    assert [(r["status"], r["error_type"]) for r in rows] == [(499, "client_disconnected")]
