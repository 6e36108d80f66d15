"""``RemoteChat``: the ``ChatSource`` of a running ``llmgw serve``: the model catalog
(``/api/models``), conversations (``/api/conversations``, ``/api/messages``) and turns
(``POST /api/chat`` with ``stream: true``, SSE).

The dashboard wires it with its own ``--url`` and ``--token`` or login (or the URL and key a
person gives on the Chat screen in local mode). The turn's usage comes in its last chunk; the
latency is measured here (``timer``, ``time.perf_counter`` by default), from sending the request
to the last byte, and to the first piece of text. Cancelling the task that iterates ``turn``
leaves the ``async with`` and closes the connection, which makes the server stop the upstream
generation and store nothing.

httpx is imported here (and in ``llmgw.admin.remote``) only: local CLI commands never load it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import orjson

from llmgw import __version__
from llmgw.admin.answers import error_from_answer, unreachable_reason
from llmgw.admin.chat import ChatDelta, ChatDone, ChatEvent, ChatMessage, ChatOpened, ModelChoice
from llmgw.admin.remote import _TOKEN_OK, CONNECT_TIMEOUT, _safe_url
from llmgw.errors import (
    BudgetExceeded,
    LlmgwError,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
    UsageError,
)

__all__ = ["RemoteChat"]

READ_TIMEOUT = 120.0
"""Seconds to wait for each read (a model may think for a while before its first token)."""

CONVERSATION_HEADER = "x-llmgw-conversation-id"


def _error(status: int, body: bytes, url: str, retry_after: str | None) -> LlmgwError:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    exc = error_from_answer(status, data, url, retry_after=retry_after)
    if status == 402 or exc.code == "budget_exceeded":  # its own class: shown as such
        wait = getattr(exc, "retry_after", None)
        exc = BudgetExceeded(str(exc), retry_after=wait)
        if wait is None and retry_after and retry_after.isdigit():
            exc.retry_after = float(retry_after)
    exc.hint = None  # error_from_answer's hints speak of the admin API, not of chat
    return exc


def _choice(row: Mapping[str, Any]) -> ModelChoice:
    alias = row.get("type") == "alias" or bool(row.get("alias"))
    rid = str(row["id"])
    provider = "alias" if alias else str(row.get("provider") or rid.partition("/")[0])
    window = row.get("context_window")
    return ModelChoice(rid, provider, window if isinstance(window, int) else None)


class RemoteChat:
    """``ChatSource`` over HTTP: the gateway at ``url``, authenticated with API key ``token`` (or,
    without one, ``auth``: the stored ``llmgw login``); ``timer`` measures latencies (seconds)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_timeout: float = READ_TIMEOUT,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.url = _safe_url(url)
        self._timer = timer
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

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = await self._http().request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if not resp.is_success:
            raise _error(resp.status_code, resp.content, self.url, resp.headers.get("retry-after"))
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"the server at {self.url}{path} did not answer JSON") from None

    async def catalog(self) -> list[ModelChoice]:
        """The models and aliases that chat (not embeddings), sorted: from the catalog
        (``/api/models``), or ``/v1/models`` from a gateway without a catalog."""
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
            chosen = {
                str(row["id"]): _choice(row)
                for row in rows
                if row.get("type", "chat") in ("chat", "alias")
            }
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise UpstreamError(f"unexpected answer from {self.url}{path}") from None
        return [chosen[k] for k in sorted(chosen)]

    async def models(self) -> list[str]:
        """The ids of ``catalog()``."""
        return [m.id for m in await self.catalog()]

    async def conversations(self) -> list[dict[str, Any]]:
        """``GET /api/conversations``: the caller's conversations, most recently used first."""
        data = await self._json("GET", "/api/conversations", params={"limit": "200"})
        return list(data["data"])

    async def messages(self, conversation_id: str) -> list[ChatMessage]:
        """``GET /api/messages``: the conversation's user and assistant text, oldest first."""
        data = await self._json("GET", "/api/messages", params={"conversation_id": conversation_id})
        return [
            ChatMessage(str(m["role"]), str(m.get("content") or ""), m.get("model"))
            for m in data["data"]
            if m.get("role") in ("user", "assistant", "system")
        ]

    async def rename(self, conversation_id: str, title: str) -> dict[str, Any]:
        """``PATCH /api/conversations/{id}`` with the new title."""
        data: dict[str, Any] = await self._json(
            "PATCH", f"/api/conversations/{conversation_id}", json={"title": title}
        )
        return data

    async def delete(self, conversation_id: str) -> None:
        """``DELETE /api/conversations/{id}``."""
        await self._json("DELETE", f"/api/conversations/{conversation_id}")

    async def turn(
        self,
        conversation_id: str | None,
        message: str,
        *,
        model: str | None,
        system: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[ChatEvent]:
        """Stream one turn: ``ChatOpened``, ``ChatDelta`` pieces, then one ``ChatDone``."""
        body: dict[str, Any] = {"message": message, "stream": True, **(settings or {})}
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        if model is not None:
            body["model"] = model
        if system is not None:
            body["system"] = system
        start = self._timer()
        ttft: float | None = None
        usage: dict[str, Any] = {}
        answered_by: str | None = None
        finish: str | None = None
        try:
            async with self._http().stream(
                "POST", "/api/chat", content=orjson.dumps(body),
                headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
            ) as resp:  # fmt: skip
                if not resp.is_success:
                    raw = await resp.aread()
                    raise _error(resp.status_code, raw, self.url, resp.headers.get("retry-after"))
                yield ChatOpened(resp.headers.get(CONVERSATION_HEADER))
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
                                ttft = (self._timer() - start) * 1000
                            yield ChatDelta(text)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        yield ChatDone(
            model=answered_by,
            finish_reason=finish,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_ms=(self._timer() - start) * 1000,
            ttft_ms=ttft,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
