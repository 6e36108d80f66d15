"""Hand-written bad input: always a 4xx in OpenAI's envelope, never a 500, nothing reaches the upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from llmgw.server.app import gateway_of

MSG = [{"role": "user", "content": "hi"}]


def _envelope(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in r.text
    return err


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (b'"just a string"', None),
        (b'{"model": "gpt-4o-mini", "messages": "hello"}', "messages"),
        (b'{"model": 42, "messages": []}', "model"),
        (b'{"model": "gpt-4o-mini"}', "messages"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}',
            "messages.0.role",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "temperature": "hot"}',
            "temperature",
        ),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "n": 1e300}', "n"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "surprise": 1}', "surprise"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe"}]}', None),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}', None),
        (b"[" * 10_000 + b"]" * 10_000, None),
    ],
    ids=[
        "invalid-json",
        "empty",
        "array",
        "string",
        "messages-type",
        "model-type",
        "missing-messages",
        "bad-role",
        "temperature-type",
        "huge-number",
        "unknown-field",
        "invalid-utf8",
        "lone-surrogate",
        "deep-nesting",
    ],
)
async def test_bad_bodies_get_400(
    client: httpx.AsyncClient, auth: dict[str, str], emulator: Any, body: bytes, param: str | None
) -> None:
    headers = {**auth, "content-type": "application/json"}
    r = await client.post("/v1/chat/completions", content=body, headers=headers)
    if r.status_code == 200:  # a lone surrogate is valid JSON; it must then reach us intact
        pytest.fail(f"accepted: {r.text[:200]}")
    err = _envelope(r, 400)
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param
    assert emulator.app.state.stats.requests == 0


@pytest.mark.parametrize(
    "field", ["api_base", "base_url", "api_key", "extra_headers", "headers", "organization"]
)
async def test_steering_fields_are_rejected(
    client: httpx.AsyncClient, auth: dict[str, str], emulator: Any, field: str
) -> None:
    body = {"model": "gpt-4o-mini", "messages": MSG, field: "http://169.254.169.254/"}
    err = _envelope(await client.post("/v1/chat/completions", json=body, headers=auth), 400)
    assert err["param"] == field and err["code"] == "forbidden_field"
    emb = {"model": "text-embedding-3-small", "input": "x", field: "http://evil.example/"}
    _envelope(await client.post("/v1/embeddings", json=emb, headers=auth), 400)
    assert emulator.app.state.stats.requests == 0


async def test_ten_megabyte_body_is_413_without_reading_it(
    client: httpx.AsyncClient, auth: dict[str, str], emulator: Any
) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(160):  # 160 x 64 KiB = 10 MiB, sent chunked (no Content-Length)
            pulled += 1
            yield b" " * 65536

    r = await client.post("/v1/chat/completions", content=body(), headers=auth)
    err = _envelope(r, 413)
    assert err["code"] == "payload_too_large"
    limit = 4 * 1024 * 1024
    assert pulled * 65536 <= limit + 2 * 65536  # stopped reading right after the limit
    assert emulator.app.state.stats.requests == 0


async def test_declared_length_over_limit_is_413_before_reading(
    client: httpx.AsyncClient, auth: dict[str, str], app: Any
) -> None:
    limit = gateway_of(app).max_body
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled += 1
        yield b"x" * 10

    headers = {**auth, "content-length": str(limit + 1)}
    _envelope(await client.post("/v1/chat/completions", content=body(), headers=headers), 413)
    assert pulled == 0


async def test_missing_and_malformed_key_beat_bad_bodies(
    client: httpx.AsyncClient, emulator: Any
) -> None:
    r = await client.post("/v1/chat/completions", content=b"{not json")
    assert _envelope(r, 401)["type"] == "authentication_error"
    r = await client.post(
        "/v1/chat/completions", json={"api_base": "x"}, headers={"Authorization": "Token abc"}
    )
    _envelope(r, 401)
    assert emulator.app.state.stats.requests == 0


async def test_unknown_model_and_routes(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post(
        "/v1/chat/completions", json={"model": "nope/x", "messages": MSG}, headers=auth
    )
    assert _envelope(r, 404)["code"] == "model_not_found"
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "openai/not-configured", "messages": MSG},
        headers=auth,
    )
    assert _envelope(r, 404)["param"] == "model"
    _envelope(await client.get("/v1/nothing-here", headers=auth), 404)
    _envelope(await client.get("/v1/chat/completions", headers=auth), 405)


async def test_trailing_slash_is_404_and_never_reflects_the_host(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """Starlette's slash redirect built an absolute Location from the client's Host header."""
    for method, path in (
        ("GET", "/v1/models/"),
        ("POST", "/v1/chat/completions/"),
        ("POST", "/v1/embeddings/"),
        ("GET", "/api/providers/"),
    ):
        r = await client.request(method, path, headers={**auth, "host": "evil.example"})
        _envelope(r, 404)
        assert "location" not in r.headers and "evil" not in r.text


async def test_bad_requests_after_auth_are_recorded(
    client: httpx.AsyncClient, auth: dict[str, str], app: Any, flushed_usage: Any
) -> None:
    await client.post("/v1/chat/completions", content=b"{oops", headers=auth)
    await client.post("/v1/chat/completions", json={"model": "nope", "messages": MSG}, headers=auth)
    rows = await flushed_usage(app)
    assert [(r["status"], r["error_type"]) for r in rows] == [
        (400, "invalid_request"),
        (404, "model_not_found"),
    ]


def test_client_gone_mid_body_is_499_not_a_crash(
    gateway_server: Any, key: Any, read_usage: Any, caplog: Any
) -> None:
    import socket
    import time

    caplog.set_level("INFO")
    with socket.create_connection(("127.0.0.1", gateway_server.port), timeout=5) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + key.secret.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
            b'{"model": "gpt-4o-mini", '
        )
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while not gateway_of(gateway_server.app).flush_usage(5) or not read_usage():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rows = read_usage()
    assert [(r["status"], r["error_type"]) for r in rows] == [(499, "client_disconnected")]
    assert "unhandled" not in caplog.text


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 26660020342801530880])
async def test_seed_outside_int64_is_400_and_the_document_says_so(
    client: httpx.AsyncClient, auth: dict[str, str], emulator: Any, seed: int
) -> None:
    """The OpenAPI document bounds ``seed`` to a signed 64-bit integer, as the server does: a
    schema-valid request (schemathesis found 26660020342801530880) must never be refused."""
    doc = (await client.get("/openapi.json")).json()
    bounds = doc["components"]["schemas"]["ChatRequest"]["properties"]["seed"]["anyOf"][0]
    assert (bounds["minimum"], bounds["maximum"]) == (-(2**63), 2**63 - 1)
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "seed": %d}' % seed
    r = await client.post(
        "/v1/chat/completions", content=body, headers={**auth, "content-type": "application/json"}
    )
    assert _envelope(r, 400)["param"] == "seed"
    assert emulator.app.state.stats.requests == 0
