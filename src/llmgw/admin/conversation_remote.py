"""``RemoteConversations``: ``llmgw chat``'s client for a gateway's conversation API
(``POST /api/chat`` as JSON or SSE, ``/api/messages``, ``/api/conversations``), over httpx.

Synchronous: a turn's stream is read in the CLI's own thread, so Ctrl-C (``KeyboardInterrupt``)
lands in the loop that reads it; leaving the ``with`` closes the connection, which makes the
server stop the upstream generation and store nothing for that turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from llmgw import __version__
from llmgw.admin.answers import error_from_answer, unreachable_reason
from llmgw.admin.remote import _TOKEN_OK, CONNECT_TIMEOUT, _safe_url
from llmgw.errors import LlmgwError, Unavailable, UpstreamError, UpstreamTimeout, UsageError

__all__ = ["RemoteConversations"]

READ_TIMEOUT = 120.0


def _error(resp: httpx.Response, url: str) -> LlmgwError:
    try:
        data: Any = orjson.loads(resp.read())
    except orjson.JSONDecodeError:
        data = None
    exc = error_from_answer(
        resp.status_code, data, url, retry_after=resp.headers.get("retry-after")
    )
    if resp.status_code != 401:
        exc.hint = None  # error_from_answer's hints speak of the admin API
    return exc


class RemoteConversations:
    """The conversation API of the gateway at ``url`` with API key ``token`` (or ``auth``: the
    stored ``llmgw login``)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        auth: httpx.Auth | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.url = _safe_url(url)
        if not token and auth is None:
            raise UsageError(
                f"chat with {self.url} needs an API key or a login",
                hint=f"pass --token KEY, set LLMGW_TOKEN, or run `llmgw login --url {self.url}`",
                param="token",
            )
        if token and not _TOKEN_OK.fullmatch(token):
            raise UsageError(
                "the key has spaces or characters outside printable ASCII",
                hint="paste the key exactly as `llmgw keys create` printed it",
                param="token",
            )
        headers = {"User-Agent": f"llmgw-chat/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            auth=None if token else auth,
            timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT),
            follow_redirects=False,
            trust_env=False,
        )

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"RemoteConversations(url={self.url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _unreachable(self, exc: httpx.HTTPError) -> LlmgwError:
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout(f"no answer from the llmgw server at {self.url} in time")
        return Unavailable(
            f"cannot reach the llmgw server at {self.url}: {unreachable_reason(exc)}",
            hint="is `llmgw serve` running there? check --url / LLMGW_URL",
        )

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if not resp.is_success:
            raise _error(resp, self.url)
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"the server at {self.url}{path} did not answer JSON") from None

    def turn(self, body: dict[str, Any]) -> dict[str, Any]:
        """One turn, answered as JSON (chat completions' body with ``conversation``)."""
        data: dict[str, Any] = self._json("POST", "/api/chat", json={**body, "stream": False})
        return data

    def stream(self, body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """One turn, streamed: ``("conversation", id)`` first, then ``("text", piece)`` and
        ``("usage", {...})`` items; an error event raises. Closing the iterator hangs up."""
        try:
            with self._client.stream("POST", "/api/chat", json={**body, "stream": True}) as resp:
                if not resp.is_success:
                    raise _error(resp, self.url)
                yield "conversation", resp.headers.get("x-llmgw-conversation-id")
                for line in resp.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = orjson.loads(line[6:])
                    if "error" in event:
                        err = event["error"]
                        raise UpstreamError(str(err.get("message", "the stream failed")))
                    if event.get("usage"):
                        yield "usage", event["usage"]
                    for choice in event.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield "text", text
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's messages, oldest first."""
        data = self._json("GET", "/api/messages", params={"conversation_id": conversation_id})
        return list(data["data"])

    def export_markdown(self, conversation_id: str) -> str:
        """The conversation as Markdown."""
        data = self._json(
            "GET", f"/api/conversations/{conversation_id}/export", params={"format": "markdown"}
        )
        return str(data["content"])
