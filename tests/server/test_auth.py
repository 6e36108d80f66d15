"""Authentication: Bearer and x-api-key, uniform 401s, the revocation bound, the model allow-list."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from llmgw.auth.keys import KeyService
from llmgw.errors import AuthError
from llmgw.server.app import gateway_of

from .conftest import running

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "authentication_error"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer ' OR '1'='1"},
        {"Authorization": "Bearer llmgw_" + "A" * 43},
        {"Authorization": "Bearer " + "x" * 65536},
        {"Authorization": "Bearer sk-proj-abcdef"},
        {"x-api-key": ""},
        {"x-api-key": "llmgw_" + "b" * 43},
    ],
    ids=[
        "none",
        "empty",
        "basic",
        "sqli",
        "unknown",
        "64k",
        "sk-like",
        "empty-x-api-key",
        "x-unknown",
    ],
)
async def test_bad_credentials_get_uniform_401(
    client: httpx.AsyncClient, emulator: Any, headers: dict[str, str]
) -> None:
    _assert_401(await client.post("/v1/chat/completions", json=CHAT, headers=headers))
    _assert_401(await client.get("/v1/models", headers=headers))
    assert emulator.app.state.stats.requests == 0


async def test_x_api_key_works(client: httpx.AsyncClient, key: Any) -> None:
    r = await client.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": key.secret})
    assert r.status_code == 200, r.text


async def test_key_is_never_echoed(client: httpx.AsyncClient, key: Any, caplog: Any) -> None:
    caplog.set_level("INFO")
    await client.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": key.secret})
    r = await client.post(
        "/v1/chat/completions", json={"model": 1}, headers={"x-api-key": key.secret}
    )
    assert key.secret not in r.text
    assert key.secret not in caplog.text
    assert key.info.prefix in caplog.text  # the access log names the key by its public prefix


async def test_revoked_key_stops_within_the_cache_bound(
    settings: Any, key: Any, test_engine: Any, fake_clock: Any
) -> None:
    """AUTH-4 without Redis: a revoked key works until ``key_cache_seconds`` passed, then 401."""
    headers = {"Authorization": f"Bearer {key.secret}"}
    async with running(settings, clock=fake_clock) as (_app, client):
        assert (await client.get("/v1/models", headers=headers)).status_code == 200
        bound = settings.server.key_cache_seconds
        await asyncio.to_thread(KeyService(test_engine).revoke, str(key.info.id))
        fake_clock.advance(bound - 0.01)
        assert (await client.get("/v1/models", headers=headers)).status_code == 200  # cached
        fake_clock.advance(0.02)
        _assert_401(await client.get("/v1/models", headers=headers))


async def test_expired_key_stops_at_once_even_when_cached(
    test_engine: Any, make_key: Any, fake_clock: Any
) -> None:
    """AUTH-4 (expire): a long cache must not keep an expired key alive, with no look-up."""
    from llmgw.server.auth import KeyCache

    cache = KeyCache(
        KeyService(test_engine), ttl=60.0, clock=fake_clock.monotonic, wall_clock=fake_clock.time
    )
    k = await asyncio.to_thread(make_key, "short", expires_in=timedelta(seconds=1.5))
    headers = [(b"authorization", f"Bearer {k.secret}".encode())]
    assert (await cache.authenticate(headers)).id == k.info.id
    fake_clock.advance(1.4)
    assert (await cache.authenticate(headers)).id == k.info.id
    fake_clock.advance(0.2)
    with pytest.raises(AuthError):
        await cache.authenticate(headers)
    assert cache.db_lookups == 1  # refused from the cache, by the expiry it holds


async def test_model_allow_list(client: httpx.AsyncClient, make_key: Any, emulator: Any) -> None:
    k = await asyncio.to_thread(make_key, "embed-only", models=["openai/text-embedding-3-small"])
    headers = {"Authorization": f"Bearer {k.secret}"}
    r = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["type"] == "permission_error"
    assert r.json()["error"]["param"] == "model"
    assert emulator.app.state.stats.requests == 0
    r = await client.post(
        "/v1/embeddings",
        json={"model": "openai/text-embedding-3-small", "input": "x"},
        headers=headers,
    )
    assert r.status_code == 200
    ids = [m["id"] for m in (await client.get("/v1/models", headers=headers)).json()["data"]]
    assert ids == ["openai/text-embedding-3-small"]


async def test_cache_spares_the_database_and_last_used_is_batched(
    client: httpx.AsyncClient, app: Any, key: Any, test_engine: Any
) -> None:
    g = gateway_of(app)
    headers = {"Authorization": f"Bearer {key.secret}"}
    before = g.auth.db_lookups
    results = await asyncio.gather(*(client.get("/v1/models", headers=headers) for _ in range(30)))
    assert all(r.status_code == 200 for r in results)
    assert g.auth.db_lookups - before == 1  # single flight, then cache hits
    svc = KeyService(test_engine)
    assert (await asyncio.to_thread(svc.get, str(key.info.id))).last_used_at is None
    await g.auth.flush_last_used()
    assert (await asyncio.to_thread(svc.get, str(key.info.id))).last_used_at is not None


async def test_repeated_bad_key_is_cached_negatively(client: httpx.AsyncClient, app: Any) -> None:
    g = gateway_of(app)
    headers = {"Authorization": "Bearer llmgw_" + "Z" * 43}
    before = g.auth.db_lookups
    for _ in range(10):
        _assert_401(await client.get("/v1/models", headers=headers))
    assert g.auth.db_lookups - before == 1


@pytest.mark.parametrize(
    "request_line_and_host",
    [
        (b"GET /v1/models HTTP/1.1", b"evil.example/v1/x?y#"),
        (b"GET /v1/models HTTP/1.1", b"127.0.0.1/healthz"),
        (b"GET @evil/v1/models HTTP/1.1", b"127.0.0.1"),
        (b"GET http://other.example/v1/models HTTP/1.1", b"127.0.0.1"),
    ],
)
def test_odd_hosts_and_request_lines_never_bypass_auth(
    gateway_server: Any, request_line_and_host: tuple[bytes, bytes]
) -> None:
    """Starlette BadHost class (CVE-2026-48710/54282): auth follows the routed path, not the URL."""
    import socket

    line, host = request_line_and_host
    with socket.create_connection(("127.0.0.1", gateway_server.port), timeout=5) as s:
        s.sendall(line + b"\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    assert status in (400, 401, 404), data[:300]
    assert b'"status":"ok"' not in data and b'"object":"list"' not in data


async def test_a_requester_leaving_does_not_fail_the_others(
    app: Any, key: Any, test_engine: Any
) -> None:
    """Single flight: cancelling the first requester leaves the shared look-up running."""
    g = gateway_of(app)
    headers = [(b"authorization", f"Bearer {key.secret}".encode())]
    first = asyncio.create_task(g.auth.authenticate(headers))
    others = [asyncio.create_task(g.auth.authenticate(headers)) for _ in range(5)]
    await asyncio.sleep(0)  # everyone is waiting on the one look-up now
    first.cancel()
    infos = await asyncio.gather(*others)
    assert {i.id for i in infos} == {key.info.id}
    assert first.cancelled()
