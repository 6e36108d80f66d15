"""A fast, faithful OpenAI-compatible server (``llmgw emulate openai``) for tests, demos and benchmarks.

Endpoints: ``POST /v1/chat/completions`` (JSON and SSE), ``POST /v1/embeddings``, ``GET /v1/models``
and ``GET /v1/models/{id}``, with OpenAI's error envelopes. Replies are deterministic (an echo of the
last user message; see ``openai_content``). Handlers are raw ASGI under Starlette routing, serialise
with orjson and log nothing per request, so the emulator can feed a streaming benchmark.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.routing import Route

from llmgw.emulators import openai_content as content

__all__ = ["FAULTS", "EmulatorStats", "create_app"]

FAULTS = (
    "hang_before_headers",  # read the request, then never answer
    "stall_mid_stream",  # send headers and part of the body, then go silent
    "invalid_json",  # 200 with a body (or SSE event) that is not JSON
    "html_error",  # 502 with an HTML page, as a proxy in front would send
    "redirect",  # 302 to another host
    "echo_credentials",  # 400 whose message repeats the caller's Authorization header
    "drop_mid_stream",  # send part of the body, then close the connection
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
_Work = Callable[[bytes, Scope, Receive, Send], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_DONE = b"data: [DONE]\n\n"
_CREATED = 1_700_000_000
_DIMS = {"text-embedding-3-large": 3072}


@dataclass(slots=True)
class EmulatorStats:
    """Counters tests read from ``app.state.stats``."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    rejected: int = 0
    """Requests answered 429 because ``max_concurrency`` was reached."""
    streams_completed: int = 0
    disconnects: int = 0
    listings: int = 0
    """``GET /v1/models`` and ``/v1/models/{id}`` requests: counted here, not in ``requests``, and
    outside ``max_concurrency``, ``fail_rate``, ``fault`` and latency (the gateway's model catalog
    asks in the background; a test counting chat calls, filling the gauge or hanging the upstream
    does not see it)."""
    """Responses abandoned because the client went away."""


class _DeliberateDrop(Exception):  # noqa: N818 - not an error: the drop_mid_stream fault
    """Raised to make uvicorn close the connection mid-response."""


class _HideDeliberateDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DeliberateDrop)


def _install_log_filter() -> None:
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDeliberateDrops) for f in log.filters):
        log.addFilter(_HideDeliberateDrops())


def _error(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


async def _send(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = _JSON
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            break
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v  # type: ignore[no-any-return]
    return None


class _Emulator:
    def __init__(
        self,
        *,
        latency_ms: float,
        chunk_delay_ms: float,
        fail_rate: float,
        api_key: str | None,
        models: Sequence[str],
        seed: int | None,
        max_concurrency: int | None,
        fault: str | None,
        context_window: int | None = None,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        self.latency = latency_ms / 1000
        self.chunk_delay = chunk_delay_ms / 1000
        self.fail_rate = fail_rate
        self.auth = b"Bearer " + api_key.encode() if api_key else None
        self.models = tuple(models)
        self.rng = random.Random(seed)  # noqa: S311 - fault injection, not security
        self.max_concurrency = max_concurrency
        self.fault = fault
        self.context_window = context_window
        self.stats = EmulatorStats()
        self.seq = 0

    # -- the checks every API request goes through -------------------------------------------

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, work: _Work, listing: bool = False
    ) -> None:
        """Authenticate, apply limits, faults and latency, then run ``work`` on the body
        (``listing``: a model listing, see ``EmulatorStats.listings``)."""
        st = self.stats
        if listing:
            st.listings += 1
        else:
            st.requests += 1
        given = _header(scope, b"authorization")
        if self.auth is not None and given != self.auth:
            msg = (
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
                if given
                else "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            await _send(send, 401, _error(msg, "invalid_request_error", "invalid_api_key"))
            return
        if listing:
            await work(await _read_body(receive), scope, receive, send)
            return
        if self.max_concurrency is not None and st.in_flight >= self.max_concurrency:
            st.rejected += 1
            body = _error(
                "Rate limit reached: too many concurrent requests. Please try again in 1s.",
                "requests",
                "rate_limit_exceeded",
            )
            await _send(send, 429, body, [*_JSON, (b"retry-after", b"1")])
            return
        st.in_flight += 1
        if st.in_flight > st.max_in_flight:
            st.max_in_flight = st.in_flight
        try:
            raw = await _read_body(receive)
            if self.fault is not None and await self._early_fault(given, receive, send):
                return
            if self.fail_rate and self.rng.random() < self.fail_rate:
                msg = "The server had an error while processing your request. Sorry about that!"
                await _send(send, 500, _error(msg, "server_error"))
                return
            if self.latency:
                await asyncio.sleep(self.latency)
            await work(raw, scope, receive, send)
        finally:
            st.in_flight -= 1

    async def _early_fault(self, given: bytes | None, receive: Receive, send: Send) -> bool:
        """Answer with the configured fault if it fires before any normal answer."""
        if self.fault == "echo_credentials":
            seen = (given or b"").decode("latin-1")
            msg = f"Invalid request: the credential {seen!r} is not valid for this organization"
            await _send(send, 400, _error(msg, "invalid_request_error", "invalid_request"))
        elif self.fault == "redirect":
            where = b"http://169.254.169.254/latest/meta-data/iam/security-credentials/"
            await _send(send, 302, b"", [(b"location", where), (b"content-length", b"0")])
        elif self.fault == "html_error":
            page = (
                b"<html><head><title>502 Bad Gateway</title></head>"
                b"<body><h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>"
            )
            await _send(send, 502, page, [(b"content-type", b"text/html")])
        elif self.fault == "hang_before_headers":
            await receive()  # returns only when the client goes away
            self.stats.disconnects += 1
        else:
            return False
        return True

    def _parse(self, raw: bytes, required: tuple[str, ...]) -> tuple[dict[str, Any] | None, bytes]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None, _error(
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly.)",
                "invalid_request_error",
            )
        if not isinstance(body, dict):
            return None, _error("The request body must be a JSON object.", "invalid_request_error")
        for name in required:
            if name not in body:
                return None, _error(
                    f"Missing required parameter: '{name}'.",
                    "invalid_request_error",
                    "missing_required_parameter",
                    name,
                )
        model = body.get("model")
        if not isinstance(model, str) or (self.models and model not in self.models):
            return None, _error(
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        return body, b""

    def _next_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-emu{self.seq:012x}"

    async def _json(self, send: Send, obj: dict[str, Any], receive: Receive) -> None:
        data = orjson.dumps(obj)
        if self.fault == "invalid_json":
            data = data[: max(1, len(data) // 2)]
        elif self.fault in ("stall_mid_stream", "drop_mid_stream"):
            headers = [*_JSON, (b"content-length", str(len(data)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send(
                {"type": "http.response.body", "body": data[: len(data) // 2], "more_body": True}
            )
            if self.fault == "drop_mid_stream":
                raise _DeliberateDrop
            await receive()
            self.stats.disconnects += 1
            return
        await _send(send, 200, data)

    # -- endpoints ---------------------------------------------------------------------------

    async def chat(self, raw: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        body, err = self._parse(raw, ("model", "messages"))
        if body is None:
            await _send(send, 400 if b"model_not_found" not in err else 404, err)
            return
        messages = body["messages"]
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
        ):
            msg = "Invalid 'messages': expected a non-empty array of message objects."
            await _send(
                send, 400, _error(msg, "invalid_request_error", "invalid_value", "messages")
            )
            return
        window = self.context_window
        if window is not None and (used := content.prompt_tokens(messages)) > window:
            msg = (
                f"This model's maximum context length is {window} tokens. However, your "
                f"messages resulted in {used} tokens. Please reduce the length of the messages."
            )
            await _send(
                send,
                400,
                _error(msg, "invalid_request_error", "context_length_exceeded", "messages"),
            )
            return
        if body.get("stream"):
            await self._stream(body, receive, send)
        else:
            await self._json(send, content.completion(body, self._next_id("chatcmpl")), receive)

    async def _stream(self, body: dict[str, Any], receive: Receive, send: Send) -> None:
        frames = content.stream_frames(body, self._next_id("chatcmpl"))
        if self.fault == "invalid_json":
            frames = [b'data: {"id": "chatcmpl-emu", "choices": [{"delta": \n\n', _DONE]
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        watch = asyncio.ensure_future(receive())  # completes when the client disconnects
        try:
            for k, frame in enumerate(frames):
                if watch.done():
                    self.stats.disconnects += 1
                    return
                if k == 2 and self.fault in ("stall_mid_stream", "drop_mid_stream"):
                    if self.fault == "drop_mid_stream":
                        raise _DeliberateDrop
                    await watch
                    self.stats.disconnects += 1
                    return
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                if self.chunk_delay and k < len(frames) - 1:
                    await asyncio.sleep(self.chunk_delay)
            await send({"type": "http.response.body", "body": b""})
            self.stats.streams_completed += 1
        finally:
            if not watch.done():
                watch.cancel()

    async def embeddings(self, raw: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        body, err = self._parse(raw, ("model", "input"))
        if body is None:
            await _send(send, 400 if b"model_not_found" not in err else 404, err)
            return
        items = _embedding_inputs(body["input"])
        fmt = body.get("encoding_format") or "float"
        dims = body.get("dimensions") or _DIMS.get(body["model"], 1536)
        if items is None or fmt not in ("float", "base64") or not isinstance(dims, int) or dims < 1:
            msg = "'input' must be a non-empty string, array of strings or array of token arrays."
            if items is not None:
                msg = "Invalid 'encoding_format' or 'dimensions'."
            await _send(send, 400, _error(msg, "invalid_request_error", "invalid_value", "input"))
            return
        tokens = sum(content.count_tokens(x) if isinstance(x, str) else len(x) for x in items)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": content.embedding(x, dims, as_base64=fmt == "base64"),
            }
            for i, x in enumerate(items)
        ]
        obj = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        await self._json(send, obj, receive)

    def _model(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": _CREATED, "owned_by": "llmgw-emulator"}

    async def list_models(self, raw: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        await self._json(
            send, {"object": "list", "data": [self._model(m) for m in self.models]}, receive
        )

    async def get_model(self, raw: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path_params"]["model"]
        if self.models and name not in self.models:
            msg = f"The model '{name}' does not exist"
            await _send(send, 404, _error(msg, "invalid_request_error", "model_not_found", "model"))
            return
        await self._json(send, self._model(name), receive)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await _read_body(receive)
    msg = f"Invalid URL ({scope.get('method', 'GET')} {scope.get('path', '/')})"
    await _send(send, 404, _error(msg, "invalid_request_error"))


def _embedding_inputs(value: Any) -> list[str | list[int]] | None:
    if isinstance(value, str):
        return [value] if value else None
    if not isinstance(value, list) or not value or len(value) > 2048:
        return None
    if all(isinstance(x, int) for x in value):
        return [value]
    if all(isinstance(x, str) and x for x in value):
        return list(value)
    if all(isinstance(x, list) and x and all(isinstance(t, int) for t in x) for x in value):
        return list(value)
    return None


class _Endpoint:
    """An ASGI app running one handler behind the emulator's checks (no Starlette Request)."""

    def __init__(self, em: _Emulator, work: _Work, *, listing: bool = False) -> None:
        self.em = em
        self.work = work
        self.listing = listing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.em.serve(scope, receive, send, self.work, self.listing)


class _NotFound:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _not_found(scope, receive, send)


def create_app(
    *,
    latency_ms: float = 0,
    fail_rate: float = 0.0,
    api_key: str | None = None,
    models: Sequence[str] = ("gpt-4o-mini", "text-embedding-3-small"),
    seed: int | None = None,
    max_concurrency: int | None = None,
    fault: str | None = None,
    chunk_delay_ms: float = 0,
    context_window: int | None = None,
) -> Starlette:
    """An OpenAI-compatible app.

    ``latency_ms`` delays every answer before its headers; ``chunk_delay_ms`` spaces stream
    frames; ``fail_rate`` answers that share of requests with a 500 (``seed`` makes it
    repeatable); ``api_key`` requires ``Authorization: Bearer <key>``; ``models`` lists the
    accepted models (empty: accept any name); ``max_concurrency`` answers 429 with
    ``Retry-After`` beyond that many requests in flight; ``fault`` is one of ``FAULTS``;
    ``context_window`` answers a chat whose messages count more tokens (whitespace words) with
    OpenAI's 400 ``context_length_exceeded``. Counters are at ``app.state.stats`` (``EmulatorStats``).
    """
    em = _Emulator(
        latency_ms=latency_ms,
        chunk_delay_ms=chunk_delay_ms,
        fail_rate=fail_rate,
        api_key=api_key,
        models=models,
        seed=seed,
        max_concurrency=max_concurrency,
        fault=fault,
        context_window=context_window,
    )
    if fault == "drop_mid_stream":
        _install_log_filter()
    routes = [
        Route("/v1/chat/completions", _Endpoint(em, em.chat), methods=["POST"]),
        Route("/v1/embeddings", _Endpoint(em, em.embeddings), methods=["POST"]),
        Route("/v1/models", _Endpoint(em, em.list_models, listing=True), methods=["GET"]),
        Route(
            "/v1/models/{model:path}", _Endpoint(em, em.get_model, listing=True), methods=["GET"]
        ),
        Route("/{rest:path}", _NotFound()),
    ]
    app = Starlette(routes=routes)
    app.state.stats = em.stats
    app.state.emulator = em
    return app
