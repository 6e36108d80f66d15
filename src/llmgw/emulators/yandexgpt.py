"""A local YandexGPT (Foundation Models v1 REST) plus the IAM token exchange, on one port.

Formats follow the shared reference ``yandexgpt.md``: the ``{"result": ...}`` wrapper, int64 counts as
strings, ``modelVersion`` per branch, the native stream as newline-delimited JSON objects each holding
the whole text so far, ``toolCallList`` with object arguments, the ``{"error": {grpcCode, httpCode,
message, httpStatus, details}}`` envelope, and the per-model concurrency gauge answered with 429.

Markers in the last user message steer a reply: ``[[rewrite]]`` (the stream rewrites earlier text
before finishing), ``[[content_filter]]`` (the final chunk is a content-filter replacement),
``[[stream_error]]`` (an ``{"error": ...}`` line after two chunks; a 500 without streaming).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llmgw.emulators.faults import fault_response, json_response
from llmgw.emulators.yandexgpt_replies import (
    EMBED_DIM,
    EMBED_MODELS,
    FILTERED_TEXT,
    MODEL_VERSIONS,
    api_error,
    plan,
    tokens_of,
    validate,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_FOLDER",
    "EMBED_DIM",
    "FILTERED_TEXT",
    "IAM_AUDIENCE",
    "MODEL_VERSIONS",
    "YandexGPTEmulator",
    "create_app",
    "make_service_account_key",
]

DEFAULT_FOLDER = "b1gemulatorfolder0001"
DEFAULT_API_KEY = "AQVNemulator-api-key-0000000000000000000"
IAM_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"


def make_service_account_key(
    *, service_account_id: str = "ajeemulatorsvcacc0001", key_id: str | None = None
) -> dict[str, str]:
    """A new authorized key in ``yc iam key create`` JSON shape (RSA 2048, private key included)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return {
        "id": key_id or "aje" + secrets.token_hex(9)[:17],
        "service_account_id": service_account_id,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "key_algorithm": "RSA_2048",
        "public_key": public,
        "private_key": pem,
    }


@dataclass
class _Iam:
    folder: str | None  # None: a service-account token (the SA's folder applies)
    expires_at: float


@dataclass
class YandexGPTEmulator:
    """The emulator's switches and counters; tests may change switches while it runs."""

    folder_id: str
    api_keys: set[str]
    sa_keys: dict[str, tuple[str, str]]
    """Authorized key id -> (service account id, public key PEM)."""
    iam_token_ttl: float = 12 * 3600.0
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    max_concurrency: int = 10
    """Concurrent generations per model (the ``SessionsCount`` gauge quota)."""
    fault: str | None = None
    iam_fault: str | None = None
    hang_seconds: float = 30.0
    iam_calls: int = 0
    api_calls: int = 0
    last_headers: dict[str, str] = field(default_factory=dict)
    """Authorization scheme and x-folder-id of the last API call (never the credential)."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    iam_tokens: dict[str, _Iam] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    def add_user_iam_token(self, folder: str, ttl: float = 3600.0) -> str:
        """Register a user-account IAM token (it needs ``x-folder-id``); returns it."""
        token = "t1." + secrets.token_urlsafe(64)
        self.iam_tokens[token] = _Iam(folder, time.time() + ttl)
        return token

    def expire_tokens(self) -> None:
        """Make every issued IAM token expired."""
        for t in self.iam_tokens.values():
            t.expires_at = 0.0


def _iam_err(status: int, code: int, message: str) -> Response:
    return json_response({"code": code, "message": message, "details": []}, status)


def _headers(request: Request) -> dict[str, str]:
    h = {
        "x-request-id": str(uuid.uuid4()),
        "x-server-trace-id": secrets.token_hex(8),
        "server": "ycalb",
    }
    if request.headers.get("x-client-request-id"):
        h["x-client-request-id"] = request.headers["x-client-request-id"]
    return h


class _App:
    def __init__(self, emu: YandexGPTEmulator) -> None:
        self.emu = emu

    async def _fault(self, fault: str | None, request: Request) -> Response | None:
        quota = f"ai.textGenerationCompletionSessionsCount.count gauge quota limit exceed: allowed {self.emu.max_concurrency} requests"
        return await fault_response(
            fault,
            request,
            fail_rate=self.emu.fail_rate,
            rng=self.emu.rng,
            error_500=lambda: api_error(500, "Internal server error"),
            error_429=lambda: api_error(429, quota),
            hang_seconds=self.emu.hang_seconds,
        )

    async def _sleep(self) -> None:
        if self.emu.latency_ms > 0:
            await asyncio.sleep(self.emu.latency_ms / 1000)

    # -- IAM -----------------------------------------------------------------------------------
    async def iam_tokens(self, request: Request) -> Response:
        emu = self.emu
        faulty = await self._fault(emu.iam_fault, request)
        if faulty is not None:
            return faulty
        try:
            body = json.loads(await request.body())
            assertion = body["jwt"]
            header = jwt.get_unverified_header(assertion)
        except (ValueError, KeyError, TypeError, jwt.PyJWTError):
            return _iam_err(400, 3, "Exactly one of jwt or yandexPassportOauthToken must be set")
        if header.get("alg") != "PS256":
            return _iam_err(400, 3, "JWT alg must be PS256")
        known = emu.sa_keys.get(str(header.get("kid")))
        if known is None:
            return _iam_err(401, 16, "Key not found")
        sa_id, public = known
        try:
            claims = jwt.decode(
                assertion, public, algorithms=["PS256"], audience=IAM_AUDIENCE, issuer=sa_id,
                options={"require": ["iss", "aud", "iat", "exp"]},
            )  # fmt: skip
        except jwt.PyJWTError as exc:
            return _iam_err(401, 16, f"JWT is invalid: {type(exc).__name__}")
        if int(claims["exp"]) - int(claims["iat"]) > 3600:
            return _iam_err(400, 3, "JWT lifetime must not exceed 1 hour")
        token = "t1." + secrets.token_urlsafe(64)
        expires = time.time() + emu.iam_token_ttl
        emu.iam_tokens[token] = _Iam(None, expires)
        emu.iam_calls += 1
        expires_at = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        return json_response({"iamToken": token, "expiresAt": expires_at})

    # -- API plumbing --------------------------------------------------------------------------
    async def _gate(self, request: Request) -> Response | None:
        emu = self.emu
        scheme, _, cred = request.headers.get("authorization", "").partition(" ")
        header_folder = request.headers.get("x-folder-id")
        emu.last_headers = {"scheme": scheme, "x-folder-id": header_folder or ""}
        if not cred:
            return api_error(401, "IAM token or API key has to be passed in request")
        if scheme == "Api-Key":
            if cred not in emu.api_keys:
                return api_error(401, "Unknown api key")
            if header_folder and header_folder != emu.folder_id:
                return api_error(400, "Specified folder ID does not match with service account")
        elif scheme == "Bearer":
            tok = emu.iam_tokens.get(cred)
            if tok is None or tok.expires_at <= time.time():
                return api_error(401, "The token is invalid or has expired")
            if tok.folder is not None and not header_folder:
                return api_error(400, "You have to specify folder ID for user account")
            if header_folder and header_folder != (tok.folder or emu.folder_id):
                return api_error(400, "Specified folder ID does not match with service account")
        else:
            return api_error(401, "IAM token or API key has to be passed in request")
        emu.api_calls += 1
        faulty = await self._fault(emu.fault, request)
        if faulty is not None:
            return faulty
        return None

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return json_response(
                {"error": str(exc), "code": 3, "message": str(exc), "details": []}, 400
            )
        if not isinstance(body, dict):
            return api_error(400, "request body must be a JSON object")
        self.emu.requests.append(body)
        del self.emu.requests[:-50]
        return body

    def _parse_uri(
        self, uri: Any, scheme: str, known: Mapping[str, Any]
    ) -> tuple[str, str] | Response:
        if not isinstance(uri, str) or not uri.startswith(scheme + "://"):
            return api_error(400, "Failed to parse model URI")
        parts = uri[len(scheme) + 3 :].split("/")
        if len(parts) not in (2, 3) or not all(parts):
            return api_error(400, "Failed to parse model URI")
        folder, name, branch = parts[0], parts[1], parts[2] if len(parts) == 3 else "latest"
        if folder != self.emu.folder_id:
            return api_error(403, "Permission to [resource-manager.folder " + folder + "] denied")
        if name not in known or branch not in ("latest", "rc", "deprecated"):
            return api_error(400, "invalid model_uri")
        return name, branch

    # -- completion ----------------------------------------------------------------------------
    async def completion(self, request: Request) -> Response:
        early = await self._gate(request)
        if early is not None:
            return early
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        parsed = self._parse_uri(body.get("modelUri"), "gpt", MODEL_VERSIONS)
        if isinstance(parsed, Response):
            return parsed
        problem = validate(body)
        if problem is not None:
            return problem
        name, branch = parsed
        n = self.emu.in_flight.get(name, 0)
        if n >= self.emu.max_concurrency:
            msg = f"ai.textGenerationCompletionSessionsCount.count gauge quota limit exceed: allowed {self.emu.max_concurrency} requests"
            return api_error(429, msg)
        self.emu.in_flight[name] = n + 1
        chunks = plan(body, name, branch)
        if (body.get("completionOptions") or {}).get("stream"):
            return StreamingResponse(
                self._stream(chunks, name), media_type="application/json", headers=_headers(request)
            )
        try:
            await self._sleep()
            if "error" in chunks[-1]:
                return json_response(chunks[-1], chunks[-1]["error"]["httpCode"], _headers(request))
            return json_response({"result": chunks[-1]}, 200, _headers(request))
        finally:
            self.emu.in_flight[name] -= 1

    async def _stream(self, plan: list[dict[str, Any]], name: str) -> AsyncIterator[bytes]:
        try:
            await self._sleep()
            for chunk in plan:
                line = chunk if "error" in chunk else {"result": chunk}
                yield json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                if self.emu.latency_ms > 0:
                    await asyncio.sleep(self.emu.latency_ms / 4000)
        finally:
            self.emu.in_flight[name] -= 1

    async def embedding(self, request: Request) -> Response:
        early = await self._gate(request)
        if early is not None:
            return early
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        parsed = self._parse_uri(body.get("modelUri"), "emb", EMBED_MODELS)
        if isinstance(parsed, Response):
            return parsed
        text = body.get("text")
        if not isinstance(text, str) or not text:
            return api_error(400, "text must be a non-empty string")
        await self._sleep()
        seed = int.from_bytes(hashlib.sha256((parsed[0] + text).encode()).digest()[:8], "big")
        rng = random.Random(seed)  # noqa: S311 - deterministic fake vectors
        vec = [round(rng.uniform(-0.2, 0.2), 6) for _ in range(EMBED_DIM)]
        out = {
            "embedding": vec,
            "numTokens": str(tokens_of(text)),
            "modelVersion": EMBED_MODELS[parsed[0]],
        }
        return json_response(out, 200, _headers(request))


def create_app(
    *,
    folder_id: str = DEFAULT_FOLDER,
    api_keys: Sequence[str] = (DEFAULT_API_KEY,),
    service_account_keys: Sequence[Mapping[str, str]] = (),
    iam_token_ttl: float = 12 * 3600.0,
    latency_ms: float = 0.0,
    fail_rate: float = 0.0,
    max_concurrency: int = 10,
    fault: str | None = None,
    iam_fault: str | None = None,
    hang_seconds: float = 30.0,
    seed: int = 0,
) -> Starlette:
    """The YandexGPT emulator; ``app.state.emulator`` is its ``YandexGPTEmulator``.

    ``service_account_keys``: authorized keys (``yc iam key create`` JSON; only ``id``,
    ``service_account_id`` and ``public_key`` are read) whose PS256 JWTs ``/iam/v1/tokens`` accepts.
    """
    emu = YandexGPTEmulator(
        folder_id=folder_id, api_keys=set(api_keys),
        sa_keys={k["id"]: (k["service_account_id"], k["public_key"]) for k in service_account_keys},
        iam_token_ttl=iam_token_ttl, latency_ms=latency_ms, fail_rate=fail_rate,
        max_concurrency=max_concurrency, fault=fault, iam_fault=iam_fault, hang_seconds=hang_seconds,
        rng=random.Random(seed),  # noqa: S311
    )  # fmt: skip
    h = _App(emu)
    app = Starlette(
        routes=[
            Route("/iam/v1/tokens", h.iam_tokens, methods=["POST"]),
            Route("/foundationModels/v1/completion", h.completion, methods=["POST"]),
            Route("/foundationModels/v1/textEmbedding", h.embedding, methods=["POST"]),
        ]
    )
    app.state.emulator = emu
    return app
