"""``POST /v1/embeddings``."""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.providers.base import CallContext
from llmgw.schemas import EmbeddingRequest
from llmgw.server.routes import Call, context, parse, read_json, until_disconnect
from llmgw.server.routes.chat import provider_for
from llmgw.server.state import Gateway

__all__ = ["embedding_routes"]


def embedding_routes(g: Gateway) -> list[Route]:
    """The embeddings route bound to gateway ``g``."""

    async def embeddings(request: Request) -> Response:
        rc = context(request)
        key = await g.auth.authenticate(request.scope["headers"])
        rc.key_prefix = key.prefix
        call = Call(g, rc, key, "embeddings")
        try:
            req = parse(EmbeddingRequest, await read_json(request, g.max_body))
            g.auth.check_model(key, req.model)
            target = g.resolver.resolve(req.model)
            call.routed(target)
            provider = provider_for(g, target.provider)
            ctx = CallContext(request_id=rc.request_id, model=target.model, version=target.version)
            t0 = time.perf_counter()
            resp = await until_disconnect(request.receive, provider.embed(req, ctx))
        except BaseException as exc:
            call.fail(exc)
            raise
        call.finish(200, None, resp.usage, upstream_seconds=time.perf_counter() - t0)
        return Response(orjson.dumps(resp.body), media_type="application/json")

    return [Route("/v1/embeddings", embeddings, methods=["POST"])]
