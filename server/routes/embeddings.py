"""``POST /v1/embeddings``, through the router."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from starlette.types import Receive, Scope, Send

from llmgw.providers.base import CallContext, EmbeddingResponse, Provider
from llmgw.routing.outcome import Routed
from llmgw.routing.resolve import Target
from llmgw.schemas import EmbeddingRequest
from llmgw.server.accounting import Call
from llmgw.server.pipeline import UpstreamOperation, send_routed_json
from llmgw.server.ratelimits import estimate_text_tokens
from llmgw.server.state import Gateway

__all__ = ["Embeddings"]


class Embeddings(UpstreamOperation[EmbeddingRequest, Routed[Target, EmbeddingResponse]]):
    """Embeddings of one text or a list of texts."""

    path = "/v1/embeddings"
    endpoint = "embeddings"
    request = EmbeddingRequest

    def model(self, req: EmbeddingRequest) -> str:
        """The model or alias asked for."""
        return req.model

    def tokens(self, req: EmbeddingRequest) -> int:
        """About four characters per token of input."""
        return estimate_text_tokens(req.texts())

    def upstream(
        self, g: Gateway, call: Call, req: EmbeddingRequest, candidates: Sequence[Target]
    ) -> Awaitable[Routed[Target, EmbeddingResponse]]:
        """The router's call."""
        request_id = call.rc.request_id

        def embed(p: Provider, c: Target) -> Awaitable[EmbeddingResponse]:
            return p.embed(
                req, CallContext(request_id=request_id, model=c.model, version=c.version)
            )

        return g.router.call(candidates, embed, call.trace)

    def respond(
        self,
        call: Call,
        req: EmbeddingRequest,
        result: Routed[Target, EmbeddingResponse],
        t0: float,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> Awaitable[None]:
        """The JSON answer."""
        return send_routed_json(call, result, t0, send)
