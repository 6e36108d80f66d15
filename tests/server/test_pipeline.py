"""The request pipeline: every OpenAI-compatible route goes through the same steps and middleware."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmgw.config import Settings
from llmgw.server import create_app

MSG = [{"role": "user", "content": "one two three"}]


class Tagging:
    """A middleware added after the fact: records what it saw and tags every answer."""

    seen: list[tuple[str, str]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        Tagging.seen.append((scope["method"], scope["path"]))

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-tagged", b"1")]
            await send(message)

        await self.app(scope, receive, tagged)


async def test_middleware_added_to_the_app_sees_every_route_the_hot_one_included(
    settings: Settings, auth: dict[str, str]
) -> None:
    app: Any = create_app(settings)
    app.add_middleware(Tagging)
    Tagging.seen = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://llmgw") as c:
            answers = [
                await c.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": MSG},
                    headers=auth,
                ),
                await c.post(
                    "/v1/embeddings", json={"model": "gpt-4o-mini", "input": "hi"}, headers=auth
                ),
                await c.get("/v1/models", headers=auth),
                await c.get("/api/providers", headers=auth),
                await c.get("/healthz"),
                await c.put("/v1/chat/completions", headers=auth),
                await c.post("/v1/chat/completions", json={"model": "gpt-4o-mini"}),
            ]
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 200, 405, 401]
    assert all(r.headers.get("x-tagged") == "1" for r in answers)
    assert all(r.headers["x-request-id"].startswith("req_") for r in answers)
    assert ("POST", "/v1/chat/completions") in Tagging.seen
    assert len(Tagging.seen) == len(answers)


async def test_key_routes_answer_head_and_errors_like_the_upstream_routes(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    head = await client.head("/v1/models", headers=auth)
    assert head.status_code == 200 and head.headers["content-type"] == "application/json"
    for path in ("/v1/models", "/api/providers"):
        r = await client.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="llmgw"'
        assert r.json()["error"]["type"] == "authentication_error"
    wrong = await client.post("/v1/models", headers=auth)
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


async def test_admin_routes_are_a_pipeline_kind_behind_the_same_middleware(
    settings: Settings, make_key: Any, test_engine: Any
) -> None:
    """The admin API runs through the pipeline's ``AdminRoute`` (dispatched like the others):
    an added middleware sees it, 401 without a key, 403 for a non-admin key (AUTH-6), the key's
    rpm admits it like any route (429 once spent), and whoami names the server's address."""
    from llmgw.admin.local import LocalAdmin
    from llmgw.admin.ops import Actor
    from llmgw.server.pipeline import AdminRoute

    local = LocalAdmin(test_engine, Actor.local())
    local.users_create("root@example.com", role="admin")
    admin = local.keys_create("root", user="root@example.com", rpm=2)["key"]
    plain = {"Authorization": f"Bearer {make_key('plain').secret}"}
    bearer = {"Authorization": f"Bearer {admin}"}
    app: Any = create_app(settings)
    app.add_middleware(Tagging)
    Tagging.seen = []
    async with app.router.lifespan_context(app):
        admin_apps = [r.app for r in app.routes if r.path.startswith("/admin/v1/")]
        assert len(admin_apps) >= 17 and all(isinstance(a, AdminRoute) for a in admin_apps)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.example:8080") as c:
            answers = [
                await c.get("/admin/v1/whoami"),
                await c.get("/admin/v1/whoami", headers=plain),
                await c.get("/admin/v1/whoami", headers=bearer),
                await c.get(f"/admin/v1/keys/{admin[:12]}", headers=bearer),
                await c.get("/admin/v1/whoami", headers=bearer),
            ]
        assert "GET" in app.direct["/admin/v1/whoami"]  # dispatched straight to the pipeline
    assert [r.status_code for r in answers] == [401, 403, 200, 200, 429]
    assert all(r.headers.get("x-tagged") == "1" for r in answers)
    assert len(Tagging.seen) == len(answers)
    me = answers[2].json()
    assert me == {
        "actor": "root@example.com",
        "actor_kind": "key",
        "role": "admin",
        "mode": "remote",
        "url": "http://gw.example:8080",
    }
    assert answers[4].json()["error"]["type"] == "rate_limit_error"
