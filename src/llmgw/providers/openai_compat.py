"""The ``kind = "openai"`` adapter: any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, Yandex's OpenAI API).

Requests are forwarded as validated, with ``model`` replaced by the upstream model name; answers are
relayed as they come (streams chunk by chunk, unchanged). Streams always ask the upstream for a
usage chunk (``stream_options.include_usage``) so the gateway can record tokens; that chunk (empty
``choices``, ``usage`` set) is yielded like any other and the gateway drops it when the client did not
ask for it. Upstream errors are mapped into the gateway's error tree; see ``map_status``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from llmgw.config import ProviderConfig
from llmgw.errors import LlmgwError, UpstreamError
from llmgw.providers.base import (
    CallContext,
    ChatChunk,
    ChatResponse,
    EmbeddingResponse,
    ModelCard,
    Usage,
)
from llmgw.providers.status import upstream_error
from llmgw.providers.tls import ssl_context
from llmgw.providers.transport import Transport, UpstreamStatus, parse_json, redact
from llmgw.schemas import ChatRequest, EmbeddingRequest

__all__ = ["DEFAULT_BASE_URL", "OpenAICompatProvider", "map_status"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def _upstream_message(body: bytes, secrets: tuple[str, ...]) -> tuple[str | None, str | None]:
    """OpenAI's ``error.message`` and ``error.param`` from an error body, redacted; else Nones."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, str):
        return redact(err, secrets), None
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return None, None
    param = err.get("param")
    return redact(err["message"], secrets), (
        redact(param, secrets, limit=100) if isinstance(param, str) else None
    )


def map_status(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: tuple[str, ...] = (),
    model: str | None = None,
) -> LlmgwError:
    """The gateway error for an upstream's non-2xx answer: OpenAI's ``error.message`` and
    ``error.param`` (redacted) read from ``body``, then the shared table of
    ``llmgw.providers.status.upstream_error`` (never quoting credentials or raw bodies)."""
    message, param = _upstream_message(body, secrets)
    return upstream_error(provider, status, headers, message=message, param=param, model=model)


def _usage(obj: Any) -> Usage | None:
    if not isinstance(obj, dict):
        return None
    try:
        prompt = int(obj.get("prompt_tokens") or 0)
        completion = int(obj.get("completion_tokens") or 0)
        total = int(obj.get("total_tokens") or prompt + completion)
    except (TypeError, ValueError):
        return None
    return Usage(prompt, completion, total)


class OpenAICompatProvider:
    """A ``Provider`` for an OpenAI-compatible HTTP API."""

    kind = "openai"

    def __init__(self, config: ProviderConfig, api_key: str | None) -> None:
        self.name = config.name
        self.config = config
        self._secrets: tuple[str, ...] = (api_key,) if api_key else ()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.transport = Transport(
            provider=config.name,
            base_url=config.base_url or DEFAULT_BASE_URL,
            headers=headers,
            max_concurrency=config.max_concurrency,
            connect_timeout=config.connect_timeout,
            first_byte_timeout=config.first_byte_timeout,
            idle_timeout=config.idle_timeout,
            total_timeout=config.total_timeout,
            queue_timeout=config.queue_timeout,
            secrets=self._secrets,
            ssl=ssl_context(config.ca_bundle) if config.ca_bundle else None,
        )

    def __repr__(self) -> str:
        return f"<OpenAICompatProvider {self.name} {self.transport.base_url}>"

    def _error(
        self, status: int, headers: Mapping[str, str], body: bytes, model: str | None
    ) -> LlmgwError:
        return map_status(self.name, status, headers, body, secrets=self._secrets, model=model)

    def _json(self, status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        obj = parse_json(self.name, status, headers, body)
        if not isinstance(obj, dict):
            raise UpstreamError(
                f"upstream {self.name} answered with an unexpected JSON shape", provider=self.name
            )
        return obj

    @staticmethod
    def _body(request: ChatRequest | EmbeddingRequest, ctx: CallContext) -> dict[str, Any]:
        body = request.model_dump(exclude_none=True)
        body["model"] = ctx.model
        return body

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """One chat completion (``stream`` forced off)."""
        body = self._body(request, ctx)
        body.pop("stream_options", None)
        body["stream"] = False
        status, headers, data = await self.transport.post_json("chat/completions", body)
        if status >= 300:
            raise self._error(status, headers, data, ctx.model)
        obj = self._json(status, headers, data)
        if not isinstance(obj.get("choices"), list):
            raise UpstreamError(
                f"upstream {self.name} answered without choices", provider=self.name
            )
        usage = _usage(obj.get("usage")) or Usage()
        model = obj.get("model")
        return ChatResponse(
            body=obj, usage=usage, model=model if isinstance(model, str) else ctx.model
        )

    async def chat_stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk]:
        """A streamed chat completion; the upstream's usage chunk is yielded with ``usage`` set."""
        body = self._body(request, ctx)
        body["stream"] = True
        opts = body.get("stream_options") or {}
        body["stream_options"] = {**opts, "include_usage": True}
        stream = self.transport.open_stream("chat/completions", body)
        try:
            async for payload in stream:
                try:
                    obj = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise UpstreamError(
                        f"upstream {self.name} sent a stream event that is not valid JSON",
                        provider=self.name,
                    ) from None
                if not isinstance(obj, dict):
                    raise UpstreamError(
                        f"upstream {self.name} sent an unexpected stream event", provider=self.name
                    )
                if "error" in obj:
                    message, _ = _upstream_message(payload, self._secrets)
                    raise UpstreamError(
                        f"upstream {self.name} failed mid-stream"
                        + (f": {message}" if message else ""),
                        provider=self.name,
                    )
                usage = obj.get("usage")
                yield ChatChunk(obj, _usage(usage) if usage else None, payload)
        except UpstreamStatus as exc:
            raise self._error(exc.status, exc.headers, exc.body, ctx.model) from None
        finally:
            await stream.aclose()

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        """Embeddings for the request's input, in the encoding the client asked for."""
        body = self._body(request, ctx)
        status, headers, data = await self.transport.post_json("embeddings", body)
        if status >= 300:
            raise self._error(status, headers, data, ctx.model)
        obj = self._json(status, headers, data)
        if not isinstance(obj.get("data"), list):
            raise UpstreamError(
                f"upstream {self.name} answered without embeddings", provider=self.name
            )
        usage = _usage(obj.get("usage")) or Usage()
        model = obj.get("model")
        return EmbeddingResponse(
            body=obj, usage=usage, model=model if isinstance(model, str) else ctx.model
        )

    async def list_models(self) -> list[ModelCard]:
        """The upstream's ``/models`` (also with a configured list: the catalog compares them)."""
        status, headers, data = await self.transport.get_json("models")
        if status >= 300:
            raise self._error(status, headers, data, None)
        obj = self._json(status, headers, data)
        items = obj.get("data")
        if not isinstance(items, list):
            raise UpstreamError(
                f"upstream {self.name} answered without a model list", provider=self.name
            )
        cards = []
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                created = item.get("created")
                cards.append(
                    ModelCard(
                        id=item["id"],
                        owned_by=self.name,
                        created=created if isinstance(created, int) else 0,
                    )
                )
        return cards

    async def aclose(self) -> None:
        """Close the upstream connections."""
        await self.transport.aclose()
