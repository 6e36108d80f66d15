"""Token callers (access JWTs and personal access tokens) at the gateway: rate-limited like API
keys through the same limiter (RL-1 for tokens: exact admission, the same 429 envelope with
``Retry-After`` and ``x-ratelimit-*`` headers), and recorded by user and token, never in the key
column (``usage.token_id``; ``llmgw usage stats --by user`` counts them for their user)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from llmgw.auth.users import UserInfo, UserService
from llmgw.config import Settings
from llmgw.identity import codes
from llmgw.identity.clients import CLI_CLIENT_ID
from llmgw.identity.pkce import challenge_of
from llmgw.identity.tokens import TokenService
from llmgw.usage.reports import usage_stats

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
REDIRECT = "http://127.0.0.1:49152/callback"
VERIFIER = "v" * 43 + "-._~abc"


@pytest.fixture
def limited(settings: Settings) -> Settings:
    """Settings with ``identity.token_rpm = 3``."""
    ident = settings.identity.model_copy(update={"token_rpm": 3})
    return settings.model_copy(update={"identity": ident})


@pytest.fixture
async def app(limited: Settings) -> AsyncIterator[Any]:  # replaces conftest's: limits set
    from llmgw.server import create_app

    application = create_app(limited)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def alice(test_engine: Engine) -> UserInfo:
    return UserService(test_engine).create("alice@example.com")


async def _login(client: httpx.AsyncClient, engine: Engine, user: UserInfo) -> dict[str, Any]:
    code = codes.issue_code(
        engine, CLI_CLIENT_ID, user.id, REDIRECT, "chat", challenge_of(VERIFIER)
    )
    r = await client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": CLI_CLIENT_ID,
            "code_verifier": VERIFIER,
        },
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _pat(settings: Settings, engine: Engine, user: UserInfo, **limits: Any) -> tuple[str, str]:
    rec, token = TokenService.from_settings(settings, engine).create_pat(
        user.id, "ci", "chat", timedelta(days=30), **limits
    )
    return rec.jti, token


async def _chat(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(
        "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {token}"}
    )


async def test_a_users_access_tokens_share_one_limited_bucket_RL_1(
    client: httpx.AsyncClient, test_engine: Engine, alice: UserInfo
) -> None:
    """Two logins and a refresh of the same user draw on one bucket of identity.token_rpm."""
    first = await _login(client, test_engine, alice)
    second = await _login(client, test_engine, alice)
    a = await _chat(client, first["access_token"])
    b = await _chat(client, second["access_token"])
    refreshed = await client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": CLI_CLIENT_ID,
        },
    )
    c = await _chat(client, refreshed.json()["access_token"])
    refused = await _chat(client, second["access_token"])
    assert [r.status_code for r in (a, b, c, refused)] == [200, 200, 200, 429]
    assert a.headers["x-ratelimit-limit-requests"] == "3"
    assert [r.headers["x-ratelimit-remaining-requests"] for r in (a, b, c)] == ["2", "1", "0"]
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 20  # one request per 20 s refills
    err = refused.json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert err["message"].startswith("rate limit reached for this user's access tokens: 3 requests")


async def test_a_personal_access_token_has_its_own_bucket_and_limits_RL_1(
    client: httpx.AsyncClient, test_engine: Engine, alice: UserInfo, limited: Settings
) -> None:
    _, own = _pat(limited, test_engine, alice, rpm=1, tpm=100_000)
    _, default = _pat(limited, test_engine, alice)
    login = await _login(client, test_engine, alice)
    ok = await _chat(client, own)
    assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-requests"] == "1"
    assert ok.headers["x-ratelimit-limit-tokens"] == "100000"
    refused = await _chat(client, own)
    assert refused.status_code == 429
    assert "this personal access token: 1 requests per minute" in refused.json()["error"]["message"]
    # another token of the same user, and the user's login, are not touched by it
    statuses = [(await _chat(client, default)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # identity.token_rpm, a bucket of its own
    assert (await _chat(client, login["access_token"])).status_code == 200


async def test_without_limits_a_token_caller_gets_no_ratelimit_headers(
    settings: Settings, test_engine: Engine, alice: UserInfo
) -> None:
    from llmgw.server import create_app

    application = create_app(settings)  # identity.token_rpm unset
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://llmgw") as client:
            _, pat = _pat(settings, test_engine, alice)
            answers = [await _chat(client, pat) for _ in range(5)]
    assert {r.status_code for r in answers} == {200}
    assert "x-ratelimit-limit-requests" not in answers[0].headers


async def test_a_token_call_is_recorded_for_its_user_and_token_not_as_a_key(
    client: httpx.AsyncClient,
    app: Any,
    test_engine: Engine,
    alice: UserInfo,
    limited: Settings,
    make_key: Callable[..., Any],
    flushed_usage: Callable[..., Any],
) -> None:
    jti, pat = _pat(limited, test_engine, alice)
    login = await _login(client, test_engine, alice)
    key = make_key("k", user=alice.email)
    assert (await _chat(client, pat)).status_code == 200
    assert (await _chat(client, login["access_token"])).status_code == 200
    assert (await _chat(client, key.secret)).status_code == 200
    rows = await flushed_usage(app)
    assert len(rows) == 3
    by_token = [r for r in rows if r["token_id"] is not None]
    assert {r["token_id"] for r in by_token} == {jti, _jti_of(login["access_token"])}
    assert all(r["key_id"] is None and str(r["user_id"]).replace("-", "") == alice.id.hex
               for r in by_token)  # fmt: skip
    (by_key,) = [r for r in rows if r["token_id"] is None]
    assert str(by_key["key_id"]).replace("-", "") == key.info.id.hex
    per_user = usage_stats(test_engine, since=None, by="user")
    assert [(r["email"], r["requests"]) for r in per_user] == [("alice@example.com", 3)]
    per_key = {r["key"]: r["requests"] for r in usage_stats(test_engine, since=None, by="key")}
    assert per_key == {str(key.info.id): 1, None: 2}  # no jti in the key column


def _jti_of(token: str) -> str:
    import base64
    import json

    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])
