"""The GigaChat adapter (``kind = "gigachat"``): OAuth tokens, the v1 chat contract, embeddings, models.

Auth: the authorization key (Basic) is exchanged at ``auth_url`` for a ~30 min bearer token, with a
fresh ``RqUID`` (uuid4) and the configured scope. The token is cached per provider (one credential
each), refreshed when less than 60 s remain with a single flight, and a 401 causes one refresh and
one retry. ``expires_at`` is read as milliseconds, tolerating seconds. TLS is always verified;
``ca_bundle`` adds the Russian Trusted Root CA. Concurrency is capped per account: ``max_concurrency``,
else 1 for ``GIGACHAT_API_PERS`` and 10 for B2B/CORP.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
import orjson

from llmgw.config import ProviderConfig
from llmgw.errors import (
    ConfigError,
    InvalidRequest,
    LlmgwError,
    RateLimited,
    UpstreamError,
)
from llmgw.providers.base import (
    CallContext,
    ChatChunk,
    ChatResponse,
    EmbeddingResponse,
    ModelCard,
    Usage,
)
from llmgw.providers.gigachat_wire import StreamState, chat_body, chat_response
from llmgw.providers.status import retry_after, upstream_error
from llmgw.providers.tls import ssl_context
from llmgw.providers.tokens import AccessToken, TokenCache, expires_at_seconds, token_endpoint_error
from llmgw.providers.transport import Transport, UpstreamStatus, parse_json, redact
from llmgw.schemas import ChatRequest, EmbeddingRequest

__all__ = ["DEFAULT_AUTH_URL", "DEFAULT_BASE_URL", "GigaChatProvider"]

DEFAULT_BASE_URL = "https://gigachat.devices.sberbank.ru/api/v1"
DEFAULT_AUTH_URL = "https://ngw.devices.sberbank.ru:9443/api/v2/oauth"
TOKEN_MARGIN = 60.0
CONCURRENCY_RETRY_AFTER = 1.0
"""The wait a 429 without ``Retry-After`` suggests: GigaChat limits concurrent calls, not a rate."""


class GigaChatProvider:
    """A GigaChat account behind the gateway."""

    kind = "gigachat"

    def __init__(self, config: ProviderConfig, credentials: str | None) -> None:
        if not credentials:
            raise ConfigError(
                f"provider {config.name!r}: no GigaChat authorization key",
                hint=f"set {config.api_key_env or 'api_key_env'} or run `llmgw providers set-secret {config.name}`",
            )
        self.name = config.name
        self.config = config
        self._credentials = credentials
        self._ssl = ssl_context(config.ca_bundle)
        self.auth_url = config.auth_url or DEFAULT_AUTH_URL
        self.max_concurrency = config.max_concurrency or (
            1 if config.scope == "GIGACHAT_API_PERS" else 10
        )
        self.transport = Transport(
            provider=config.name,
            base_url=config.base_url or DEFAULT_BASE_URL,
            max_concurrency=self.max_concurrency,
            connect_timeout=config.connect_timeout,
            first_byte_timeout=config.first_byte_timeout,
            idle_timeout=config.idle_timeout,
            total_timeout=config.total_timeout,
            secrets=(credentials,),
            ssl=self._ssl,
        )
        self.tokens = TokenCache(self._fetch_token, margin=TOKEN_MARGIN)
        self._http: httpx.AsyncClient | None = None

    # -- auth --------------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            timeout = httpx.Timeout(
                self.config.first_byte_timeout, connect=self.config.connect_timeout
            )
            self._http = httpx.AsyncClient(
                verify=self._ssl, timeout=timeout, follow_redirects=False, trust_env=False
            )
        return self._http

    async def _fetch_token(self) -> AccessToken:
        headers = {
            "Authorization": f"Basic {self._credentials}",
            "RqUID": str(uuid.uuid4()),
            "Accept": "application/json",
        }
        try:
            resp = await self._client().post(
                self.auth_url, headers=headers, data={"scope": self.config.scope}
            )
        except httpx.HTTPError as exc:
            raise token_endpoint_error(exc, "GigaChat", self.name) from None
        if 300 <= resp.status_code < 400:
            raise UpstreamError(
                f"the GigaChat token endpoint answered with a redirect (HTTP {resp.status_code}); not followed",
                provider=self.name,
                hint="check auth_url",
            )
        if resp.status_code == 429:  # 10 token requests per second per key
            wait = retry_after(resp.headers)
            raise RateLimited(
                "the GigaChat token endpoint is rate limiting",
                retry_after=CONCURRENCY_RETRY_AFTER if wait is None else wait,
            )
        if resp.status_code != 200:
            detail = self._oauth_detail(resp.content)
            raise UpstreamError(
                f"GigaChat refused to issue an access token (HTTP {resp.status_code}{detail})",
                provider=self.name,
                hint="check the authorization key and that scope matches the account",
            )
        data = parse_json(self.name, resp.status_code, resp.headers, resp.content)
        token, expires = (
            (data.get("access_token"), data.get("expires_at"))
            if isinstance(data, dict)
            else (None, None)
        )
        if not isinstance(token, str) or not token or not isinstance(expires, int | float):
            raise UpstreamError(
                "GigaChat answered the token request without a token", provider=self.name
            )
        return AccessToken(token, expires_at_seconds(expires))

    def _oauth_detail(self, body: bytes) -> str:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ""
        if (
            isinstance(data, dict)
            and isinstance(data.get("code"), int)
            and isinstance(data.get("message"), str)
        ):
            return (
                f", code {data['code']}: {redact(data['message'], [self._credentials], limit=200)}"
            )
        return ""

    # -- calls -------------------------------------------------------------------------------
    def _headers(self, token: str, ctx: CallContext | None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {token}"}
        if ctx is not None:
            h["X-Request-ID"] = ctx.request_id
        return h

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, ctx: CallContext | None
    ) -> Any:
        token = await self.tokens.get()
        status, headers, data = await self.transport.request(
            method, path, body, self._headers(token, ctx)
        )
        if status == 401:
            token = await self.tokens.refresh(token)
            status, headers, data = await self.transport.request(
                method, path, body, self._headers(token, ctx)
            )
        if status >= 400:
            model = body.get("model") if body is not None else None
            raise self._error(status, headers, data, token, model)
        return parse_json(self.name, status, headers, data)

    def _error(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        token: str,
        model: str | None = None,
    ) -> LlmgwError:
        """GigaChat's ``{"status", "message"}`` answer through the shared table (redacted, capped).

        A 401 here is the one left after a token refresh and a retry; a 429 is the account's
        concurrency limit, so without ``Retry-After`` a client may come back in a second.
        """
        message = None
        try:
            data = orjson.loads(body)
            if isinstance(data, dict) and isinstance(data.get("message"), str):
                message = redact(data["message"], [self._credentials, token], limit=300)
        except orjson.JSONDecodeError:
            pass
        return upstream_error(
            self.name,
            status,
            headers,
            message=message,
            model=model,
            retry_default=CONCURRENCY_RETRY_AFTER,
            hint="check the authorization key and scope" if status in (401, 403) else None,
        )

    # -- Provider protocol -------------------------------------------------------------------
    @staticmethod
    def _model(ctx: CallContext) -> str:
        if ctx.version:
            raise InvalidRequest(
                f"GigaChat models have no versions (got {ctx.model}:{ctx.version})",
                param="model",
                hint="name the model itself, e.g. GigaChat-2-Max or GigaChat-2-Max-preview",
            )
        return ctx.model

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """One chat completion through ``/chat/completions``."""
        body = chat_body(request, self._model(ctx))
        body.pop("stream", None)
        raw = await self._call("POST", "/chat/completions", body, ctx)
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("choices"), list)
            or not raw["choices"]
        ):
            raise UpstreamError(
                f"upstream {self.name} answered without choices", provider=self.name
            )
        out, usage, model = chat_response(raw)
        return ChatResponse(body=out, usage=usage, model=model)

    async def _open(
        self, body: dict[str, Any], ctx: CallContext
    ) -> tuple[bytes, AsyncIterator[bytes]]:
        token = await self.tokens.get()
        for attempt in (0, 1):
            stream = self.transport.open_stream(
                "/chat/completions", body, self._headers(token, ctx)
            )
            try:
                return await anext(stream), stream
            except UpstreamStatus as exc:
                if exc.status == 401 and attempt == 0:
                    token = await self.tokens.refresh(token)
                    continue
                raise self._error(
                    exc.status, exc.headers, exc.body, token, body.get("model")
                ) from None
            except StopAsyncIteration:
                break
        raise UpstreamError(
            f"upstream {self.name} ended the stream without any event", provider=self.name
        )

    async def chat_stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk]:
        """A streamed chat completion; OpenAI chunks, then a usage chunk (data only if asked for)."""
        body = chat_body(request, self._model(ctx))
        body["stream"] = True
        first, stream = await self._open(body, ctx)
        state = StreamState()
        try:
            payload: bytes | None = first
            while payload is not None:
                raw = parse_json(self.name, 200, {}, payload)
                if not isinstance(raw, dict) or "choices" not in raw:
                    raise UpstreamError(
                        f"upstream {self.name} sent an error in the stream", provider=self.name
                    )
                yield ChatChunk(data=state.convert(raw))
                payload = await anext(stream, None)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if not state.finished:
            raise UpstreamError(
                f"upstream {self.name} ended the stream before the final chunk", provider=self.name
            )
        usage = state.usage or Usage()
        data = (
            state.chunk([], state.usage_dict or usage.as_dict()) if request.include_usage else None
        )
        yield ChatChunk(data=data, usage=usage)

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        """Embeddings through ``/embeddings`` (input always sent as a list)."""
        texts = request.texts()
        if not texts or (isinstance(request.input, list) and len(texts) != len(request.input)):
            raise InvalidRequest(
                "GigaChat embeddings take text input, not token ids", param="input"
            )
        if request.dimensions is not None:
            raise InvalidRequest(
                "GigaChat embeddings have a fixed size; remove dimensions", param="dimensions"
            )
        raw = await self._call(
            "POST", "/embeddings", {"model": self._model(ctx), "input": texts}, ctx
        )
        items = raw.get("data") if isinstance(raw, dict) else None
        if not isinstance(items, list) or len(items) != len(texts):
            raise UpstreamError(
                f"upstream {self.name} answered embeddings in an unexpected shape",
                provider=self.name,
            )
        prompt = sum(int((it.get("usage") or {}).get("prompt_tokens") or 0) for it in items)
        data = [
            {
                "object": "embedding",
                "index": it.get("index", i),
                "embedding": _encode(it["embedding"], request.encoding_format),
            }
            for i, it in enumerate(items)
        ]
        usage = Usage(prompt_tokens=prompt, total_tokens=prompt)
        model = str(raw.get("model") or ctx.model)
        body = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
        return EmbeddingResponse(body=body, usage=usage, model=model)

    async def list_models(self) -> list[ModelCard]:
        """``GET /models``: every model the account can use (``type`` kept in ``extra``)."""
        raw = await self._call("GET", "/models", None, None)
        items = raw.get("data") if isinstance(raw, dict) else None
        if not isinstance(items, list):
            raise UpstreamError(
                f"upstream {self.name} answered /models in an unexpected shape", provider=self.name
            )
        return [
            ModelCard(
                id=str(m["id"]),
                owned_by=str(m.get("owned_by", "salutedevices")),
                extra={"type": m.get("type")},
            )
            for m in items
            if isinstance(m, dict) and "id" in m
        ]

    async def count_tokens(self, texts: Sequence[str], model: str) -> list[int]:
        """Tokens in each text as GigaChat counts them (``/tokens/count``)."""
        raw = await self._call(
            "POST", "/tokens/count", {"model": model, "input": list(texts)}, None
        )
        if not isinstance(raw, list) or len(raw) != len(texts):
            raise UpstreamError(
                f"upstream {self.name} answered /tokens/count in an unexpected shape",
                provider=self.name,
            )
        return [int(item.get("tokens", 0)) for item in raw]

    async def aclose(self) -> None:
        """Close the API session and the token client."""
        await self.transport.aclose()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def __repr__(self) -> str:
        return (
            f"<GigaChatProvider {self.name} scope={self.config.scope} cap={self.max_concurrency}>"
        )


def _encode(vector: list[float], fmt: str | None) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector
