"""``GET /v1/models`` and ``GET /v1/models/{id}``: the routable models and aliases this key may use.

Both read the cached catalog (never an upstream). Ids contain ``/`` (``provider/model``), so the
one-model route takes the rest of the path; an id the key may not use is a 404 like an unknown
one, so a key cannot probe for models outside its allow-list.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.errors import ModelNotFound
from llmgw.server.middleware import context
from llmgw.server.state import Gateway

__all__ = ["model_routes"]


def model_routes(g: Gateway) -> list[Route]:
    """The model listing routes bound to gateway ``g``."""

    async def list_models(request: Request) -> Response:
        rc = context(request)
        key = await g.auth.authenticate(request.scope["headers"])
        rc.key_prefix = key.prefix
        data = [e for e in g.catalog.entries() if key.allows_model(str(e["id"]))]
        return Response(
            orjson.dumps({"object": "list", "data": data}), media_type="application/json"
        )

    async def retrieve_model(request: Request) -> Response:
        rc = context(request)
        key = await g.auth.authenticate(request.scope["headers"])
        rc.key_prefix = key.prefix
        model_id = request.path_params["model"]
        if key.allows_model(model_id):
            for entry in g.catalog.entries():
                if entry["id"] == model_id:
                    return Response(orjson.dumps(entry), media_type="application/json")
        raise ModelNotFound(
            f"model {model_id[:200]!r} does not exist or is not available to this key",
            param="model",
            hint="GET /v1/models lists the models this key may use",
        )

    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
    ]
