"""The bare Python baseline: Starlette on uvicorn forwarding each request to one upstream with aiohttp."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def create_app(upstream: str) -> Starlette:
    """An app that POSTs every request body to ``upstream`` + path and relays the answer (SSE too)."""
    http: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(upstream, connector=aiohttp.TCPConnector(limit=0)) as s:
            http["s"] = s
            yield

    async def forward(request: Request) -> Response:
        headers = {"content-type": "application/json"}
        up = await http["s"].post(request.url.path, data=await request.body(), headers=headers)
        if up.content_type == "text/event-stream":
            return StreamingResponse(
                up.content.iter_any(),
                up.status,
                media_type=up.content_type,
                background=BackgroundTask(up.release),
            )
        return Response(await up.read(), up.status, media_type=up.content_type)

    return Starlette(routes=[Route("/{path:path}", forward, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8081")
    a = p.parse_args()
    uvicorn.run(
        create_app(a.upstream),
        host="127.0.0.1",
        port=a.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
