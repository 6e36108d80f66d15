"""``POST /v1/chat/completions``: JSON and SSE streaming."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.errors import Unavailable
from llmgw.providers.base import CallContext, ChatChunk, Provider
from llmgw.schemas import ChatRequest
from llmgw.server.routes import Call, context, parse, read_json, until_disconnect
from llmgw.server.state import Gateway
from llmgw.server.streaming import SSEStream, StreamOutcome

__all__ = ["chat_routes"]


def provider_for(g: Gateway, name: str) -> Provider:
    """The running provider ``name``; 503 if it is configured but could not be built."""
    provider = g.providers.get(name)
    if provider is None:
        raise Unavailable(f"provider {name!r} is not available", hint="check the server log")
    return provider


def chat_routes(g: Gateway) -> list[Route]:
    """The chat completions route bound to gateway ``g``."""

    async def chat_completions(request: Request) -> Response:
        rc = context(request)
        key = await g.auth.authenticate(request.scope["headers"])
        rc.key_prefix = key.prefix
        call = Call(g, rc, key, "chat")
        stream: AsyncIterator[ChatChunk] | None = None
        try:
            req = parse(ChatRequest, await read_json(request, g.max_body))
            rc.stream = call.event.stream = req.stream
            g.auth.check_model(key, req.model)
            target = g.resolver.resolve(req.model)
            call.routed(target)
            provider = provider_for(g, target.provider)
            ctx = CallContext(request_id=rc.request_id, model=target.model, version=target.version)
            t0 = time.perf_counter()
            if not req.stream:
                resp = await until_disconnect(request.receive, provider.chat(req, ctx))
                call.finish(200, None, resp.usage, upstream_seconds=time.perf_counter() - t0)
                return Response(orjson.dumps(resp.body), media_type="application/json")
            stream = provider.chat_stream(req, ctx)
            # The first chunk is awaited here so upstream failures before any byte still get
            # their 502/504 status instead of a 200 with an error event.
            first = await until_disconnect(request.receive, anext(stream, ChatChunk(None)))
        except BaseException as exc:
            if stream is not None:
                await _close(stream)
            call.fail(exc)
            raise

        def finished(out: StreamOutcome) -> None:
            call.finish(
                out.status,
                out.error_type,
                out.usage,
                upstream_seconds=out.finished_at - t0,
                ttft=out.ttft,
                end=out.finished_at,
            )
            if out.partial:
                call.meta()["partial"] = True

        return SSEStream(
            first,
            stream,
            include_usage=req.include_usage,
            start=rc.start,
            drain=g.drain,
            on_finish=finished,
        )

    return [Route("/v1/chat/completions", chat_completions, methods=["POST"])]


async def _close(stream: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # the original error is what matters
            await aclose()
