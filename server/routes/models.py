"""``GET /v1/models``: the configured ``provider/model`` ids and aliases this key may use."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.server.routes import context
from llmgw.server.state import Gateway

__all__ = ["model_routes"]


def model_routes(g: Gateway) -> list[Route]:
    """The model listing route bound to gateway ``g``."""
    entries: list[dict[str, object]] = []
    for model_id in g.resolver.model_ids():
        provider = model_id.split("/", 1)[0]
        entries.append({"id": model_id, "object": "model", "created": 0, "owned_by": provider})
    for alias in g.resolver.aliases:
        entries.append({"id": alias, "object": "model", "created": 0, "owned_by": "llmgw"})

    async def list_models(request: Request) -> Response:
        rc = context(request)
        key = await g.auth.authenticate(request.scope["headers"])
        rc.key_prefix = key.prefix
        data = [e for e in entries if key.allows_model(str(e["id"]))]
        return Response(
            orjson.dumps({"object": "list", "data": data}), media_type="application/json"
        )

    return [Route("/v1/models", list_models, methods=["GET"])]
