"""``RemoteChat``: the ``ChatSource`` of a running ``llmgw serve`` (``/api/models``,
``/v1/chat/completions`` with ``stream: true`` and SSE).

The dashboard wires it with its own ``--url`` and ``--token`` (or the URL and key a person gives
on the Chat screen in local mode). The request asks for a final usage chunk
(``stream_options.include_usage``); the latency is measured here, from sending the request to the
last byte, and to the first piece of text. Cancelling the task that iterates ``stream`` leaves the
``async with`` and closes the connection, which makes the server stop the upstream generation.

httpx is imported here (and in ``llmgw.admin.remote``) only: local CLI commands never load it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import orjson

from llmgw import __version__
from llmgw.admin.answers import error_from_answer, unreachable_reason
from llmgw.admin.chat import ChatDelta, ChatDone, ChatEvent, ChatMessage
from llmgw.admin.remote import _TOKEN_OK, CONNECT_TIMEOUT, _safe_url
from llmgw.errors import LlmgwError, Unavailable, UpstreamError, UpstreamTimeout, UsageError

__all__ = ["RemoteChat"]

READ_TIMEOUT = 120.0
"""Seconds to wait for each read (a model may think for a while before its first token)."""


def _error(status: int, body: bytes, url: str, retry_after: str | None) -> LlmgwError:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    exc = error_from_answer(status, data, url, retry_after=retry_after)
    exc.hint = None  # error_from_answer's hints speak of the admin API, not of chat
    return exc


class RemoteChat:
    """``ChatSource`` over HTTP: the gateway at ``url``, authenticated with API key ``token`` (or,
    without one, ``auth``: the stored ``llmgw login``)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.url = _safe_url(url)
        self._auth = None if token else auth
        if not token and auth is None:
            raise UsageError(
                f"chat with {self.url} needs an API key",
                hint="give the key with --token or LLMGW_TOKEN",
                param="token",
            )
        if token and not _TOKEN_OK.fullmatch(token):
            raise UsageError(
                "the key has spaces or characters outside printable ASCII",
                hint="paste the key exactly as `llmgw keys create` printed it",
                param="token",
            )
        self._headers = {"User-Agent": f"llmgw-dash/{__version__}"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"RemoteChat(url={self.url!r})"

    def _http(self) -> httpx.AsyncClient:
        # Made on first use, on the loop that uses it (the app's), not at construction.
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.url,
                headers=self._headers,
                auth=self._auth,
                timeout=self._timeout,
                transport=self._transport,
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    def _unreachable(self, exc: httpx.HTTPError) -> LlmgwError:
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout(f"no answer from the llmgw server at {self.url} in time")
        return Unavailable(
            f"cannot reach the llmgw server at {self.url}: {unreachable_reason(exc)}",
            hint="is `llmgw serve` running there?",
        )

    async def models(self) -> list[str]:
        """The models that chat, sorted: from the catalog (``/api/models``: chat models and
        aliases, not embeddings), or ``/v1/models`` from a gateway without a catalog."""
        path = "/api/models"
        try:
            resp = await self._http().get(path)
            if resp.status_code == 404:  # a gateway from before the catalog
                path = "/v1/models"
                resp = await self._http().get(path)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if not resp.is_success:
            raise _error(resp.status_code, resp.content, self.url, resp.headers.get("retry-after"))
        try:
            rows = orjson.loads(resp.content)["data"]
            return sorted(
                {str(row["id"]) for row in rows if row.get("type", "chat") in ("chat", "alias")}
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise UpstreamError(f"unexpected answer from {self.url}{path}") from None

    async def stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncIterator[ChatEvent]:
        """Stream one answer: ``ChatDelta`` pieces, then one ``ChatDone``."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        start = time.perf_counter()
        ttft: float | None = None
        usage: dict[str, Any] = {}
        answered_by: str | None = None
        finish: str | None = None
        try:
            async with self._http().stream(
                "POST", "/v1/chat/completions", content=orjson.dumps(body),
                headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
            ) as resp:  # fmt: skip
                if not resp.is_success:
                    raw = await resp.aread()
                    raise _error(resp.status_code, raw, self.url, resp.headers.get("retry-after"))
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise UpstreamError(
                            "the server sent a stream event that is not JSON"
                        ) from None
                    if isinstance(chunk.get("error"), dict):  # an error after the stream began
                        raise _error(502, data.encode(), self.url, None)
                    answered_by = chunk.get("model") or answered_by
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            if ttft is None:
                                ttft = (time.perf_counter() - start) * 1000
                            yield ChatDelta(text)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        yield ChatDone(
            model=answered_by,
            finish_reason=finish,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_ms=(time.perf_counter() - start) * 1000,
            ttft_ms=ttft,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
