"""The SSE relay: upstream chunks to ``data:`` frames, errors after the first byte, disconnects, drain.

Once the 200 and the first frame are out the status cannot change, so a failure becomes a final
``data: {"error": {...}}`` event and the stream closes (no ``[DONE]``). A client that goes away
cancels the relay at once and closes the upstream iterator, which releases the upstream call. On
shutdown, ``Drain`` lets open streams run until its deadline, then ends the survivors with a final
error event (``code: "shutting_down"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llmgw.errors import LlmgwError, Unavailable
from llmgw.providers.base import ChatChunk, Usage
from llmgw.server.errors import error_body
from llmgw.server.scrub import Scrubber

__all__ = ["Drain", "SSEStream", "StreamOutcome", "error_event"]

log = logging.getLogger("llmgw.server")

_DONE = b"data: [DONE]\n\n"
_HEADERS = {
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # tell nginx-like proxies not to buffer the stream
}


def error_event(exc: BaseException, scrubber: Scrubber) -> bytes:
    """The final SSE event for a failure after the first byte."""
    return b"data: " + error_body(exc, scrubber) + b"\n\n"


@dataclass(slots=True)
class StreamOutcome:
    """How a stream ended, for usage and metrics."""

    status: int
    error_type: str | None
    usage: Usage | None
    ttft: float | None
    """Seconds from request start to the first frame sent."""
    finished_at: float
    chunks: int
    partial: bool
    finish_reason: str | None = None
    """The last ``finish_reason`` the stream sent (``length``: it hit max_tokens)."""


class Drain:
    """Shutdown state: ``draining`` flips at once on SIGTERM; open streams are cut at the deadline."""

    def __init__(self) -> None:
        self.draining = False
        self.expired = False
        self._streams: set[SSEStream] = set()
        self._timer: asyncio.TimerHandle | None = None

    def begin(self, seconds: float) -> None:
        """Start draining now (call on the event loop); streams left after ``seconds`` are cut."""
        self.draining = True
        if self._timer is None and not self.expired:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, seconds), self.expire)

    def begin_threadsafe(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        """``begin`` from a signal handler or another thread."""
        self.draining = True
        loop.call_soon_threadsafe(self.begin, seconds)

    def expire(self) -> None:
        """The deadline: end every open stream with a final error event."""
        self.expired = True
        for stream in list(self._streams):
            stream.cut("drain")

    @property
    def open_streams(self) -> int:
        """Streams being relayed now."""
        return len(self._streams)

    def add(self, stream: SSEStream) -> None:
        """Track a stream; one started after the deadline is cut at once."""
        self._streams.add(stream)
        if self.expired:
            stream.cut("drain")

    def discard(self, stream: SSEStream) -> None:
        """Stop tracking a stream."""
        self._streams.discard(stream)


class SSEStream(Response):
    """A ``text/event-stream`` response relaying ``ChatChunk``s; ends by calling ``on_finish`` once."""

    media_type = "text/event-stream"

    def __init__(
        self,
        first: ChatChunk,
        rest: AsyncIterator[ChatChunk],
        *,
        include_usage: bool,
        start: float,
        drain: Drain,
        scrubber: Scrubber,
        on_finish: Callable[[StreamOutcome], Awaitable[None] | None],
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({**_HEADERS, **(headers or {})})
        self._first: ChatChunk | None = first
        self._rest = rest
        self._include_usage = include_usage
        self._start = start
        self._drain = drain
        self._scrubber = scrubber
        self._on_finish = on_finish
        self._task: asyncio.Task[Any] | None = None
        self._reason: str | None = None
        self._done = False
        self._finished = False
        self._usage: Usage | None = None
        self._last: dict[str, Any] | None = None
        self._finish_reason: str | None = None

    def cut(self, reason: str) -> None:
        """Stop relaying: ``client`` (gone) or ``drain`` (deadline reached)."""
        if self._done or self._reason is not None or self._task is None:
            return
        self._reason = reason
        self._task.cancel()

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.cut("client")
                return

    def _frame(self, chunk: ChatChunk) -> bytes | None:
        if chunk.usage is not None:
            self._usage = chunk.usage
        data = chunk.data
        if data is None:
            if chunk.usage is None or not self._include_usage or self._last is None:
                return None
            last = self._last
            data = {
                "id": last.get("id"),
                "object": "chat.completion.chunk",
                "created": last.get("created"),
                "model": last.get("model"),
                "choices": [],
                "usage": chunk.usage.as_dict(),
            }
            return b"data: " + orjson.dumps(data) + b"\n\n"
        self._last = data
        choices = data.get("choices")
        if choices:
            reason = choices[0].get("finish_reason")
            if reason is not None:
                self._finish_reason = reason
        if not self._include_usage and not data.get("choices") and "usage" in data:
            return None  # the usage-only chunk the client did not ask for
        if chunk.raw is not None:
            return b"data: " + chunk.raw + b"\n\n"
        return b"data: " + orjson.dumps(data) + b"\n\n"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._task = asyncio.current_task()
        watcher = asyncio.get_running_loop().create_task(self._watch(receive))
        self._drain.add(self)
        status, error_type, partial = 200, None, False
        ttft: float | None = None
        chunks = 0
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            chunk = self._first
            self._first = None
            while chunk is not None:
                frame = self._frame(chunk)
                if frame is not None:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
                    chunks += 1
                    if ttft is None:
                        ttft = time.perf_counter() - self._start
                chunk = await anext(self._rest, None)
            self._done = True
            # The usage record is journaled before the final frame leaves (ST-3).
            synced = self._finish(200, None, ttft, chunks, partial=False)
            if synced is not None:
                await synced
            await send({"type": "http.response.body", "body": _DONE, "more_body": False})
        except asyncio.CancelledError:
            task = self._task
            if self._reason is None or task is None:
                self._done = True
                status, error_type, partial = 499, "client_disconnected", True
                raise  # cancelled from outside (server shutdown timeout)
            task.uncancel()
            self._done = True
            partial = True
            if self._reason == "drain":
                status, error_type = 503, "drain_deadline"
                err = Unavailable(
                    "the server is shutting down; the stream was ended at the drain deadline",
                    code="shutting_down",
                )
                await self._end(send, error_event(err, self._scrubber))
            else:
                status, error_type = 499, "client_disconnected"
        except LlmgwError as exc:
            self._done = True
            status, error_type, partial = exc.http_status, exc.code or exc.error_type, True
            await self._end(send, error_event(exc, self._scrubber))
        except Exception as exc:  # noqa: BLE001 - a bug in an adapter must not kill the connection silently
            self._done = True
            log.error("stream relay failed: %s", type(exc).__name__, exc_info=exc)
            status, error_type, partial = 500, "internal_error", True
            await self._end(send, error_event(exc, self._scrubber))
        finally:
            self._done = True
            watcher.cancel()
            self._drain.discard(self)
            await self._close_upstream()
            self._finish(status, error_type, ttft, chunks, partial=partial)

    def _finish(
        self, status: int, error_type: str | None, ttft: float | None, chunks: int, *, partial: bool
    ) -> Awaitable[None] | None:
        """Call ``on_finish`` once (before ``[DONE]`` on success, else when the relay ends)."""
        if self._finished:
            return None
        self._finished = True
        return self._on_finish(
            StreamOutcome(
                status=status,
                error_type=error_type,
                usage=self._usage,
                ttft=ttft,
                finished_at=time.perf_counter(),
                chunks=chunks,
                partial=partial,
                finish_reason=self._finish_reason if isinstance(self._finish_reason, str) else None,
            )
        )

    @staticmethod
    async def _end(send: Send, frame: bytes) -> None:
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": frame, "more_body": False})

    async def _close_upstream(self) -> None:
        aclose = getattr(self._rest, "aclose", None)
        if aclose is None:
            return
        try:
            await aclose()
        except Exception as exc:  # noqa: BLE001 - closing must not hide the outcome
            log.warning("closing the upstream stream failed: %s", type(exc).__name__)
