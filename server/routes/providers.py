"""``GET /api/providers``: live health of each (provider, model) from the router."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.server.middleware import context
from llmgw.server.state import Gateway

__all__ = ["provider_routes"]


def provider_routes(g: Gateway) -> list[Route]:
    """The provider status route bound to gateway ``g``.

    Any valid API key may read it, but only the rows of models its allow-list admits (directly,
    or through an alias it admits), so a key cannot learn about upstreams it cannot use.
    """

    def visible(key: Any, provider: str, model: str) -> bool:
        if key.allows_model(f"{provider}/{model}"):
            return True
        return any(
            key.allows_model(alias)
            and any(
                t.provider == provider and t.model == model for t in g.resolver.candidates(alias)
            )
            for alias in g.resolver.aliases
        )

    async def list_providers(request: Request) -> Response:
        rc = context(request)
        key = await g.auth.authenticate(request.scope["headers"])
        rc.key_prefix = key.prefix
        rows = [r for r in g.router.health.snapshot() if visible(key, r["provider"], r["model"])]
        return Response(
            orjson.dumps({"object": "list", "data": rows}), media_type="application/json"
        )

    return [Route("/api/providers", list_providers, methods=["GET"])]
