"""The pure ASGI chat route: same behaviour as the Starlette routes around it (disconnects, errors)."""

from __future__ import annotations

import socket
import time
from typing import Any

import orjson

from llmgw.emulators.runner import serve_in_thread
from llmgw.server import create_app
from llmgw.server.app import gateway_of

MSG = [{"role": "user", "content": "one two three"}]


def test_client_disconnect_cancels_a_slow_non_streaming_call(
    make_settings: Any, upstream_factory: Any, key: Any, read_usage: Any
) -> None:
    up = upstream_factory(fault="hang_before_headers")
    slow = {"first_byte_timeout": 30.0, "total_timeout": 60.0}
    server = serve_in_thread(create_app(make_settings(up.url, provider=slow)))
    try:
        body = orjson.dumps({"model": "gpt-4o-mini", "messages": MSG})
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nAuthorization: Bearer "
                + key.secret.encode()
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            deadline = time.monotonic() + 5
            while up.app.state.stats.requests == 0:  # the call reached the upstream
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.2)  # longer than the delay before the disconnect watcher starts
        deadline = time.monotonic() + 5
        while up.app.state.stats.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert up.app.state.stats.disconnects == 1  # the upstream call was cancelled at once
        assert gateway_of(server.app).flush_usage(10.0)
        rows = read_usage()
    finally:
        server.stop()
    assert [(r["status"], r["error_type"]) for r in rows] == [(499, "client_disconnected")]


async def test_chat_route_answers_like_the_others(client: Any, auth: dict[str, str]) -> None:
    ok = await client.post(
        "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG}, headers=auth
    )
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/json"
    assert int(ok.headers["content-length"]) == len(ok.content)
    assert ok.headers["x-llmgw-served-by"] and ok.headers["x-request-id"].startswith("req_")
    assert ok.json()["choices"][0]["message"]["role"] == "assistant"

    wrong_method = await client.put("/v1/chat/completions", headers=auth)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()

    no_key = await client.post("/v1/chat/completions", json={"model": "gpt-4o-mini"})
    assert no_key.status_code == 401
    assert no_key.headers["www-authenticate"] == 'Bearer realm="llmgw"'
    assert no_key.json()["error"]["type"] == "authentication_error"

    bad = await client.post(
        "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []}, headers=auth
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"
    assert bad.headers["x-request-id"].startswith("req_")


def test_streams_open_gauge_counts_a_stream_in_progress(
    make_settings: Any, upstream_factory: Any, key: Any
) -> None:
    import httpx

    up = upstream_factory(fault="stall_mid_stream")  # two frames, then silence until we hang up
    server = serve_in_thread(create_app(make_settings(up.url)))
    body = {"model": "gpt-4o-mini", "messages": MSG, "stream": True}
    headers = {"Authorization": f"Bearer {key.secret}"}

    def gauge(c: httpx.Client) -> float:
        text = c.get(f"{server.url}/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("llmgw_streams_open "))
        return float(line.split()[1])

    try:
        with httpx.Client(timeout=10) as c:
            assert gauge(c) == 0
            with c.stream(
                "POST", f"{server.url}/v1/chat/completions", json=body, headers=headers
            ) as r:
                assert r.status_code == 200
                chunks = r.iter_bytes()  # kept: a dropped iterator closes the response
                next(chunks)  # the stream is open
                assert gauge(c) == 1
            deadline = time.monotonic() + 5
            while gauge(c) != 0:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        server.stop()
