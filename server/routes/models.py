"""``GET /v1/models``: every routable model and alias this key may use (from the cached catalog)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.server.middleware import context
from llmgw.server.state import Gateway

__all__ = ["model_routes"]


def model_routes(g: Gateway) -> list[Route]:
    """The model listing route bound to gateway ``g``."""

    async def list_models(request: Request) -> Response:
        rc = context(request)
        key = await g.auth.authenticate(request.scope["headers"])
        rc.key_prefix = key.prefix
        data = [e for e in g.catalog.entries() if key.allows_model(str(e["id"]))]
        return Response(
            orjson.dumps({"object": "list", "data": data}), media_type="application/json"
        )

    return [Route("/v1/models", list_models, methods=["GET"])]
