"""The request-receipt deadline of a real ``llmgw serve`` (``request_receipt_timeout = 1``).

Slow headers and slow bodies get 408 with OpenAI's envelope and lose the connection; idle time
between requests, a fresh connection's first wait (uvicorn's 5 s keep-alive applies) and a
streaming response longer than the deadline are not cut; 200 requests on one connection pass.
"""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

pytestmark = pytest.mark.slow

WORDS = " ".join(f"w{i}" for i in range(12))  # ~15 stream frames
ENVELOPE_CODE = "request_timeout"


@pytest.fixture
def serve(
    serve_process: Callable[..., tuple[subprocess.Popen[bytes], str]],
) -> Callable[..., tuple[subprocess.Popen[bytes], int]]:
    """Start ``llmgw serve`` with a 1 s receipt deadline; returns (process, port)."""

    def start(upstream_url: str) -> tuple[subprocess.Popen[bytes], int]:
        proc, url = serve_process(upstream_url, server="request_receipt_timeout = 1")
        return proc, int(url.rsplit(":", 1)[1])

    return start


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _trickle(sock: socket.socket, data: bytes, every: float, limit: float) -> tuple[bytes, float]:
    """Send ``data`` a byte every ``every`` s until the server closes; (all it sent, seconds)."""
    t0 = time.monotonic()
    received = b""
    i = 0
    while time.monotonic() - t0 < limit:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            chunk = sock.recv(65536)
            if not chunk:
                return received, time.monotonic() - t0
            received += chunk
            continue
        if i < len(data):
            with contextlib.suppress(OSError):  # closed under us: read what is left
                sock.sendall(data[i : i + 1])
            i += 1
    raise AssertionError(f"not closed within {limit}s; got {received!r}")


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    t0 = time.monotonic()
    sock.settimeout(limit)
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received, time.monotonic() - t0
        received += chunk


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    return status, headers, body


def _assert_408(raw: bytes) -> None:
    status, headers, body = _parse(raw)
    assert status == 408, raw
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    err = orjson.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["param"], err["code"]) == (
        "invalid_request_error",
        None,
        ENVELOPE_CODE,
    )


def _request(sock: socket.socket, method: str, path: str, secret: str, body: bytes = b"") -> bytes:
    sock.sendall(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return _response(sock)


def _response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, read off a keep-alive connection."""
    sock.settimeout(10)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-response: {buf!r}"
        buf += chunk
    _, headers, body = _parse(buf)
    need = int(headers["content-length"])
    while len(body) < need:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
        buf += chunk
    return buf


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_slowloris_headers_get_408_and_close(serve: Any, emulator: Any) -> None:
    _, port = serve(emulator.url)
    with _connect(port) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        raw, elapsed = _trickle(sock, b"X-Slow: " + b"a" * 100, every=0.3, limit=8)
    _assert_408(raw)
    assert 0.9 <= elapsed <= 2.5, elapsed
    assert _metric(port, "llmgw_request_receipt_timeouts_total") == 1


def test_slow_body_gets_408_and_close(serve: Any, emulator: Any, key: Any, read_usage: Any) -> None:
    _, port = serve(emulator.url)
    with _connect(port) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {key.secret}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        t0 = time.monotonic()
        received = b""
        sent = 0
        while time.monotonic() - t0 < 8:
            readable, _, _ = select.select([sock], [], [], 0.3)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            elif sent < 90:  # never complete: 10 bytes every 0.3 s, stop short of 100
                with contextlib.suppress(OSError):
                    sock.sendall(b" " * 10)
                sent += 10
        elapsed = time.monotonic() - t0
    _assert_408(received)
    assert 0.9 <= elapsed <= 2.5, elapsed
    assert _metric(port, "llmgw_request_receipt_timeouts_total") == 1
    # The app saw its client vanish while reading the body: one 499 usage record, nothing upstream.
    deadline = time.monotonic() + 5
    while not (rows := read_usage()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(r["status"], r["error_type"]) for r in rows] == [(499, "client_disconnected")]
    assert emulator.app.state.stats.requests == 0


def test_slow_body_after_the_app_answered_just_closes(serve: Any, emulator: Any) -> None:
    """No key: the app answers 401 without reading the body; the trickle is then cut, no 408."""
    _, port = serve(emulator.url)
    with _connect(port) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        raw, elapsed = _trickle(sock, b" " * 90, every=0.3, limit=8)
    assert raw.startswith(b"HTTP/1.1 401 ") and raw.count(b"HTTP/1.1 ") == 1, raw
    assert 0.9 <= elapsed <= 2.5, elapsed


def test_idle_keepalive_gap_is_not_the_deadline(serve: Any, emulator: Any, key: Any) -> None:
    _, port = serve(emulator.url)
    with _connect(port) as sock:
        assert _request(sock, "GET", "/healthz", key.secret).startswith(b"HTTP/1.1 200 ")
        time.sleep(2.0)  # twice the receipt deadline, under uvicorn's 5 s keep-alive
        assert _request(sock, "GET", "/v1/models", key.secret).startswith(b"HTTP/1.1 200 ")


def test_connection_that_sends_nothing_is_closed_after_keepalive(serve: Any, emulator: Any) -> None:
    """No request began, so no 408: closed silently after timeout_keep_alive (5 s), as when idle."""
    _, port = serve(emulator.url)
    with _connect(port) as sock:
        raw, elapsed = _read_until_closed(sock, 8)
    assert raw == b""
    assert 4.9 <= elapsed <= 6.5, elapsed
    assert _metric(port, "llmgw_request_receipt_timeouts_total") == 0


def test_stream_longer_than_the_deadline_completes(
    serve: Any, upstream_factory: Any, key: Any
) -> None:
    up = upstream_factory(chunk_delay_ms=170)  # ~15 frames: about 2.5 s
    _, port = serve(up.url)
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": WORDS}],
        "stream": True,
    }
    t0 = time.monotonic()
    frames: list[bytes] = []
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key.secret}"},
        ) as r,
    ):
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                frames.append(line.encode())
    elapsed = time.monotonic() - t0
    assert elapsed > 2.0, elapsed  # outlived the 1 s deadline twice over
    assert frames[-1] == b"data: [DONE]"
    text = "".join(
        (orjson.loads(f[6:])["choices"] or [{"delta": {}}])[0]["delta"].get("content") or ""
        for f in frames[:-1]
    )
    assert text == f"Echo: {WORDS}"
    assert _metric(port, "llmgw_request_receipt_timeouts_total") == 0


def test_two_hundred_requests_on_one_connection(serve: Any, emulator: Any, key: Any) -> None:
    _, port = serve(emulator.url)
    payload = orjson.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    )
    statuses = []
    with _connect(port) as sock:
        for i in range(200):
            if i % 2:
                raw = _request(sock, "POST", "/v1/chat/completions", key.secret, payload)
            else:
                raw = _request(sock, "GET", "/healthz", key.secret)
            statuses.append(_parse(raw)[0])
    assert statuses == [200] * 200
    assert emulator.app.state.stats.requests == 100
    assert _metric(port, "llmgw_request_receipt_timeouts_total") == 0


def test_large_body_at_normal_speed_is_not_cut(serve: Any, emulator: Any, key: Any) -> None:
    """2 MiB: uvicorn pauses reading past 64 KiB until the app reads; that pause is not the client's."""
    _, port = serve(emulator.url)
    content = "x" * (2 * 1024 * 1024)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    r = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key.secret}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert _metric(port, "llmgw_request_receipt_timeouts_total") == 0
