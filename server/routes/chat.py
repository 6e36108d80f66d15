"""``POST /v1/chat/completions``: JSON and SSE streaming, through the router."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.providers.base import CallContext, ChatChunk, ChatResponse, Provider
from llmgw.routing.resolve import Target
from llmgw.schemas import ChatRequest
from llmgw.server.routes import Call, context, parse, read_json, until_disconnect
from llmgw.server.state import Gateway
from llmgw.server.streaming import SSEStream, StreamOutcome

__all__ = ["SERVED_BY", "chat_routes"]

SERVED_BY = "x-llmgw-served-by"


def chat_routes(g: Gateway) -> list[Route]:
    """The chat completions route bound to gateway ``g``."""

    async def chat_completions(request: Request) -> Response:
        rc = context(request)
        key = await g.auth.authenticate(request.scope["headers"])
        rc.key_prefix = key.prefix
        call = Call(g, rc, key, "chat")
        try:
            req = parse(ChatRequest, await read_json(request, g.max_body))
            rc.stream = call.event.stream = req.stream
            g.auth.check_model(key, req.model)
            candidates = g.resolver.candidates(req.model)
            call.routed(candidates[0])  # replaced by the candidate that actually served
            t0 = time.perf_counter()

            def ctx(c: Target) -> CallContext:
                return CallContext(request_id=rc.request_id, model=c.model, version=c.version)

            if not req.stream:

                async def chat(p: Provider, c: Target) -> ChatResponse:
                    return await p.chat(req, ctx(c))

                routed = await until_disconnect(request.receive, g.router.call(candidates, chat))
                call.served(routed.candidate, routed.attempts)
                resp = routed.value
                call.finish(200, None, resp.usage, upstream_seconds=time.perf_counter() - t0)
                return Response(
                    orjson.dumps(resp.body),
                    media_type="application/json",
                    headers={SERVED_BY: routed.served_by},
                )

            def stream(p: Provider, c: Target) -> AsyncIterator[ChatChunk]:
                return p.chat_stream(req, ctx(c))

            # The router returns once the first chunk is in hand, so failures before any byte
            # (and fallback to the next candidate) still get a proper status.
            opened = await until_disconnect(
                request.receive, g.router.open_stream(candidates, stream)
            )
            call.served(opened.candidate, opened.attempts)
        except BaseException as exc:
            call.fail(exc)
            raise

        def finished(out: StreamOutcome) -> None:
            if out.partial:
                call.meta()["partial"] = True
            call.finish(
                out.status,
                out.error_type,
                out.usage,
                upstream_seconds=out.finished_at - t0,
                ttft=out.ttft,
                end=out.finished_at,
            )

        return SSEStream(
            opened.first_chunk,
            opened.chunks,
            include_usage=req.include_usage,
            start=rc.start,
            drain=g.drain,
            on_finish=finished,
            headers={SERVED_BY: opened.served_by},
        )

    return [Route("/v1/chat/completions", chat_completions, methods=["POST"])]
