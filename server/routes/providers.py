"""``GET /api/providers``: live health of each (provider, model) from the router."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.server.routes import context
from llmgw.server.state import Gateway

__all__ = ["provider_routes"]


def provider_routes(g: Gateway) -> list[Route]:
    """The provider status route bound to gateway ``g`` (any valid API key may read it)."""

    async def list_providers(request: Request) -> Response:
        rc = context(request)
        key = await g.auth.authenticate(request.scope["headers"])
        rc.key_prefix = key.prefix
        rows = g.router.health.snapshot()
        return Response(
            orjson.dumps({"object": "list", "data": rows}), media_type="application/json"
        )

    return [Route("/api/providers", list_providers, methods=["GET"])]
