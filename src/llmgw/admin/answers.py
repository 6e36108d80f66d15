"""How an answer from ``/admin/v1`` that is not a success becomes the ``LlmgwError`` local mode
raises: by the OpenAI envelope's ``error.type`` (and status where the type is broad), with the
server's message and the server's hint (the admin API adds ``error.hint`` where the error has
one), so a remote command fails with the same exit code and hint line as a local one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from llmgw.errors import (
    AuthError,
    Conflict,
    DatabaseError,
    LlmgwError,
    ModelNotFound,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
    UsageError,
)

__all__ = ["error_from_answer", "unreachable_reason"]


# error.type of the OpenAI envelope -> the class local mode raises (by status where type is
# too broad: invalid_request_error is 400 UsageError or 404 ModelNotFound, api_error is 5xx).
_BY_TYPE: dict[str, type[LlmgwError]] = {
    "authentication_error": AuthError,
    "permission_error": PermissionDenied,
    "not_found_error": NotFound,
    "conflict_error": Conflict,
    "rate_limit_error": RateLimited,
}
_BY_STATUS: dict[int, type[LlmgwError]] = {
    400: UsageError,
    401: AuthError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: UsageError,
    422: UsageError,
    429: RateLimited,
    502: UpstreamError,
    504: UpstreamTimeout,
}


def error_from_answer(
    status: int, body: Any, url: str, *, retry_after: str | None = None
) -> LlmgwError:
    """The ``LlmgwError`` for an error answer ``status`` with ``body`` from the server at ``url``.

    ``body`` is the decoded JSON (an OpenAI error envelope from llmgw) or anything else (a proxy's
    page, an older server without the admin API).
    """
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping) or not isinstance(err.get("message"), str):
        if status == 404:
            return NotFound(
                f"the server at {url} has no admin API (HTTP 404)",
                hint="check --url (the gateway's base address) and that the server runs an llmgw "
                "with /admin/v1",
            )
        plain = _BY_STATUS.get(status, Unavailable if status == 503 else LlmgwError)
        return plain(f"the server at {url} answered HTTP {status}")
    message = str(err["message"])
    code = err.get("code") if isinstance(err.get("code"), str) else None
    param = err.get("param") if isinstance(err.get("param"), str) else None
    etype = err.get("type")
    cls: type[LlmgwError] | None = _BY_TYPE.get(etype) if isinstance(etype, str) else None
    if cls is None:
        if status == 503:
            cls = DatabaseError if code == "database_unavailable" else Unavailable
        elif status == 404 and code == "model_not_found":
            cls = ModelNotFound
        else:
            cls = _BY_STATUS.get(status, LlmgwError)
    # Our own hint first where the remote case needs other advice (a token, the server's
    # database), else the server's, which is the one local mode prints.
    server_hint = err.get("hint") if isinstance(err.get("hint"), str) else None
    hint = _HINTS.get(cls) or server_hint or None
    if cls is RateLimited:
        seconds = _seconds(retry_after)
        exc: LlmgwError = RateLimited(message, retry_after=seconds, hint=hint, param=param)
        if code is not None:
            exc.code = code
        return exc
    return cls(message, hint=hint, param=param, code=code)


_HINTS: dict[type[LlmgwError], str] = {
    AuthError: "pass an admin's API key with --token or LLMGW_TOKEN",
    PermissionDenied: "the admin API needs a key whose user has the admin role "
    "(`llmgw users set-role EMAIL admin` on the server's database)",
    RateLimited: "the server rate-limits the admin API like any route; retry later",
    DatabaseError: "the server cannot reach its database; see its /readyz and logs",
}


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def unreachable_reason(exc: httpx.HTTPError) -> str:
    """Why a request failed, in a few words (never the request's headers)."""
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service" in text or "nodename" in text or "getaddrinfo" in text:
            return "unknown host"
        if "ssl" in text or "certificate" in text:
            return "TLS handshake failed"
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection closed without an answer (is it an HTTP llmgw server?)"
    return type(exc).__name__
