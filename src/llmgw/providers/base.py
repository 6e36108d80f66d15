"""The ``Provider`` protocol every upstream adapter implements, and what it returns.

Adapters take a validated ``ChatRequest``/``EmbeddingRequest`` and return OpenAI-shaped bodies as
plain dicts together with the few typed facts the gateway needs (usage, the model that answered).
The bodies go straight to orjson; nothing re-validates them on the hot path.

Errors: adapters raise only ``llmgw.errors`` classes (``UpstreamError``, ``UpstreamTimeout``,
``RateLimited``, ``AuthError`` for bad upstream credentials mapped to 502...), with messages that never
contain upstream credentials or echoed upstream bodies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from llmgw.schemas import ChatRequest, EmbeddingRequest

__all__ = [
    "CallContext",
    "ChatChunk",
    "ChatResponse",
    "EmbeddingResponse",
    "ModelCard",
    "Provider",
    "Usage",
]


@dataclass(slots=True)
class Usage:
    """Token counts reported by the upstream."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """The OpenAI ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class CallContext:
    """What the gateway tells an adapter about one call."""

    request_id: str
    model: str
    """The provider-side model name, without the ``provider/`` prefix and without ``:version``."""
    version: str | None = None
    """The requested model version (``latest``, ``rc``, ``deprecated``) where the provider has them."""


@dataclass(slots=True)
class ChatResponse:
    """A complete (non-streamed) chat completion."""

    body: dict[str, Any]
    """An OpenAI ``chat.completion`` object, ready to serialise."""
    usage: Usage
    model: str
    """The model that answered, as the upstream named it."""


@dataclass(slots=True)
class ChatChunk:
    """One streamed piece: an OpenAI ``chat.completion.chunk`` object, and usage when known."""

    data: dict[str, Any] | None
    """The chunk; ``None`` when the adapter only reports usage (the gateway decides what to send)."""
    usage: Usage | None = None
    raw: bytes | None = None
    """``data`` already serialised, when the adapter relays upstream bytes unchanged."""


@dataclass(slots=True)
class EmbeddingResponse:
    """An OpenAI embeddings ``list`` object and its usage."""

    body: dict[str, Any]
    usage: Usage
    model: str


@dataclass(slots=True)
class ModelCard:
    """One entry of ``/v1/models``."""

    id: str
    owned_by: str
    created: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The OpenAI ``model`` object."""
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
        }


@runtime_checkable
class Provider(Protocol):
    """An upstream that speaks chat, streaming chat, embeddings and model listing."""

    name: str
    kind: str

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """One chat completion."""
        ...

    def chat_stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk]:
        """A streamed chat completion; the last chunk carries usage when the upstream reports it.

        Closing the iterator (``aclose``) must release the upstream connection at once.
        """
        ...

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        """Embeddings for the request's input."""
        ...

    async def list_models(self) -> list[ModelCard]:
        """Models this provider serves."""
        ...

    async def aclose(self) -> None:
        """Release connections and background tasks."""
        ...
