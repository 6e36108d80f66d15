"""``POST /v1/embeddings``, through the router."""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.providers.base import CallContext, EmbeddingResponse, Provider
from llmgw.routing.resolve import Target
from llmgw.schemas import EmbeddingRequest
from llmgw.server.accounting import Call
from llmgw.server.body import parse, read_json
from llmgw.server.disconnect import until_disconnect
from llmgw.server.middleware import context
from llmgw.server.ratelimits import estimate_text_tokens
from llmgw.server.routes.chat import SERVED_BY
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
            candidates = g.resolver.candidates(req.model)
            call.routed(candidates[0])
            if key.rpm or key.tpm:
                call.grant = await g.limits.admit(key, estimate_text_tokens(req.texts()))
            t0 = time.perf_counter()

            async def embed(p: Provider, c: Target) -> EmbeddingResponse:
                ctx = CallContext(request_id=rc.request_id, model=c.model, version=c.version)
                return await p.embed(req, ctx)

            routed = await until_disconnect(
                request.receive, g.router.call(candidates, embed, call.trace)
            )
            call.served(routed.candidate, routed.attempts)
        except BaseException as exc:
            call.fail(exc)
            raise
        synced = call.finish(
            200, None, routed.value.usage, upstream_seconds=time.perf_counter() - t0
        )
        if synced is not None:  # usage.durability = "power"
            await synced
        headers = {SERVED_BY: routed.served_by}
        if call.grant is not None:
            headers.update(call.grant.headers)
        return Response(
            orjson.dumps(routed.value.body), media_type="application/json", headers=headers
        )

    return [Route("/v1/embeddings", embeddings, methods=["POST"])]
