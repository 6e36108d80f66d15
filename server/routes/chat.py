"""``POST /v1/chat/completions``: JSON and SSE streaming, through the router.

The gateway's hottest route. Its own step in the pipeline (``server/pipeline.py``): start the
router's call (a JSON answer, or a stream opened once its first chunk is in hand), then answer
with the JSON body or relay the stream (``server/streaming.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence

from starlette.types import Receive, Scope, Send

from llmgw.providers.base import CallContext, ChatChunk, ChatResponse, Provider
from llmgw.routing.outcome import OpenedStream, Routed
from llmgw.routing.resolve import Target
from llmgw.schemas import ChatRequest
from llmgw.server.accounting import Call
from llmgw.server.pipeline import SERVED_BY, UpstreamOperation, send_routed_json
from llmgw.server.ratelimits import estimate_chat_tokens
from llmgw.server.state import Gateway
from llmgw.server.streaming import SSEStream, StreamOutcome

__all__ = ["CHAT_PATH", "SERVED_BY", "ChatCompletions"]

CHAT_PATH = "/v1/chat/completions"
# A non-streaming call that takes longer than this gets a task watching for the client's
# disconnect (cancelling the upstream call); quicker ones never need one.
WATCH_AFTER_SECONDS = 0.05

Result = Routed[Target, ChatResponse] | OpenedStream[Target, ChatChunk]


class ChatCompletions(UpstreamOperation[ChatRequest, Result]):
    """Chat completions: one answer, or a stream of chunks."""

    path = CHAT_PATH
    endpoint = "chat"
    request = ChatRequest

    def model(self, req: ChatRequest) -> str:
        """The model or alias asked for."""
        return req.model

    def tokens(self, req: ChatRequest) -> int:
        """Prompt estimate plus the answer's cap."""
        return estimate_chat_tokens(req)

    def watch_after(self, req: ChatRequest) -> float:
        """Streams are watched from the start; quick JSON answers never start a watcher."""
        return 0.0 if req.stream else WATCH_AFTER_SECONDS

    def upstream(
        self, g: Gateway, call: Call, req: ChatRequest, candidates: Sequence[Target]
    ) -> Awaitable[Result]:
        """The router's call: a JSON answer, or a stream with its first chunk in hand."""
        request_id = call.rc.request_id
        call.rc.stream = call.event.stream = req.stream
        if not req.stream:

            def chat(p: Provider, c: Target) -> Awaitable[ChatResponse]:
                return p.chat(req, CallContext(request_id, c.model, c.version))

            return g.router.call(candidates, chat, call.trace)

        def stream(p: Provider, c: Target) -> AsyncIterator[ChatChunk]:
            return p.chat_stream(req, CallContext(request_id, c.model, c.version))

        # The router returns once the first chunk is in hand, so failures before any byte (and
        # fallback to the next candidate) still get a proper status.
        return g.router.open_stream(candidates, stream, call.trace)

    def respond(
        self,
        call: Call,
        req: ChatRequest,
        result: Result,
        t0: float,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> Awaitable[None]:
        """The JSON answer, or the stream relayed as server-sent events."""
        if isinstance(result, Routed):
            return send_routed_json(call, result, t0, send)
        return self._relay(call, req, result, t0, scope, receive, send)

    async def _relay(
        self,
        call: Call,
        req: ChatRequest,
        result: OpenedStream[Target, ChatChunk],
        t0: float,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        call.served(result.candidate, result.attempts)
        synced = call.begin_stream()  # journaled before the first byte (ST-3)
        if synced is not None:
            await synced

        def finished(out: StreamOutcome) -> Awaitable[None] | None:
            if out.partial:
                call.meta()["partial"] = True
            if out.finish_reason is not None:
                call.event.finish_reason = out.finish_reason[:32]
            return call.finish(
                out.status,
                out.error_type,
                out.usage,
                upstream_seconds=out.finished_at - t0,
                ttft=out.ttft,
                end=out.finished_at,
            )

        g = call.gateway
        await SSEStream(
            result.first_chunk,
            result.chunks,
            include_usage=req.include_usage,
            start=call.rc.start,
            drain=g.drain,
            scrubber=g.scrubber,
            on_finish=finished,
            headers={
                SERVED_BY: result.served_by,
                **(dict(call.grant.headers) if call.grant is not None else {}),
            },
        )(scope, receive, send)
