"""The admin API (/admin/v1) on a real uvicorn server, called with the real httpx client and
``RemoteAdmin``: admin check (AUTH-5, AUTH-6), every operation, audit rows, recent requests from
memory, live provider state, and the local cache forgetting a key revoked through the API."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.admin.remote import RemoteAdmin
from llmgw.errors import PermissionDenied

ADMIN_PATHS = [
    ("GET", "/admin/v1/keys"),
    ("POST", "/admin/v1/keys"),
    ("GET", "/admin/v1/keys/00000000"),
    ("PATCH", "/admin/v1/keys/00000000"),
    ("POST", "/admin/v1/keys/00000000/revoke"),
    ("POST", "/admin/v1/keys/00000000/rotate"),
    ("GET", "/admin/v1/users"),
    ("POST", "/admin/v1/users"),
    ("GET", "/admin/v1/users/a@example.com"),
    ("PATCH", "/admin/v1/users/a@example.com"),
    ("POST", "/admin/v1/users/a@example.com/disable"),
    ("POST", "/admin/v1/users/a@example.com/enable"),
    ("GET", "/admin/v1/usage/stats"),
    ("GET", "/admin/v1/usage/recent"),
    ("GET", "/admin/v1/providers"),
    ("POST", "/admin/v1/providers/openai/test"),
    ("GET", "/admin/v1/providers/stored"),
    ("POST", "/admin/v1/providers"),
    ("PATCH", "/admin/v1/providers/openai"),
    ("DELETE", "/admin/v1/providers/openai"),
    ("POST", "/admin/v1/providers/openai/disable"),
    ("POST", "/admin/v1/providers/openai/enable"),
    ("GET", "/admin/v1/aliases"),
    ("POST", "/admin/v1/aliases"),
    ("PATCH", "/admin/v1/aliases/smart"),
    ("DELETE", "/admin/v1/aliases/smart"),
    ("GET", "/admin/v1/models"),
    ("GET", "/admin/v1/audit"),
    ("GET", "/admin/v1/whoami"),
    ("GET", "/admin/v1/tokens"),
    ("POST", "/admin/v1/tokens"),
    ("GET", "/admin/v1/tokens/00000000"),
    ("POST", "/admin/v1/tokens/00000000/revoke"),
    ("GET", "/admin/v1/oauth/clients"),
    ("POST", "/admin/v1/oauth/clients"),
    ("GET", "/admin/v1/oauth/clients/llmgw-cli"),
    ("POST", "/admin/v1/oauth/clients/llmgw-cli/revoke"),
    ("GET", "/admin/v1/oauth/keys"),
    ("POST", "/admin/v1/oauth/keys/rotate"),
]


@pytest.fixture
def local(test_engine: Engine) -> LocalAdmin:
    return LocalAdmin(test_engine, Actor.local())


@pytest.fixture
def admin_key(local: LocalAdmin) -> str:
    local.users_create("root@example.com", role="admin")
    return str(local.keys_create("root", user="root@example.com")["key"])


@pytest.fixture
def user_key(local: LocalAdmin) -> dict[str, Any]:
    local.users_create("bob@example.com")
    return local.keys_create("bob", user="bob@example.com")


def test_no_key_is_401_and_a_non_admin_key_is_403_on_every_admin_route(
    gateway_server: Any, user_key: dict[str, Any], local: LocalAdmin
) -> None:
    """AUTH-6: a non-admin key gets 403 on every admin route and changes nothing; AUTH-5: the
    answer says nothing about other keys or users (the same body whatever the target)."""
    other = local.keys_create("victim")
    before = local.keys_list()
    bodies = set()
    with httpx.Client(base_url=gateway_server.url, timeout=10) as http:
        for method, path in ADMIN_PATHS:
            assert http.request(method, path).status_code == 401, (method, path)
            resp = http.request(
                method,
                path.replace("00000000", other["id"]),
                headers={"Authorization": f"Bearer {user_key['key']}"},
                json={"name": "x", "rpm": 1_000_000_000, "email": "evil@example.com"},
            )
            assert resp.status_code == 403, (method, path, resp.text)
            error = resp.json()["error"]
            assert error["type"] == "permission_error" and error["code"] == "admin_required"
            bodies.add(resp.text)
    assert len(bodies) == 1 and other["prefix"] not in bodies.pop()
    assert local.keys_list() == before  # nothing minted, nothing revoked
    assert local.audit_list(action="keys.revoke") == []
    with pytest.raises(PermissionDenied), RemoteAdmin(gateway_server.url, user_key["key"]) as r:
        r.keys_list()


def test_an_admin_runs_every_operation_and_each_change_is_audited(
    gateway_server: Any, admin_key: str, local: LocalAdmin
) -> None:
    with RemoteAdmin(gateway_server.url, admin_key, source="tui") as remote:
        me = remote.whoami()
        assert (me["actor"], me["role"], me["mode"]) == ("root@example.com", "admin", "remote")
        user = remote.users_create("ann@example.com", name="Ann")
        assert remote.users_show("ann@example.com") == user == local.users_show(user["id"])
        made = remote.keys_create("ci", user="ann@example.com", rpm=5, models=["openai/*"])
        assert made["key"].startswith("llmgw_") and made["rpm"] == 5
        assert remote.keys_show(made["prefix"]) == local.keys_show(made["id"])
        changed = remote.keys_update(made["id"], rpm=None, tpm=100)
        assert (changed["rpm"], changed["tpm"]) == (None, 100)
        assert remote.users_set_role("ann@example.com", "admin")["role"] == "admin"
        assert remote.users_disable("ann@example.com")["status"] == "disabled"
        assert remote.users_enable("ann@example.com")["status"] == "active"
        rotated = remote.keys_rotate(made["id"])
        revoked = remote.keys_revoke(rotated["id"])
        assert revoked["status"] == "revoked"
        assert remote.keys_list() == local.keys_list()
        assert remote.keys_list(include_revoked=True) == local.keys_list(include_revoked=True)
        assert remote.users_list() == local.users_list()
        assert remote.usage_stats(by="day") == local.usage_stats(by="day")
        entries = remote.audit_list(action="keys.*", actor="root@example.com")
    assert [e["action"] for e in entries] == [
        "keys.revoke",
        "keys.rotate",
        "keys.update",
        "keys.create",
    ]
    every = local.audit_list(actor="root@example.com")
    assert len(every) == 8
    assert {(e["actor"], e["actor_kind"], e["source"], e["remote_addr"]) for e in every} == {
        ("root@example.com", "key", "tui", "127.0.0.1")
    }
    text = str(every)
    assert made["key"] not in text and rotated["key"] not in text and admin_key not in text


def test_bad_admin_input_is_400_with_the_envelope(gateway_server: Any, admin_key: str) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=gateway_server.url, timeout=10, headers=auth) as http:
        for method, path, body in [
            ("POST", "/admin/v1/keys", {"rpm": 5}),
            ("POST", "/admin/v1/keys", {"name": "x", "rpm": "5"}),
            ("POST", "/admin/v1/keys", {"name": "x", "expires_in": -1}),
            ("POST", "/admin/v1/users", {"email": "not-an-email"}),
            ("GET", "/admin/v1/usage/stats?by=week", None),
            ("GET", "/admin/v1/usage/stats?since=yesterday", None),
            ("GET", "/admin/v1/usage/recent?limit=0", None),
            ("GET", "/admin/v1/audit?limit=x", None),
        ]:
            resp = http.request(method, path, json=body)
            assert resp.status_code == 400, (method, path, resp.text)
            fields = set(resp.json()["error"])
            assert (
                {"message", "type", "param", "code"}
                <= fields
                <= {"message", "type", "param", "code", "hint"}
            )
        missing = http.get("/admin/v1/keys/0123456789abcdef")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
        # The error's hint, the line the CLI prints under the message, comes along on the admin
        # API (so `--url` shows it as local mode does); the OpenAI routes' envelopes stay as is.
        assert "llmgw keys list" in missing.json()["error"]["hint"]
        bad_email = http.post("/admin/v1/users", json={"email": "not-an-email"}).json()["error"]
        assert bad_email["hint"] == "use the form name@example.com"
        chat = http.post("/v1/chat/completions", json={"model": "nope/x", "messages": []})
        assert "hint" not in chat.json()["error"]


def test_recent_requests_come_from_memory_and_a_revoked_key_is_refused_at_once(
    gateway_server: Any, admin_key: str, local: LocalAdmin
) -> None:
    client_key = local.keys_create("app")
    chat = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=gateway_server.url, timeout=10) as http:
        bearer = {"Authorization": f"Bearer {client_key['key']}"}
        for _ in range(3):
            assert http.post("/v1/chat/completions", json=chat, headers=bearer).status_code == 200
        with RemoteAdmin(gateway_server.url, admin_key) as remote:
            recent = remote.usage_recent(limit=2)
            assert len(recent) == 2
            assert {(r["key_prefix"], r["status"], r["provider"]) for r in recent} == {
                (client_key["prefix"], 200, "openai")
            }
            assert recent[0]["at"] >= recent[1]["at"] and recent[0]["total_tokens"] > 0
            rows = remote.providers_status()
            assert rows and all(r["live"] is True for r in rows)
            assert any(r["model"] == "gpt-4o-mini" and r["requests"] >= 3 for r in rows)
            remote.keys_revoke(client_key["id"])  # the server forgets its cached copy at once
        refused = http.post("/v1/chat/completions", json=chat, headers=bearer)
        assert refused.status_code == 401


def test_the_openapi_examples_have_the_shape_of_the_real_answers(
    gateway_server: Any, admin_key: str, local: LocalAdmin, test_engine: Engine
) -> None:
    """Every /admin/v1 operation in the OpenAPI document: its 200 example has exactly the fields
    the server answers with (lists: the fields of their items)."""
    from llmgw.server.openapi import openapi_document

    local.users_create("ann@example.com")
    made = local.keys_create("ci", user="ann@example.com")
    chat = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=gateway_server.url, timeout=10, headers=auth) as http:
        assert http.post("/v1/chat/completions", json=chat).status_code == 200
        http.patch(f"/admin/v1/keys/{made['id']}", json={"rpm": 3})  # an audit row
        budget = http.post(
            "/admin/v1/budgets", json={"user": "ann@example.com", "amount": "5", "currency": "USD"}
        ).json()
        quota = http.post("/admin/v1/quotas", json={"user": "ann@example.com", "rpm": 100})
        assert quota.status_code == 200, quota.text
        stored = http.post(  # a provider kept in the database: GET /admin/v1/providers/stored
            "/admin/v1/providers",
            json={"name": "vllm", "kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                  "models": ["llama-3.1-8b"]},
        )  # fmt: skip
        assert stored.status_code in (200, 201), stored.text
        pat = http.post(  # a token (and with it the first signing key)
            "/admin/v1/tokens",
            json={"user": "ann@example.com", "name": "ci", "expires_in": 3600, "scope": "chat"},
        ).json()
        deadline = time.monotonic() + 10
        while not local.usage_recent(limit=1):  # the usage row reaches the database
            assert time.monotonic() < deadline
            time.sleep(0.05)
        checked = 0
        for path, item in openapi_document()["paths"].items():
            if not path.startswith("/admin/v1"):
                continue
            for method, op in item.items():
                if method != "get":
                    continue
                ref = {"/keys/": made["id"], "/tokens/": pat["jti"], "/budgets/": budget["id"]}
                url = path.replace(
                    "{ref}", next((v for k, v in ref.items() if k in path), "ann@example.com")
                ).replace("{client_id}", "llmgw-cli")
                answer = http.get(url).json()
                example = op["responses"]["200"]["content"]["application/json"]["example"]
                if "data" in example:
                    if path.endswith("/usage/recommend") and answer["data"] == []:
                        continue  # one request recommends nothing (tests/unit/test_recommend.py)
                    assert answer["data"], url
                    example, answer = example["data"][0], answer["data"][0]
                assert set(answer) == set(example), (url, set(answer) ^ set(example))
                checked += 1
    assert checked == 21  # with GET /admin/v1/providers/prices, /admin/v1/oauth/clients
    # [/{client_id}], oauth/keys, tokens[/{ref}], /admin/v1/models, budgets[/{ref}], quotas,
    # providers/stored, aliases


@pytest.mark.redis
@pytest.mark.filterwarnings("error")
async def test_the_change_publisher_of_the_admin_routes_is_closed_at_shutdown(
    make_settings: Any,
    emulator: Any,
    redis_url: str,
    local: LocalAdmin,
    admin_key: str,
) -> None:
    """A revoke through the API is published on Redis (another instance would hear it), and the
    publisher's connection is closed when the server stops (Redis no longer lists it), with no
    ResourceWarning (an error here) once the app is gone."""
    import gc
    import uuid

    import redis.asyncio as aredis
    from pydantic import SecretStr

    from llmgw.server import create_app
    from llmgw.server.app import gateway_of

    prefix = f"llmgw-test:{uuid.uuid4().hex[:12]}:auth"
    base = make_settings(emulator.url)
    settings = base.model_copy(
        update={
            "redis_url": SecretStr(redis_url),
            "auth": base.auth.model_copy(update={"redis_prefix": prefix}),
        }
    )
    victim = local.keys_create("victim")
    app: Any = create_app(settings)
    listener = aredis.Redis.from_url(redis_url)

    async def publishers() -> set[str]:
        clients = await listener.client_list()
        return {c["addr"] for c in clients if c.get("name") == "llmgw-server-publisher"}

    try:
        before = await publishers()
        async with app.router.lifespan_context(app):
            gateway = gateway_of(app)
            assert gateway.publisher is not None
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://llmgw") as c:
                resp = await c.post(
                    f"/admin/v1/keys/{victim['id']}/revoke",
                    headers={"Authorization": f"Bearer {admin_key}"},
                )
            assert resp.status_code == 200 and resp.json()["status"] == "revoked"
            assert gateway.publisher.published == 1 and gateway.publisher.error is None
            assert int(await listener.get(f"{prefix}:version") or 0) == 1
            ours = await publishers() - before
            assert len(ours) == 1
        assert gateway.publisher is None
        assert not ours & await publishers()  # the connection is gone from Redis
        del app, gateway, transport
        gc.collect()
    finally:
        await listener.delete(f"{prefix}:version")
        await listener.aclose()


def test_an_admin_tests_a_provider_from_the_server_and_it_is_audited(
    gateway_server: Any, admin_key: str, local: LocalAdmin
) -> None:
    """``t`` on the dashboard's Providers screen: a real round trip from the server to the
    emulator with the server's configuration and secret; an unknown name is 404; both recorded."""
    from llmgw.errors import NotFound

    with RemoteAdmin(gateway_server.url, admin_key, source="tui") as remote:
        result = remote.providers_test("openai", model="gpt-4o-mini")
        assert (result["provider"], result["ok"], result["check"]) == ("openai", True, "chat")
        assert result["model"] == "gpt-4o-mini" and result["latency_ms"] > 0
        with pytest.raises(NotFound, match="no provider named 'nope'"):
            remote.providers_test("nope")
    tests = local.audit_list(action="providers.test")
    assert [(e["target"], e["source"], e["detail"]["ok"]) for e in tests] == [
        ("openai", "tui", True)
    ]
