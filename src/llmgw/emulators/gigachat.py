"""A local GigaChat: the OAuth endpoint and the v1 API on one port, in the real wire formats.

Formats follow docs/shared reference ``gigachat.md``: tokens with ``expires_at`` in milliseconds, the
``{"code", "message"}`` OAuth errors, ``{"status", "message"}`` API errors, chat without ``id``,
``functions``/``function_call`` with object arguments, SSE chunks with ``object: chat.completion``
and usage in the last data chunk, a per-account concurrency cap answered with the real 429 body.

Markers in the last user message steer a reply: ``[[blacklist]]`` (finish_reason blacklist),
``[[error]]`` (finish_reason error), ``[[stream_error]]`` (a stream breaks off with an error event).
``max_tokens`` truncates the reply (finish_reason length).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import secrets
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llmgw.emulators.faults import fault_response, json_response
from llmgw.emulators.gigachat_replies import (
    EMBED_DIM,
    MODELS,
    api_error,
    completion,
    model_card,
    split_reply,
    sse,
    tokens_of,
    validate_chat,
    vector,
)

__all__ = [
    "DEFAULT_CREDENTIALS",
    "EMBED_DIM",
    "MODELS",
    "GigaChatEmulator",
    "create_app",
    "tokens_of",
]

DEFAULT_CREDENTIALS = base64.b64encode(b"emulator-client-id:emulator-client-secret").decode()
"""The authorization key the emulator accepts unless told otherwise."""

SCOPES = ("GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP")


@dataclass
class _Token:
    credential: str
    scope: str
    expires_at: float  # seconds


@dataclass
class GigaChatEmulator:
    """The emulator's switches and counters; tests may change switches while it runs."""

    credentials: dict[str, str | None]
    """Accepted authorization key -> the scope it is registered for (``None``: any scope)."""
    token_ttl: float = 1800.0
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    max_concurrency: int | None = None
    """Concurrent requests per account; ``None``: 1 for PERS, 10 for B2B/CORP (the real defaults)."""
    fault: str | None = None
    """Fault for the API routes (see ``llmgw.emulators.faults.Fault``)."""
    oauth_fault: str | None = None
    """Fault for the OAuth route."""
    expires_at_seconds: bool = False
    """Answer ``expires_at`` in seconds (the docs' example) instead of milliseconds."""
    hang_seconds: float = 30.0
    seed: int = 0
    oauth_calls: int = 0
    """Successful token issues so far."""
    oauth_requests: int = 0
    """Every request to the OAuth endpoint, failed or not."""
    api_calls: int = 0
    """API calls that passed the token check (model listings are counted in ``listings``)."""
    token_counts: int = 0
    """``POST /tokens/count`` calls that passed the token check (also counted in ``api_calls``)."""
    listings: int = 0
    """``GET /models`` and ``/models/{id}`` calls that passed the token check."""
    auth_failures: int = 0
    """API calls answered 401 (unknown or expired token)."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """The last JSON bodies received on chat/embeddings (newest last, at most 50)."""
    tokens: dict[str, _Token] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    def expire_tokens(self) -> None:
        """Make every issued token expired (the next API call gets 401 ``Token has expired``)."""
        for tok in self.tokens.values():
            tok.expires_at = 0.0

    def cap_for(self, scope: str) -> int:
        """The concurrency cap of an account with this scope."""
        if self.max_concurrency is not None:
            return self.max_concurrency
        return 1 if scope == "GIGACHAT_API_PERS" else 10


def _oauth_err(status: int, code: int, message: str) -> Response:
    return json_response({"code": code, "message": message}, status)


def _headers(request: Request) -> dict[str, str]:
    return {
        "X-Request-Id": request.headers.get("x-request-id") or str(uuid.uuid4()),
        "X-Session-Id": request.headers.get("x-session-id") or str(uuid.uuid4()),
    }


def _valid_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


class _App:
    def __init__(self, emu: GigaChatEmulator) -> None:
        self.emu = emu

    async def _sleep(self) -> None:
        if self.emu.latency_ms > 0:
            await asyncio.sleep(self.emu.latency_ms / 1000)

    async def _fault(self, fault: str | None, request: Request) -> Response | None:
        return await fault_response(
            fault,
            request,
            fail_rate=self.emu.fail_rate,
            rng=self.emu.rng,
            error_500=lambda: api_error(500, "Internal Server Error"),
            error_429=lambda: api_error(429, "Too many requests"),
            hang_seconds=self.emu.hang_seconds,
        )

    # -- OAuth ---------------------------------------------------------------------------------
    async def oauth(self, request: Request) -> Response:
        emu = self.emu
        emu.oauth_requests += 1
        await self._sleep()
        faulty = await self._fault(emu.oauth_fault, request)
        if faulty is not None:
            return faulty
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "basic" or not key:
            return _oauth_err(401, 4, "Can't decode 'Authorization' header")
        try:
            base64.b64decode(key, validate=True)
        except (ValueError, binascii.Error):
            return _oauth_err(401, 4, "Can't decode 'Authorization' header")
        if not _valid_uuid(request.headers.get("rquid", "")):
            return _oauth_err(400, 3, "RqUID is missing or is not a valid uuid4")
        form = urllib.parse.parse_qs((await request.body()).decode(errors="replace"))
        scope = (form.get("scope") or [""])[0]
        if not scope:
            return _oauth_err(400, 5, "scope is empty")
        if scope not in SCOPES:
            return _oauth_err(400, 1, "scope data format invalid")
        if key not in emu.credentials:
            return _oauth_err(401, 6, "credentials doesn't match db data")
        registered = emu.credentials[key]
        if registered is not None and registered != scope:
            return _oauth_err(400, 7, "scope from db not fully includes consumed scope")
        token = "eyJjdHkiOiJqd3QiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwiYWxnIjoiUlNBLU9BRVAtMjU2In0." + (
            secrets.token_urlsafe(900)
        )
        expires = time.time() + emu.token_ttl
        emu.tokens[token] = _Token(key, scope, expires)
        emu.oauth_calls += 1
        expires_at = int(expires) if emu.expires_at_seconds else int(expires * 1000)
        return json_response(
            {"access_token": token, "expires_at": expires_at}, 200, _headers(request)
        )

    # -- API plumbing --------------------------------------------------------------------------
    async def _authorize(self, request: Request) -> _Token | Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        tok = self.emu.tokens.get(token) if scheme.lower() == "bearer" else None
        if tok is None:
            return api_error(401, "Unauthorized")
        if tok.expires_at <= time.time():
            return api_error(401, "Token has expired")
        return tok

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return api_error(400, "Your request contains invalid JSON syntax.")
        if not isinstance(body, dict):
            return api_error(400, "Your request contains invalid JSON syntax.")
        self.emu.requests.append(body)
        del self.emu.requests[:-50]
        return body

    async def _gate(self, request: Request) -> tuple[_Token, Response | None]:
        """Auth, faults, latency; returns the token and an early response if there is one."""
        auth = await self._authorize(request)
        if isinstance(auth, Response):
            self.emu.auth_failures += 1
            return _Token("", "", 0), auth
        self.emu.api_calls += 1
        faulty = await self._fault(self.emu.fault, request)
        return auth, faulty

    def _acquire(self, tok: _Token) -> bool:
        n = self.emu.in_flight.get(tok.credential, 0)
        if n >= self.emu.cap_for(tok.scope):
            return False
        self.emu.in_flight[tok.credential] = n + 1
        return True

    def _release(self, tok: _Token) -> None:
        self.emu.in_flight[tok.credential] -= 1

    # -- chat ----------------------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        tok, early = await self._gate(request)
        if early is not None:
            return early
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        problem = validate_chat(body, tok.scope)
        if problem is not None:
            return problem
        if not self._acquire(tok):
            return api_error(429, "Too many requests")
        headers = _headers(request)
        if body.get("stream"):
            return StreamingResponse(
                self._stream(body, tok), media_type="text/event-stream", headers=headers
            )
        try:
            await self._sleep()
            return json_response(completion(body), 200, headers)
        finally:
            self._release(tok)

    async def _stream(self, body: dict[str, Any], tok: _Token) -> AsyncIterator[bytes]:
        try:
            await self._sleep()
            reply = completion(body)
            choice = reply["choices"][0]
            msg = choice["message"]
            base = {
                "created": reply["created"],
                "model": reply["model"],
                "object": "chat.completion",
            }
            pieces = split_reply(msg["content"]) if msg["content"] else []
            for i, piece in enumerate(pieces):
                delta: dict[str, Any] = {"content": piece}
                if i == 0:
                    delta["role"] = "assistant"
                yield sse({"choices": [{"delta": delta, "index": 0}], **base})
                if i == 1 and "[[stream_error]]" in str(body["messages"][-1].get("content")):
                    yield sse({"status": 500, "message": "Internal Server Error"})
                    return
                if self.emu.latency_ms > 0:
                    await asyncio.sleep(self.emu.latency_ms / 4000)
            last: dict[str, Any] = {"content": ""}
            if not pieces:
                last["role"] = "assistant"
            if "function_call" in msg:
                last["function_call"] = msg["function_call"]
                last["functions_state_id"] = msg["functions_state_id"]
            final = {"delta": last, "index": 0, "finish_reason": choice["finish_reason"]}
            yield sse({"choices": [final], **base, "usage": reply["usage"]})
            yield b"data: [DONE]\n\n"
        finally:
            self._release(tok)

    # -- other endpoints -----------------------------------------------------------------------
    async def _listing_gate(self, request: Request) -> Response | None:
        """Auth only: model listings count in ``listings``, outside ``api_calls``, faults and
        latency (the gateway's model catalog asks in the background; tests that count calls or
        inject faults do not see it)."""
        auth = await self._authorize(request)
        if isinstance(auth, Response):
            self.emu.auth_failures += 1
            return auth
        self.emu.listings += 1
        return None

    async def models(self, request: Request) -> Response:
        early = await self._listing_gate(request)
        if early is not None:
            return early
        data = [model_card(m) for m in MODELS]
        return json_response({"object": "list", "data": data}, 200, _headers(request))

    async def model(self, request: Request) -> Response:
        early = await self._listing_gate(request)
        if early is not None:
            return early
        name = request.path_params["name"]
        if name not in MODELS:
            return api_error(404, "No such model")
        return json_response(model_card(name), 200, _headers(request))

    async def embeddings(self, request: Request) -> Response:
        tok, early = await self._gate(request)
        if early is not None:
            return early
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        model, texts = body.get("model"), body.get("input")
        if MODELS.get(str(model)) != "embedder":
            return api_error(404, "No such model")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
            return api_error(422, "Invalid params: input must be a non-empty list of strings")
        await self._sleep()
        data = [
            {"object": "embedding", "index": i, "embedding": vector(t, EMBED_DIM),
             "usage": {"prompt_tokens": tokens_of(t)}}
            for i, t in enumerate(texts)
        ]  # fmt: skip
        return json_response(
            {"object": "list", "model": model, "data": data}, 200, _headers(request)
        )

    async def tokens_count(self, request: Request) -> Response:
        tok, early = await self._gate(request)
        if tok.credential:
            self.emu.token_counts += 1
        if early is not None:
            return early
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        if MODELS.get(str(body.get("model"))) != "chat":
            return api_error(404, "No such model")
        texts = body.get("input")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return api_error(422, "Invalid params: input must be a list of strings")
        out = [{"object": "tokens", "tokens": tokens_of(t), "characters": len(t)} for t in texts]
        return json_response(out, 200, _headers(request))

    async def balance(self, request: Request) -> Response:
        tok, early = await self._gate(request)
        if early is not None:
            return early
        if tok.scope == "GIGACHAT_API_CORP":
            return api_error(403, "Permission denied")
        usage = [{"usage": "GigaChat", "value": 900000}, {"usage": "embeddings", "value": 9999967}]
        return json_response({"balance": usage}, 200, _headers(request))


def create_app(
    *,
    credentials: str | Mapping[str, str | None] = DEFAULT_CREDENTIALS,
    token_ttl: float = 1800.0,
    latency_ms: float = 0.0,
    fail_rate: float = 0.0,
    max_concurrency: int | None = None,
    fault: str | None = None,
    oauth_fault: str | None = None,
    expires_at_seconds: bool = False,
    hang_seconds: float = 30.0,
    seed: int = 0,
) -> Starlette:
    """The GigaChat emulator; ``app.state.emulator`` is its ``GigaChatEmulator`` (switches, counters).

    ``credentials``: one accepted authorization key (any scope), or key -> registered scope.
    The OAuth endpoint is ``/api/v2/oauth``; the API is served under both ``/api/v1`` and ``/v1``.
    """
    creds: dict[str, str | None] = (
        {credentials: None} if isinstance(credentials, str) else dict(credentials)
    )
    emu = GigaChatEmulator(
        credentials=creds, token_ttl=token_ttl, latency_ms=latency_ms, fail_rate=fail_rate,
        max_concurrency=max_concurrency, fault=fault, oauth_fault=oauth_fault,
        expires_at_seconds=expires_at_seconds, hang_seconds=hang_seconds, rng=random.Random(seed),  # noqa: S311
    )  # fmt: skip
    h = _App(emu)
    routes = [Route("/api/v2/oauth", h.oauth, methods=["POST"])]
    for prefix in ("/api/v1", "/v1"):
        routes += [
            Route(f"{prefix}/chat/completions", h.chat, methods=["POST"]),
            Route(f"{prefix}/models", h.models, methods=["GET"]),
            Route(f"{prefix}/models/{{name:path}}", h.model, methods=["GET"]),
            Route(f"{prefix}/embeddings", h.embeddings, methods=["POST"]),
            Route(f"{prefix}/tokens/count", h.tokens_count, methods=["POST"]),
            Route(f"{prefix}/balance", h.balance, methods=["GET"]),
        ]
    app = Starlette(routes=routes)
    app.state.emulator = emu
    return app
