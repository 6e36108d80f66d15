"""``ChatSource``: what the dashboard's Chat screen needs from a gateway, as a protocol.

The TUI reaches the gateway's model catalog (``/api/models``) and its conversations
(``/api/chat``, ``/api/messages``, ``/api/conversations``) only through this, as it reaches the
admin data only through ``AdminOps``; ``llmgw.admin.chat_remote.RemoteChat`` implements it over
HTTP with SSE streaming, and the TUI tests give a fixed in-memory one.

A turn yields one ``ChatOpened`` (the conversation it belongs to, new or continued), then
``ChatDelta`` pieces of the answer as they arrive, then one ``ChatDone`` with the token usage
(when the server sent it) and the latency measured by the source. Errors are
``llmgw.errors.LlmgwError`` subclasses, raised before the first piece or in the middle of a
stream (a final SSE error event). This module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "SETTING_NAMES",
    "ChatDelta",
    "ChatDone",
    "ChatEvent",
    "ChatMessage",
    "ChatOpened",
    "ChatSource",
    "ModelChoice",
]

SETTING_NAMES = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
)
"""The generation settings ``POST /api/chat`` takes (besides ``system``), in its order."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation, as stored (``model`` answered it, when known)."""

    role: str
    content: str
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """One entry of the model catalog that can chat: ``id`` as a request names it
    (``provider/model`` or an alias), its provider (``alias`` for an alias) and context window."""

    id: str
    provider: str
    context_window: int | None = None


@dataclass(frozen=True, slots=True)
class ChatOpened:
    """The turn was accepted: it belongs to conversation ``conversation_id``."""

    conversation_id: str | None


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """A piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ChatDone:
    """The answer is complete: who answered, why it stopped, its size and how long it took.

    ``prompt_tokens``/``completion_tokens`` are None when the server sent no usage;
    ``latency_ms`` is from sending the request to the last byte, ``ttft_ms`` to the first piece.
    """

    model: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float
    ttft_ms: float | None


ChatEvent = ChatOpened | ChatDelta | ChatDone


class ChatSource(Protocol):
    """A gateway's chat API, as the Chat screen uses it (async: it runs on the UI's loop)."""

    url: str
    """Where the gateway is (for the screen's header; never with credentials)."""

    async def catalog(self) -> list[ModelChoice]:
        """The models and aliases that chat, sorted by id."""
        ...

    async def conversations(self) -> list[dict[str, Any]]:
        """The caller's conversations (records of ``GET /api/conversations``), newest first."""
        ...

    async def messages(self, conversation_id: str) -> list[ChatMessage]:
        """A conversation's messages, oldest first."""
        ...

    async def rename(self, conversation_id: str, title: str) -> dict[str, Any]:
        """Set a conversation's title; its record."""
        ...

    async def delete(self, conversation_id: str) -> None:
        """Delete a conversation and its messages."""
        ...

    def turn(
        self,
        conversation_id: str | None,
        message: str,
        *,
        model: str | None,
        system: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[ChatEvent]:
        """Stream one turn (a new conversation when ``conversation_id`` is None); cancelling
        the consuming task closes the connection and nothing is stored."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...
