"""The YandexGPT adapter (``kind = "yandexgpt"``): Foundation Models v1 completion and embeddings.

Auth: ``Authorization: Api-Key <key>`` from the provider's secret, or, when
``service_account_key_file`` is set, an IAM token: a PS256 JWT signed with the service account's
authorized key is exchanged at ``iam_url``; the token is refreshed hourly (well before its 12 h
expiry) with a single flight and after a 401 (one retry). IAM calls carry ``x-folder-id``.
Models: ``yandexgpt-lite`` + version ``rc`` -> ``gpt://<folder>/yandexgpt-lite/rc`` (``latest``
by default). The native stream (whole text so far, one JSON object per line) becomes OpenAI deltas.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from llmgw.config import ProviderConfig
from llmgw.errors import (
    ConfigError,
    InvalidRequest,
    LlmgwError,
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
from llmgw.providers.status import upstream_error
from llmgw.providers.tls import ssl_context
from llmgw.providers.tokens import AccessToken, TokenCache
from llmgw.providers.transport import Transport, UpstreamStatus, parse_json, redact
from llmgw.providers.yandexgpt_iam import (
    IAM_AUDIENCE,
    IAM_REFRESH_SECONDS,
    ServiceAccountTokens,
    load_service_account_key,
)
from llmgw.providers.yandexgpt_wire import (
    FOLDER_MESSAGE,
    GRPC_HTTP_STATUS,
    MODEL_URI_MESSAGE,
    STATUS_TO_FINISH,
    CumulativeText,
    completion_body,
    completion_response,
    embedding_uri,
    error_code_and_message,
    model_uri,
    quota_kind,
    tool_calls_of,
    usage_of,
)
from llmgw.schemas import ChatRequest, EmbeddingRequest

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_IAM_URL",
    "IAM_AUDIENCE",
    "YandexGPTProvider",
    "load_service_account_key",
]

DEFAULT_BASE_URL = "https://llm.api.cloud.yandex.net"
DEFAULT_IAM_URL = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
CATALOGUE = (
    "yandexgpt-lite",
    "yandexgpt",
    "llama-lite",
    "llama",
    "text-search-doc",
    "text-search-query",
)


class YandexGPTProvider:
    """A Yandex Cloud folder's Foundation Models behind the gateway."""

    kind = "yandexgpt"
    upstream_listing = False
    """The native API lists no models: ``list_models`` answers from the config or ``CATALOGUE``."""

    def __init__(self, config: ProviderConfig, api_key: str | None) -> None:
        if not config.folder_id:
            raise ConfigError(
                f"provider {config.name!r}: folder_id is required for YandexGPT",
                hint='set folder_id = "b1g..."',
            )
        self.name = config.name
        self.config = config
        self.folder_id = config.folder_id
        sa_key = (
            load_service_account_key(config.service_account_key_file)
            if config.service_account_key_file
            else None
        )
        if sa_key is None and not api_key:
            raise ConfigError(
                f"provider {config.name!r}: no YandexGPT API key and no service_account_key_file",
                hint=f"set {config.api_key_env or 'api_key_env'}, run `llmgw providers set-secret {config.name}`, "
                "or set service_account_key_file",
            )
        self._api_key = None if sa_key is not None else api_key
        self._ssl = ssl_context(config.ca_bundle)
        self.iam_url = config.iam_url or DEFAULT_IAM_URL
        self._iam = (
            ServiceAccountTokens(
                sa_key,
                iam_url=self.iam_url,
                verify=self._ssl,
                connect_timeout=config.connect_timeout,
                timeout=config.first_byte_timeout,
                provider=config.name,
            )
            if sa_key is not None
            else None
        )
        self.transport = Transport(
            provider=config.name,
            base_url=config.base_url or DEFAULT_BASE_URL,
            max_concurrency=config.max_concurrency or 10,
            connect_timeout=config.connect_timeout,
            first_byte_timeout=config.first_byte_timeout,
            idle_timeout=config.idle_timeout,
            total_timeout=config.total_timeout,
            secrets=tuple(s for s in (api_key,) if s),
            ssl=self._ssl,
        )
        self.tokens = TokenCache(self._fetch_iam, margin=60.0, max_age=IAM_REFRESH_SECONDS)
        self.stream_rewrites = 0
        """Streams in which the upstream rewrote text it had already sent."""

    # -- auth --------------------------------------------------------------------------------
    def _secrets(self, token: str | None) -> list[str]:
        return [s for s in (self._api_key, token, self._iam and self._iam.private_key) if s]

    async def _fetch_iam(self) -> AccessToken:
        if self._iam is None:  # pragma: no cover - the cache is only used with a key file
            raise ConfigError(f"provider {self.name!r}: no service_account_key_file")
        return await self._iam.fetch()

    async def _auth(self) -> tuple[dict[str, str], str | None]:
        if self._api_key is not None:
            return {"Authorization": f"Api-Key {self._api_key}"}, None
        token = await self.tokens.get()
        return {"Authorization": f"Bearer {token}", "x-folder-id": self.folder_id}, token

    async def _refresh(self, token: str | None) -> tuple[dict[str, str], str | None] | None:
        """New headers after a 401, or ``None`` when the credential cannot be refreshed (API key)."""
        if token is None:
            return None
        token = await self.tokens.refresh(token)
        return {"Authorization": f"Bearer {token}", "x-folder-id": self.folder_id}, token

    # -- calls -------------------------------------------------------------------------------
    async def _post(self, path: str, body: dict[str, Any], ctx: CallContext) -> Any:
        headers, token = await self._auth()
        headers["x-client-request-id"] = ctx.request_id
        status, rh, data = await self.transport.post_json(path, body, headers)
        if status == 401 and (again := await self._refresh(token)) is not None:
            headers, token = again
            headers["x-client-request-id"] = ctx.request_id
            status, rh, data = await self.transport.post_json(path, body, headers)
        if status >= 400:
            raise self._error(status, rh, data, token, ctx.model)
        return parse_json(self.name, status, rh, data)

    def _error(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        token: str | None,
        model: str | None = None,
    ) -> LlmgwError:
        """A Foundation Models error answer through the shared table, classified by its gRPC code.

        The code (``error.grpcCode``, or ``code`` in the short and google.rpc.Status shapes) decides
        the status where the answer has one (docs: error-codes); the HTTP status otherwise. Within
        INVALID_ARGUMENT only the documented messages tell a model URI the folder lacks (a 404 for
        the router) and a folder the credential does not belong to (the gateway's configuration)
        from the client's own mistakes; a RESOURCE_EXHAUSTED message names its quota's kind.
        """
        code, message = error_code_and_message(body)
        text = redact(message, self._secrets(token), limit=300) if message else None
        effective = GRPC_HTTP_STATUS.get(code, status) if code is not None else status
        if effective == 400 and message:
            if MODEL_URI_MESSAGE.search(message):
                effective = 404
            elif FOLDER_MESSAGE.search(message):
                return UpstreamError(
                    f"upstream {self.name} refused the folder: {text}",
                    provider=self.name,
                    hint="check folder_id (and that the service account belongs to that folder)",
                )
        gauge = effective == 429 and (not message or quota_kind(message) != "rate")
        return upstream_error(
            self.name,
            effective,
            headers,
            message=text,
            model=model,
            retry_default=1.0 if gauge else None,
        )

    def _uri(self, ctx: CallContext) -> str:
        return model_uri(self.folder_id, ctx.model, ctx.version, self.config.allowed_folders)

    # -- Provider protocol -------------------------------------------------------------------
    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """One completion through ``/foundationModels/v1/completion``."""
        uri = self._uri(ctx)
        body = completion_body(request, uri)
        body["completionOptions"]["stream"] = False
        raw = await self._post("/foundationModels/v1/completion", body, ctx)
        result = raw.get("result") if isinstance(raw, dict) else None
        if not isinstance(result, dict) or not result.get("alternatives"):
            raise UpstreamError(
                f"upstream {self.name} answered without alternatives", provider=self.name
            )
        out, usage = completion_response(result, uri)
        return ChatResponse(body=out, usage=usage, model=uri)

    async def _open(
        self, body: dict[str, Any], ctx: CallContext
    ) -> tuple[bytes, AsyncIterator[bytes]]:
        headers, token = await self._auth()
        for attempt in (0, 1):
            stream = self.transport.open_stream(
                "/foundationModels/v1/completion",
                body,
                headers | {"x-client-request-id": ctx.request_id},
                framing="lines",
            )
            try:
                return await anext(stream), stream
            except UpstreamStatus as exc:
                if (
                    exc.status == 401
                    and attempt == 0
                    and (again := await self._refresh(token)) is not None
                ):
                    headers, token = again
                    continue
                raise self._error(exc.status, exc.headers, exc.body, token, ctx.model) from None
            except StopAsyncIteration:
                break
        raise UpstreamError(
            f"upstream {self.name} ended the stream without any answer", provider=self.name
        )

    async def chat_stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk]:
        """The native cumulative stream as OpenAI deltas (rewrites and content-filter finals handled)."""
        uri = self._uri(ctx)
        body = completion_body(request, uri)
        body["completionOptions"]["stream"] = True
        first, lines = await self._open(body, ctx)
        text = CumulativeText()
        cid, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())
        usage = Usage()
        finish: str | None = None
        role_sent = False

        def chunk(
            choices: list[dict[str, Any]], extra: dict[str, Any] | None = None
        ) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": uri,
                "choices": choices,
                **(extra or {}),
            }

        try:
            line: bytes | None = first
            while line is not None and finish is None:
                obj = parse_json(self.name, 200, {}, line)
                if (
                    not isinstance(obj, dict)
                    or "error" in obj
                    or not isinstance(obj.get("result"), dict)
                ):
                    raise UpstreamError(
                        f"upstream {self.name} reported an error in the stream", provider=self.name
                    )
                result = obj["result"]
                alt = (result.get("alternatives") or [{}])[0]
                message = alt.get("message") or {}
                status = str(alt.get("status", "ALTERNATIVE_STATUS_PARTIAL"))
                finish = STATUS_TO_FINISH.get(status, "stop")
                usage = usage_of(result.get("usage")) if result.get("usage") else usage
                delta: dict[str, Any] = {}
                if not role_sent:
                    delta["role"], role_sent = "assistant", True
                if message.get("toolCallList"):
                    delta["tool_calls"] = tool_calls_of(message)
                elif status != "ALTERNATIVE_STATUS_CONTENT_FILTER":
                    piece = text.feed(str(message.get("text", "")))
                    if piece:
                        delta["content"] = piece
                if delta or finish:
                    yield ChatChunk(
                        data=chunk(
                            [
                                {
                                    "index": 0,
                                    "delta": delta,
                                    "logprobs": None,
                                    "finish_reason": finish,
                                }
                            ]
                        )
                    )
                if finish is None:
                    line = await anext(lines, None)
        finally:
            await lines.aclose()  # type: ignore[attr-defined]
            if text.rewrites:
                self.stream_rewrites += 1
        if finish is None:
            raise UpstreamError(
                f"upstream {self.name} ended the stream before a final status", provider=self.name
            )
        yield ChatChunk(
            data=chunk([], {"usage": usage.as_dict()}) if request.include_usage else None,
            usage=usage,
        )

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        """``/foundationModels/v1/textEmbedding``, one call per text (the API takes one text)."""
        texts = request.texts()
        if not texts or (isinstance(request.input, list) and len(texts) != len(request.input)):
            raise InvalidRequest(
                "YandexGPT embeddings take text input, not token ids", param="input"
            )
        uri = embedding_uri(self.folder_id, ctx.model, ctx.version, self.config.allowed_folders)

        async def one(text: str) -> tuple[list[float], int]:
            body: dict[str, Any] = {"modelUri": uri, "text": text}
            if request.dimensions is not None:
                body["dim"] = str(request.dimensions)
            raw = await self._post("/foundationModels/v1/textEmbedding", body, ctx)
            vec = raw.get("embedding") if isinstance(raw, dict) else None
            if not isinstance(vec, list):
                raise UpstreamError(
                    f"upstream {self.name} answered an embedding without a vector",
                    provider=self.name,
                )
            return vec, int(raw.get("numTokens") or 0)

        results = await asyncio.gather(*(one(t) for t in texts))
        tokens = sum(n for _, n in results)
        data = []
        for i, (vec, _) in enumerate(results):
            emb: Any = vec
            if request.encoding_format == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        body = {
            "object": "list",
            "data": data,
            "model": uri,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return EmbeddingResponse(
            body=body, usage=Usage(prompt_tokens=tokens, total_tokens=tokens), model=uri
        )

    async def list_models(self) -> list[ModelCard]:
        """The configured models, else the public catalogue (the native API has no model listing)."""
        names = self.config.models or list(CATALOGUE)
        return [
            ModelCard(id=n, owned_by="yandex", extra={"versions": ["latest", "rc", "deprecated"]})
            for n in names
        ]

    async def aclose(self) -> None:
        """Close the API session and the IAM client."""
        await self.transport.aclose()
        if self._iam is not None:
            await self._iam.aclose()

    def __repr__(self) -> str:
        auth = "iam" if self._iam is not None else "api-key"
        return f"<YandexGPTProvider {self.name} folder={self.folder_id} auth={auth}>"
