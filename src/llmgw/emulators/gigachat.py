"""A local GigaChat: the OAuth endpoint and the v1 API on one port, in the real wire formats.

Formats follow docs/shared reference ``gigachat.md``: tokens with ``expires_at`` in milliseconds, the
``{"code", "message"}`` OAuth errors, ``{"status", "message"}`` API errors, chat without ``id``,
``functions``/``function_call`` with object arguments, SSE chunks with ``object: chat.completion``
and usage in the last data chunk, a per-account concurrency cap answered with the real 429 body.

Markers in the last user message steer a reply: ``[[blacklist]]`` (finish_reason blacklist),
``[[error]]`` (finish_reason error). ``max_tokens`` truncates the reply (finish_reason length).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
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

__all__ = ["DEFAULT_CREDENTIALS", "MODELS", "GigaChatEmulator", "create_app"]

DEFAULT_CREDENTIALS = base64.b64encode(b"emulator-client-id:emulator-client-secret").decode()
"""The authorization key the emulator accepts unless told otherwise."""

SCOPES = ("GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP")
CHAT_MODELS = (
    "GigaChat", "GigaChat-2", "GigaChat-2-Pro", "GigaChat-2-Max", "GigaChat-2-preview",
    "GigaChat-Pro", "GigaChat-Max", "GigaChat-Plus", "GigaChat-3-Ultra",
)  # fmt: skip
EMBEDDERS = ("Embeddings", "Embeddings-2", "EmbeddingsGigaR")
MODELS: dict[str, str] = {m: "chat" for m in CHAT_MODELS} | {m: "embedder" for m in EMBEDDERS}
VERSIONS = {"GigaChat-3-Ultra": "32.3.18.5"}
PAID_ONLY = {"GigaChat-Plus"}  # answers 402 for personal (PERS) accounts
EMBED_DIM = 1024


def tokens_of(text: str) -> int:
    """The emulator's token count: about four characters per token, at least one."""
    return max(1, math.ceil(len(text) / 4))


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
    api_calls: int = 0
    """API calls that passed the token check."""
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


def _err(status: int, message: str) -> Response:
    return json_response({"status": status, "message": message}, status)


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
            error_500=lambda: _err(500, "Internal Server Error"),
            error_429=lambda: _err(429, "Too many requests"),
            hang_seconds=self.emu.hang_seconds,
        )

    # -- OAuth ---------------------------------------------------------------------------------
    async def oauth(self, request: Request) -> Response:
        emu = self.emu
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
            return _err(401, "Unauthorized")
        if tok.expires_at <= time.time():
            return _err(401, "Token has expired")
        return tok

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _err(400, "Your request contains invalid JSON syntax.")
        if not isinstance(body, dict):
            return _err(400, "Your request contains invalid JSON syntax.")
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
        problem = _validate_chat(body, tok.scope)
        if problem is not None:
            return problem
        if not self._acquire(tok):
            return _err(429, "Too many requests")
        headers = _headers(request)
        if body.get("stream"):
            return StreamingResponse(
                self._stream(body, tok), media_type="text/event-stream", headers=headers
            )
        try:
            await self._sleep()
            return json_response(_completion(body), 200, headers)
        finally:
            self._release(tok)

    async def _stream(self, body: dict[str, Any], tok: _Token) -> AsyncIterator[bytes]:
        try:
            await self._sleep()
            reply = _completion(body)
            choice = reply["choices"][0]
            msg = choice["message"]
            base = {
                "created": reply["created"],
                "model": reply["model"],
                "object": "chat.completion",
            }
            pieces = _split(msg["content"]) if msg["content"] else []
            for i, piece in enumerate(pieces):
                delta: dict[str, Any] = {"content": piece}
                if i == 0:
                    delta["role"] = "assistant"
                yield _sse({"choices": [{"delta": delta, "index": 0}], **base})
                if self.emu.latency_ms > 0:
                    await asyncio.sleep(self.emu.latency_ms / 4000)
            last: dict[str, Any] = {"content": ""}
            if not pieces:
                last["role"] = "assistant"
            if "function_call" in msg:
                last["function_call"] = msg["function_call"]
                last["functions_state_id"] = msg["functions_state_id"]
            final = {"delta": last, "index": 0, "finish_reason": choice["finish_reason"]}
            yield _sse({"choices": [final], **base, "usage": reply["usage"]})
            yield b"data: [DONE]\n\n"
        finally:
            self._release(tok)

    # -- other endpoints -----------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        tok, early = await self._gate(request)
        if early is not None:
            return early
        data = [_model_card(m) for m in MODELS]
        return json_response({"object": "list", "data": data}, 200, _headers(request))

    async def model(self, request: Request) -> Response:
        tok, early = await self._gate(request)
        if early is not None:
            return early
        name = request.path_params["name"]
        if name not in MODELS:
            return _err(404, "No such model")
        return json_response(_model_card(name), 200, _headers(request))

    async def embeddings(self, request: Request) -> Response:
        tok, early = await self._gate(request)
        if early is not None:
            return early
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        model, texts = body.get("model"), body.get("input")
        if MODELS.get(str(model)) != "embedder":
            return _err(404, "No such model")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
            return _err(422, "Invalid params: input must be a non-empty list of strings")
        await self._sleep()
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(t, EMBED_DIM),
             "usage": {"prompt_tokens": tokens_of(t)}}
            for i, t in enumerate(texts)
        ]  # fmt: skip
        return json_response(
            {"object": "list", "model": model, "data": data}, 200, _headers(request)
        )

    async def tokens_count(self, request: Request) -> Response:
        tok, early = await self._gate(request)
        if early is not None:
            return early
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        if MODELS.get(str(body.get("model"))) != "chat":
            return _err(404, "No such model")
        texts = body.get("input")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _err(422, "Invalid params: input must be a list of strings")
        out = [{"object": "tokens", "tokens": tokens_of(t), "characters": len(t)} for t in texts]
        return json_response(out, 200, _headers(request))

    async def balance(self, request: Request) -> Response:
        tok, early = await self._gate(request)
        if early is not None:
            return early
        if tok.scope == "GIGACHAT_API_CORP":
            return _err(403, "Permission denied")
        usage = [{"usage": "GigaChat", "value": 900000}, {"usage": "embeddings", "value": 9999967}]
        return json_response({"balance": usage}, 200, _headers(request))


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def _split(text: str) -> list[str]:
    """Multi-token stream pieces: about three words each, as the real server batches them."""
    words = text.split(" ")
    return [
        " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")
        for i in range(0, len(words), 3)
    ]


def _vector(text: str, dim: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)  # noqa: S311 - deterministic fake vectors
    return [round(rng.uniform(-1, 1), 6) for _ in range(dim)]


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "owned_by": "salutedevices", "type": MODELS[name]}


def _validate_chat(body: Mapping[str, Any], scope: str) -> Response | None:
    model = body.get("model")
    if not isinstance(model, str) or MODELS.get(model) != "chat":
        return _err(404, "No such model")
    if model in PAID_ONLY and scope == "GIGACHAT_API_PERS":
        return _err(402, "Payment Required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _err(422, "Invalid params: messages must not be empty")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in (
            "system",
            "user",
            "assistant",
            "function",
        ):
            return _err(422, "Invalid params: unknown message role")
        if m["role"] == "system" and i != 0:
            return _err(422, "Invalid params: system message must be the first message")
        if not isinstance(m.get("content", ""), str):
            return _err(422, "Invalid params: content must be a string")
        if m["role"] == "function":
            try:
                ok = isinstance(json.loads(m.get("content") or ""), dict)
            except ValueError:
                ok = False
            if not ok:
                return _err(
                    422,
                    f"INVALID_PARAMS: invalid function result for function json string {m.get('name')}",
                )
        fc = m.get("function_call")
        if fc is not None and not (
            isinstance(fc, dict) and isinstance(fc.get("arguments", {}), dict)
        ):
            return _err(422, "Invalid params: function_call.arguments must be an object")
    temp = body.get("temperature")
    if temp is not None and (not isinstance(temp, int | float) or temp <= 0):
        return _err(422, "Invalid params: temperature must be in range (0, +inf)")
    rp = body.get("repetition_penalty")
    if rp is not None and (not isinstance(rp, int | float) or rp <= 0):
        return _err(422, "Invalid params: repetition_penalty must be in range (0, +inf)")
    functions = body.get("functions") or []
    fcall = body.get("function_call")
    if isinstance(fcall, dict) and fcall.get("name") not in {f.get("name") for f in functions}:
        return _err(422, "Invalid params: function_call name is not in functions")
    return None


def _fake_args(schema: Any) -> dict[str, Any]:
    """Arguments for a called function, from its JSON schema's required properties."""
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    out: dict[str, Any] = {}
    for name, spec in props.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        out[name] = {"integer": 3, "number": 1.5, "boolean": True, "array": [], "object": {}}.get(
            str(kind), "Москва"
        )
    return out


def _completion(body: Mapping[str, Any]) -> dict[str, Any]:
    model = str(body["model"])
    messages = body["messages"]
    prompt = sum(tokens_of(str(m.get("content") or "")) for m in messages) + 3 * len(messages)
    last = messages[-1]
    functions = body.get("functions") or []
    fcall = body.get("function_call", "auto")
    message: dict[str, Any] = {"role": "assistant"}
    finish = "stop"
    if functions and fcall != "none" and last.get("role") != "function":
        fn = functions[0]
        if isinstance(fcall, dict):
            fn = next(f for f in functions if f.get("name") == fcall["name"])
        message.update(
            content="",
            function_call={"name": fn["name"], "arguments": _fake_args(fn.get("parameters"))},
            functions_state_id=str(uuid.uuid4()),
        )
        finish = "function_call"
        completion = 12
    else:
        if last.get("role") == "function":
            text = f"Function {last.get('name')} returned {last.get('content')}."
        else:
            user = str(last.get("content") or "")
            text = f"GigaChat emulator reply to: {user}"
            if "[[blacklist]]" in user:
                text, finish = (
                    "Не люблю менять тему разговора, но вот сейчас тот самый случай.",
                    "blacklist",
                )
            elif "[[error]]" in user:
                finish = "error"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and limit > 0 and tokens_of(text) > limit:
            text, finish = text[: limit * 4], "length"
        message["content"] = text
        completion = tokens_of(text)
    return {
        "choices": [{"message": message, "index": 0, "finish_reason": finish}],
        "created": int(time.time()),
        "model": f"{model}:{VERSIONS.get(model, '2.0.28.2')}",
        "object": "chat.completion",
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion, "precached_prompt_tokens": 0},
    }  # fmt: skip


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
    creds = {credentials: None} if isinstance(credentials, str) else dict(credentials)
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
