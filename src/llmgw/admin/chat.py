"""``ChatSource``: what the dashboard's Chat playground needs from a gateway, as a protocol.

The TUI reaches the gateway's own ``/v1/models`` and ``/v1/chat/completions`` only through this
(as it reaches the admin data only through ``AdminOps``); ``llmgw.admin.chat_remote.RemoteChat``
implements it over HTTP with SSE streaming, and the TUI tests give a fixed in-memory one.

A stream yields ``ChatDelta`` pieces of the answer as they arrive, then one ``ChatDone`` with the
token usage (when the server sent it) and the latency measured by the source. Errors are
``llmgw.errors.LlmgwError`` subclasses, raised before the first piece or in the middle of a
stream (a final SSE error event). This module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ChatDelta", "ChatDone", "ChatEvent", "ChatMessage", "ChatSource"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of the conversation sent to the model."""

    role: str
    content: str


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


ChatEvent = ChatDelta | ChatDone


class ChatSource(Protocol):
    """A gateway's chat API, as the Chat screen uses it (async: it runs on the UI's loop)."""

    url: str
    """Where the gateway is (for the screen's header; never with credentials)."""

    async def models(self) -> list[str]:
        """The model names ``/v1/models`` lists, as a request names them."""
        ...

    def stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncIterator[ChatEvent]:
        """Stream one answer; cancelling the consuming task closes the connection."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...
