"""The OAuth endpoints and JWTs at the gateway (in process, the real app and services):
token endpoint grants (OAUTH-4, OAUTH-7, OAUTH-8), revocation (OAUTH-9, OAUTH-10), the device
grant over HTTP (OAUTH-11), client_credentials, metadata and keys, and JWTs wherever an API key
works (JWT-1, JWT-5 over HTTP; the chat scope; the admin scope of an admin user)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from llmgw.auth.users import UserInfo, UserService
from llmgw.identity import codes, device
from llmgw.identity.clients import CLI_CLIENT_ID, DEVICE_GRANT, ClientService
from llmgw.identity.pkce import challenge_of

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
REDIRECT = "http://127.0.0.1:49152/callback"
VERIFIER = "v" * 43 + "-._~abc"


@pytest.fixture
def alice(test_engine: Engine) -> UserInfo:
    return UserService(test_engine).create("alice@example.com")


@pytest.fixture
def root(test_engine: Engine) -> UserInfo:
    return UserService(test_engine).create("root@example.com", role="admin")


@pytest.fixture
def login(test_engine: Engine, client: httpx.AsyncClient) -> Callable[..., Any]:
    """``await login(user, scope)``: the consent step (``issue_code``) then the token request."""

    async def run(user: UserInfo, scope: str = "chat") -> dict[str, Any]:
        code = codes.issue_code(
            test_engine, CLI_CLIENT_ID, user.id, REDIRECT, scope, challenge_of(VERIFIER)
        )
        r = await client.post("/oauth/token", data=_code_form(code))
        assert r.status_code == 200, r.text
        return dict(r.json())

    return run


def _code_form(code: str, **over: str) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": CLI_CLIENT_ID,
        "code_verifier": VERIFIER,
    }
    form.update(over)
    return form


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_code_grant_then_chat_with_the_jwt_OAUTH_7(
    client: httpx.AsyncClient, login: Callable[..., Any], alice: UserInfo
) -> None:
    body = await login(alice)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["scope"] == "chat" and body["refresh_token"].startswith("llmgw_rt_")
    r = await client.post("/v1/chat/completions", json=CHAT, headers=_bearer(body["access_token"]))
    assert r.status_code == 200, r.text
    r = await client.get("/v1/models", headers={"x-api-key": body["access_token"]})
    assert r.status_code == 200 and r.json()["data"]


async def test_token_answers_are_no_store_and_errors_are_rfc_6749_OAUTH_7(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/oauth/token", data={"grant_type": "password", "username": "a"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    assert r.headers["cache-control"] == "no-store" and "error_description" in r.json()
    r = await client.post("/oauth/token", data={"client_id": CLI_CLIENT_ID})
    assert r.json()["error"] == "invalid_request"
    r = await client.post("/oauth/token", content=b"grant_type=x&grant_type=y",
                          headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.json()["error"] == "invalid_request"
    r = await client.post("/oauth/token", json={"grant_type": "authorization_code"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": "nope", "client_id": CLI_CLIENT_ID},
    )
    assert r.status_code == 400 and r.json() == {
        "error": "invalid_grant",
        "error_description": "invalid authorization code",
    }
    assert r.headers["cache-control"] == "no-store"


async def test_a_reused_code_revokes_the_first_tokens_OAUTH_4(
    client: httpx.AsyncClient, test_engine: Engine, alice: UserInfo
) -> None:
    code = codes.issue_code(
        test_engine, CLI_CLIENT_ID, alice.id, REDIRECT, "chat", challenge_of(VERIFIER)
    )
    first = (await client.post("/oauth/token", data=_code_form(code))).json()
    ok = await client.post(
        "/v1/chat/completions", json=CHAT, headers=_bearer(first["access_token"])
    )
    assert ok.status_code == 200
    again = await client.post("/oauth/token", data=_code_form(code))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    r = await client.post("/v1/chat/completions", json=CHAT, headers=_bearer(first["access_token"]))
    assert r.status_code == 401  # revoked at once on this instance (the change is applied here)
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
              "client_id": CLI_CLIENT_ID},
    )  # fmt: skip
    assert r.json()["error"] == "invalid_grant"


async def test_pkce_and_redirect_mismatch_at_the_token_endpoint_OAUTH_2_OAUTH_5(
    client: httpx.AsyncClient, test_engine: Engine, alice: UserInfo
) -> None:
    for change in (
        {"code_verifier": "w" * 43},
        {"code_verifier": VERIFIER[:42]},
        {"redirect_uri": "http://127.0.0.1:49153/callback"},
    ):
        code = codes.issue_code(
            test_engine, CLI_CLIENT_ID, alice.id, REDIRECT, "chat", challenge_of(VERIFIER)
        )
        r = await client.post("/oauth/token", data=_code_form(code, **change))
        assert r.json()["error"] == "invalid_grant"
        r = await client.post("/oauth/token", data=_code_form(code))  # burned
        assert r.json()["error"] == "invalid_grant"


async def test_refresh_rotation_and_reuse_over_http_OAUTH_8(
    client: httpx.AsyncClient, login: Callable[..., Any], alice: UserInfo
) -> None:
    first = await login(alice)

    def form(rt: str, **over: str) -> dict[str, str]:
        return {"grant_type": "refresh_token", "refresh_token": rt, "client_id": CLI_CLIENT_ID,
                **over}  # fmt: skip

    wider = await client.post("/oauth/token", data=form(first["refresh_token"], scope="chat admin"))
    assert wider.json()["error"] == "invalid_scope"
    second = (await client.post("/oauth/token", data=form(first["refresh_token"]))).json()
    assert second["refresh_token"] != first["refresh_token"]
    h2 = _bearer(second["access_token"])
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=h2)).status_code == 200
    reuse = await client.post("/oauth/token", data=form(first["refresh_token"]))
    assert reuse.json()["error"] == "invalid_grant"
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=h2)).status_code == 401
    gone = await client.post("/oauth/token", data=form(second["refresh_token"]))
    assert gone.json()["error"] == "invalid_grant"


async def test_revoke_endpoint_OAUTH_9_OAUTH_10(
    client: httpx.AsyncClient, login: Callable[..., Any], alice: UserInfo, test_engine: Engine
) -> None:
    mine = await login(alice)
    other, secret = ClientService(test_engine).create(
        "svc", "confidential", ["https://svc.example/cb"], ["client_credentials"], ["chat"]
    )
    # V2: garbage, unknown, bogus hint: 200
    for token, hint in (("garbage", None), ("llmgw_rt_x", "refresh_token"), ("a.b.c", "bogus")):
        data = {"token": token, "client_id": CLI_CLIENT_ID}
        if hint:
            data["token_type_hint"] = hint
        r = await client.post("/oauth/revoke", data=data)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    # V3: another client revokes A's token: 200, and the token still works
    r = await client.post(
        "/oauth/revoke", data={"token": mine["access_token"]}, auth=(other.client_id, secret or "")
    )
    assert r.status_code == 200
    h = _bearer(mine["access_token"])
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=h)).status_code == 200
    # V4: a bad secret
    r = await client.post(
        "/oauth/revoke", data={"token": mine["access_token"]}, auth=(other.client_id, "wrong")
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    # V1: the owner revokes the refresh token; refresh fails and the access token is refused
    r = await client.post(
        "/oauth/revoke",
        data={"token": mine["refresh_token"], "client_id": CLI_CLIENT_ID,
              "token_type_hint": "refresh_token"},
    )  # fmt: skip
    assert r.status_code == 200
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=h)).status_code == 401
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": mine["refresh_token"],
              "client_id": CLI_CLIENT_ID},
    )  # fmt: skip
    assert r.json()["error"] == "invalid_grant"
    r = await client.post("/oauth/revoke", data={"token": mine["refresh_token"],
                                                  "client_id": CLI_CLIENT_ID})  # fmt: skip
    assert r.status_code == 200  # already revoked


async def test_device_flow_over_http_OAUTH_11(
    client: httpx.AsyncClient, test_engine: Engine, alice: UserInfo
) -> None:
    r = await client.post(
        "/oauth/device_authorization", data={"client_id": CLI_CLIENT_ID, "scope": "chat"}
    )
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    grant = r.json()
    assert grant["verification_uri"].endswith("/device") and grant["interval"] == 5
    poll = {"grant_type": DEVICE_GRANT, "device_code": grant["device_code"],
            "client_id": CLI_CLIENT_ID}  # fmt: skip
    r = await client.post("/oauth/token", data=poll)
    assert r.json()["error"] == "authorization_pending"
    r = await client.post("/oauth/token", data=poll)
    assert r.json()["error"] == "slow_down"
    device.approve(test_engine, grant["user_code"], alice.id)
    # polled too fast still: slow_down; the state machine's timing is tested with a clock in
    # tests/unit/identity/test_device.py; here only that the endpoint maps it
    wide = await client.post(
        "/oauth/device_authorization", data={"client_id": CLI_CLIENT_ID, "scope": "root"}
    )
    assert wide.json()["error"] == "invalid_scope"


async def test_a_user_may_not_get_the_admin_scope(
    client: httpx.AsyncClient, login: Callable[..., Any], alice: UserInfo, root: UserInfo
) -> None:
    body = await login(alice, "chat admin")
    assert body["scope"] == "chat"  # admin dropped: alice is not an admin
    admin = await login(root, "admin")
    assert admin["scope"] == "admin"
    r = await client.get("/admin/v1/keys", headers=_bearer(admin["access_token"]))
    assert r.status_code == 200, r.text
    r = await client.get("/admin/v1/keys", headers=_bearer(body["access_token"]))
    assert r.status_code == 403
    chat_only = await login(root, "chat")
    r = await client.get("/admin/v1/keys", headers=_bearer(chat_only["access_token"]))
    assert r.status_code == 403  # an admin's token without the admin scope
    # a token without chat may not use the OpenAI routes
    r = await client.post("/v1/chat/completions", json=CHAT, headers=_bearer(admin["access_token"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"


async def test_client_credentials(client: httpx.AsyncClient, test_engine: Engine) -> None:
    svc = ClientService(test_engine)
    info, secret = svc.create(
        "robot", "confidential", ["https://r.example/cb"], ["client_credentials"], ["chat"]
    )
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": info.client_id,
              "client_secret": secret or ""},
    )  # fmt: skip
    assert r.status_code == 200 and "refresh_token" not in r.json()
    token = r.json()["access_token"]
    assert (
        await client.post("/v1/chat/completions", json=CHAT, headers=_bearer(token))
    ).status_code == 200
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        auth=(info.client_id, secret or ""),
    )
    assert r.json()["error"] == "invalid_scope"
    r = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": CLI_CLIENT_ID}
    )
    assert r.json()["error"] == "unauthorized_client"
    svc.revoke(info.client_id)
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(info.client_id, secret or ""),
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_metadata_and_jwks(client: httpx.AsyncClient) -> None:
    meta = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == "http://127.0.0.1:8080"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["token_endpoint"] == meta["issuer"] + "/oauth/token"
    assert meta["response_types_supported"] == ["code"]
    r = await client.get("/.well-known/jwks.json")
    keys = r.json()["keys"]
    assert r.status_code == 200 and len(keys) == 1
    assert keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519" and "d" not in keys[0]


def _b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def test_forged_and_mutated_tokens_are_401_JWT_1_JWT_5(
    client: httpx.AsyncClient, login: Callable[..., Any], alice: UserInfo
) -> None:
    good = (await login(alice))["access_token"]
    head, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    none = _b64({"alg": "none", "typ": "at+jwt"}) + "." + payload + "."
    other_user = dict(claims, sub=str(uuid.uuid4()))
    tampered = head + "." + _b64(other_user) + "." + sig
    for token in (none, tampered, good[:-2], good + "A", good.replace(".", "..", 1)):
        r = await client.post("/v1/chat/completions", json=CHAT, headers=_bearer(token))
        assert r.status_code == 401, token
        assert r.json()["error"]["type"] == "authentication_error"
    ok = await client.post("/v1/chat/completions", json=CHAT, headers=_bearer(good))
    assert ok.status_code == 200


async def _two_instances(
    settings: Any, clock: Any = None
) -> tuple[Any, Any, httpx.AsyncClient, httpx.AsyncClient]:
    from llmgw.server import create_app

    a = create_app(settings)
    b = create_app(settings, clock=clock) if clock is not None else create_app(settings)
    return a, b, _client_of(a), _client_of(b)


def _client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://llmgw")


async def test_a_revoked_token_stops_on_another_instance_within_1_s_without_redis_OAUTH_9(
    settings: Any, test_engine: Engine, alice: UserInfo, fake_clock: Any
) -> None:
    """No Redis: the other instance reads the token's row again after at most 1 s (JWT_CACHE_SECONDS)."""
    a, b, ca, cb = await _two_instances(settings, fake_clock)
    async with a.router.lifespan_context(a), b.router.lifespan_context(b), ca, cb:
        code = codes.issue_code(
            test_engine, CLI_CLIENT_ID, alice.id, REDIRECT, "chat", challenge_of(VERIFIER)
        )
        tok = (await ca.post("/oauth/token", data=_code_form(code))).json()
        h = _bearer(tok["access_token"])
        assert (await cb.post("/v1/chat/completions", json=CHAT, headers=h)).status_code == 200
        r = await ca.post("/oauth/revoke", data={"token": tok["access_token"],
                                                 "client_id": CLI_CLIENT_ID})  # fmt: skip
        assert r.status_code == 200
        assert (await ca.post("/v1/chat/completions", json=CHAT, headers=h)).status_code == 401
        fake_clock.advance(0.5)  # B still trusts its cached check: the stated bound is 1 s
        assert (await cb.post("/v1/chat/completions", json=CHAT, headers=h)).status_code == 200
        fake_clock.advance(0.51)
        assert (await cb.post("/v1/chat/completions", json=CHAT, headers=h)).status_code == 401


async def test_a_revoked_token_stops_on_another_instance_through_redis_OAUTH_9(
    make_settings: Any, emulator: Any, test_engine: Engine, alice: UserInfo, redis_url: str
) -> None:
    """With Redis the revocation is announced: the other instance refuses it well within 1 s."""
    import asyncio
    import time

    prefix = f"llmgw:test:{uuid.uuid4().hex[:8]}"
    from llmgw.config import AuthSettings

    s = make_settings(emulator.url).model_copy(
        update={"redis_url": SecretStr(redis_url), "auth": AuthSettings(redis_prefix=prefix)}
    )
    a, b, ca, cb = await _two_instances(s)
    async with a.router.lifespan_context(a), b.router.lifespan_context(b), ca, cb:
        code = codes.issue_code(
            test_engine, CLI_CLIENT_ID, alice.id, REDIRECT, "chat", challenge_of(VERIFIER)
        )
        tok = (await ca.post("/oauth/token", data=_code_form(code))).json()
        h = _bearer(tok["access_token"])
        assert (await cb.post("/v1/chat/completions", json=CHAT, headers=h)).status_code == 200
        await ca.post("/oauth/revoke", data={"token": tok["refresh_token"],
                                             "client_id": CLI_CLIENT_ID})  # fmt: skip
        t0 = time.monotonic()
        while (await cb.post("/v1/chat/completions", json=CHAT, headers=h)).status_code == 200:
            assert time.monotonic() - t0 < 1.0, "still accepted 1 s after the revocation"
            await asyncio.sleep(0.02)


async def test_admin_api_clients(
    client: httpx.AsyncClient, login: Callable[..., Any], root: UserInfo, alice: UserInfo
) -> None:
    admin = _bearer((await login(root, "admin"))["access_token"])
    r = await client.post(
        "/admin/v1/oauth/clients",
        json={"name": "svc", "kind": "confidential", "grant_types": ["client_credentials"],
              "scopes": ["chat"]},
        headers=admin,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    made = r.json()
    assert made["client_secret"].startswith("llmgw_cs_")
    listed = (await client.get("/admin/v1/oauth/clients", headers=admin)).json()["data"]
    assert {c["client_id"] for c in listed} == {CLI_CLIENT_ID, made["client_id"]}
    cc = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(made["client_id"], made["client_secret"]),
    )
    token = _bearer(cc.json()["access_token"])
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=token)).status_code == 200
    r = await client.post(f"/admin/v1/oauth/clients/{made['client_id']}/revoke", headers=admin)
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 1
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=token)).status_code == 401
    r = await client.post("/admin/v1/oauth/clients/c_nope/revoke", headers=admin)
    assert r.status_code == 404
    r = await client.post("/admin/v1/oauth/clients", json={"name": 1}, headers=admin)
    assert r.status_code == 400
    user = _bearer((await login(alice))["access_token"])
    assert (await client.get("/admin/v1/oauth/clients", headers=user)).status_code == 403
