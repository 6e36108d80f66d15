"""``POST /v1/chat/completions``: JSON and SSE streaming, through the router.

The gateway's hottest route is a pure ASGI app (``ChatEndpoint``): ``create_app`` dispatches
``POST /v1/chat/completions`` to it straight from ``RequestMiddleware``, without Starlette's
router, ``Request``/``Response`` objects or exception middleware. It turns its own errors into the
OpenAI envelope with ``error_response`` (what the app's exception handlers do for other routes).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable

import orjson
from pydantic import ValidationError
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from llmgw.errors import LlmgwError
from llmgw.providers.base import CallContext, ChatChunk, ChatResponse, Provider
from llmgw.routing.resolve import Target
from llmgw.schemas import ChatRequest
from llmgw.server.accounting import Call
from llmgw.server.body import decode_json, parse, receive_body
from llmgw.server.disconnect import until_disconnect
from llmgw.server.errors import error_response
from llmgw.server.middleware import RequestContext
from llmgw.server.ratelimits import estimate_chat_tokens
from llmgw.server.state import Gateway
from llmgw.server.streaming import SSEStream, StreamOutcome

__all__ = ["CHAT_PATH", "SERVED_BY", "ChatEndpoint", "chat_routes"]

SERVED_BY = "x-llmgw-served-by"
CHAT_PATH = "/v1/chat/completions"
# A non-streaming call that takes longer than this gets a task watching for the client's
# disconnect (cancelling the upstream call); quicker ones never need one.
WATCH_AFTER_SECONDS = 0.05

_JSON = (b"content-type", b"application/json")
_SERVED_BY = SERVED_BY.encode("ascii")


class ChatEndpoint:
    """The chat completions route bound to a ``Gateway``, as a pure ASGI app."""

    def __init__(self, gateway: Gateway) -> None:
        self.g = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One coroutine, not a wrapper around a handler: each coroutine in the chain costs again
        # every time the upstream call resumes.
        try:
            g = self.g
            rc: RequestContext = scope["llmgw"]
            key = await g.auth.authenticate(scope["headers"])
            rc.key_prefix = key.prefix
            call = Call(g, rc, key, "chat")
            try:
                req = parse(
                    ChatRequest, decode_json(await receive_body(scope, receive, g.max_body))
                )
                rc.stream = call.event.stream = req.stream
                g.auth.check_model(key, req.model)
                candidates = g.resolver.candidates(req.model)
                call.routed(candidates[0])  # replaced by the candidate that actually served
                if key.rpm or key.tpm:
                    call.grant = await g.limits.admit(key, estimate_chat_tokens(req))
                t0 = time.perf_counter()
                request_id = rc.request_id

                if not req.stream:

                    def chat(p: Provider, c: Target) -> Awaitable[ChatResponse]:
                        return p.chat(req, CallContext(request_id, c.model, c.version))

                    routed = await until_disconnect(
                        receive,
                        g.router.call(candidates, chat, call.trace),
                        after=WATCH_AFTER_SECONDS,
                    )
                    call.served(routed.candidate, routed.attempts)
                    resp = routed.value
                    synced = call.finish(
                        200, None, resp.usage, upstream_seconds=time.perf_counter() - t0
                    )
                    if synced is not None:  # usage.durability = "power"
                        await synced
                    body = orjson.dumps(resp.body)
                    headers = [
                        (b"content-length", str(len(body)).encode("ascii")),
                        _JSON,
                        (_SERVED_BY, routed.served_by.encode("latin-1")),
                    ]
                    if call.grant is not None:
                        headers += call.grant.raw_headers()
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return

                def stream(p: Provider, c: Target) -> AsyncIterator[ChatChunk]:
                    return p.chat_stream(req, CallContext(request_id, c.model, c.version))

                # The router returns once the first chunk is in hand, so failures before any byte
                # (and fallback to the next candidate) still get a proper status.
                opened = await until_disconnect(
                    receive, g.router.open_stream(candidates, stream, call.trace)
                )
                call.served(opened.candidate, opened.attempts)
                synced = call.begin_stream()  # journaled before the first byte (ST-3)
                if synced is not None:
                    await synced
            except BaseException as exc:
                call.fail(exc)
                raise

            def finished(out: StreamOutcome) -> Awaitable[None] | None:
                if out.partial:
                    call.meta()["partial"] = True
                return call.finish(
                    out.status,
                    out.error_type,
                    out.usage,
                    upstream_seconds=out.finished_at - t0,
                    ttft=out.ttft,
                    end=out.finished_at,
                )

            await SSEStream(
                opened.first_chunk,
                opened.chunks,
                include_usage=req.include_usage,
                start=rc.start,
                drain=g.drain,
                scrubber=g.scrubber,
                on_finish=finished,
                headers={
                    SERVED_BY: opened.served_by,
                    **(dict(call.grant.headers) if call.grant is not None else {}),
                },
            )(scope, receive, send)
        except (LlmgwError, ValidationError) as exc:
            await error_response(exc, self.g.scrubber)(scope, receive, send)


def chat_routes(g: Gateway) -> list[Route]:
    """The chat completions route bound to gateway ``g`` (other methods get Starlette's 405)."""
    return [Route(CHAT_PATH, ChatEndpoint(g), methods=["POST"])]
