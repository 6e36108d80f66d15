"""The one exception handler: every failure becomes OpenAI's error envelope with the right status."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from llmgw.errors import (
    DatabaseError,
    InvalidRequest,
    LlmgwError,
    NotFound,
    RateLimited,
    Unavailable,
)
from llmgw.server.scrub import scrub_envelope

__all__ = [
    "envelope",
    "error_code",
    "error_response",
    "exception_handlers",
    "to_llmgw_error",
    "validation_error",
]

log = logging.getLogger("llmgw.server")

_HTTP_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def envelope(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def validation_error(exc: ValidationError) -> InvalidRequest:
    """A pydantic ``ValidationError`` as a 400 naming the first offending parameter."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if not errors:
        return InvalidRequest("invalid request body")
    err = errors[0]
    param = ".".join(str(p) for p in err["loc"]) or None
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "field required"
    text = f"{param}: {msg}" if param else msg
    more = len(errors) - 1
    if more:
        text += f" (and {more} more error{'s' if more > 1 else ''})"
    return InvalidRequest(text, param=param, code="invalid_value")


def to_llmgw_error(exc: BaseException) -> LlmgwError:
    """Any exception as an ``LlmgwError``; unknown ones become a generic 500 without internals."""
    if isinstance(exc, LlmgwError):
        return exc
    if isinstance(exc, ValidationError):
        return validation_error(exc)
    if isinstance(exc, ClientDisconnect):
        gone = LlmgwError("the client closed the connection", code="client_disconnected")
        gone.http_status = 499
        return gone
    if isinstance(exc, HTTPException):
        status = exc.status_code
        err = LlmgwError(_http_message(exc), code=None)
        err.http_status = status
        err.error_type = _HTTP_TYPES.get(status, "api_error")
        return err
    return LlmgwError("internal error", code="internal_error")


def error_code(exc: BaseException) -> str:
    """A short, closed-set name for a failure (usage ``error_type``, metrics label)."""
    if isinstance(exc, asyncio.CancelledError):
        return "client_disconnected"
    err = to_llmgw_error(exc)
    if err.code:
        return err.code
    if isinstance(err, InvalidRequest):
        return "invalid_request"
    if isinstance(err, NotFound):
        return "not_found"
    if isinstance(err, DatabaseError):
        return "database_unavailable"
    if isinstance(err, Unavailable):
        return "unavailable"
    return "internal_error"


def _http_message(exc: HTTPException) -> str:
    if exc.status_code == 404:
        return "no such endpoint"
    if exc.status_code == 405:
        return "method not allowed for this endpoint"
    return str(exc.detail)[:200]


def error_response(exc: BaseException, *, request_id: str | None = None) -> Response:
    """The response for ``exc``: envelope, status, ``WWW-Authenticate`` on 401, ``Retry-After`` on 429."""
    err = to_llmgw_error(exc)
    headers: dict[str, str] = {}
    if err.http_status == 401:
        headers["www-authenticate"] = 'Bearer realm="llmgw"'
    retry = getattr(err, "retry_after", None)
    if isinstance(err, RateLimited) or isinstance(retry, int | float):
        retry = retry if isinstance(retry, int | float) else 1.0
        headers["retry-after"] = str(max(1, math.ceil(retry)))
    if isinstance(err, RateLimited):
        headers.update(err.headers)
    if err.http_status == 413:
        headers["connection"] = "close"  # the rest of the body was not read
    if isinstance(exc, HTTPException) and exc.headers:
        for k, v in exc.headers.items():
            headers.setdefault(k.lower(), v)
    return Response(
        orjson.dumps(scrub_envelope(err.to_openai(), err)),
        status_code=err.http_status,
        headers=headers,
        media_type="application/json",
    )


async def _handle(request: Request, exc: Exception) -> Response:
    return error_response(exc)


def exception_handlers() -> dict[Any, Any]:
    """Handlers for Starlette's ``ExceptionMiddleware``; anything else is caught by our middleware."""
    return {LlmgwError: _handle, ValidationError: _handle, HTTPException: _handle}
