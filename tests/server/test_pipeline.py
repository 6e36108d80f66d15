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
