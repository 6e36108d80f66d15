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
    AuthError,
    ClientDisconnected,
    DatabaseError,
    InvalidModelName,
    InvalidRequest,
    LlmgwError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    Unavailable,
)
from llmgw.server.scrub import Scrubber

__all__ = [
    "error_body",
    "error_code",
    "error_response",
    "exception_handlers",
    "to_llmgw_error",
    "validation_error",
]

log = logging.getLogger("llmgw.server")

# Starlette's own HTTPExceptions (routing's 404 and 405, mostly) as classes of the error tree.
_HTTP_ERRORS: dict[int, type[LlmgwError]] = {
    400: InvalidRequest,
    401: AuthError,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    429: RateLimited,
}


_BAD_NAME = frozenset({"string_pattern_mismatch", "string_too_long", "string_too_short"})


def validation_error(exc: ValidationError) -> InvalidRequest:
    """A pydantic ``ValidationError`` as a 400 naming the first offending parameter."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if not errors:
        return InvalidRequest("invalid request body")
    err = errors[0]
    param = ".".join(str(p) for p in err["loc"]) or None
    msg = err["msg"]
    if param == "model" and err["type"] in _BAD_NAME:
        return InvalidModelName()
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
        return ClientDisconnected("the client closed the connection")
    if isinstance(exc, HTTPException):
        cls = _HTTP_ERRORS.get(exc.status_code)
        if cls is not None:
            err = cls(_http_message(exc))
            err.code = None  # not one of ours: the class's default code would mislead
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


def error_body(exc: BaseException, scrubber: Scrubber) -> bytes:
    """The JSON envelope for ``exc``, scrubbed: the one serialisation of every error answer and
    final SSE error event (the envelope itself is ``LlmgwError.to_openai``)."""
    return orjson.dumps(scrubber.envelope(to_llmgw_error(exc)))


def error_response(exc: BaseException, scrubber: Scrubber, *, hint: bool = False) -> Response:
    """The response for ``exc``: envelope, status, ``WWW-Authenticate`` on 401, ``Retry-After`` on
    429; ``hint`` adds the error's hint to the envelope (the admin API: see ``Scrubber.envelope``)."""
    err = to_llmgw_error(exc)
    headers: dict[str, str] = {}
    if err.http_status == 401:
        headers["www-authenticate"] = 'Bearer realm="llmgw"'
    retry = err.retry_after
    if isinstance(err, RateLimited) or retry is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry or 1.0)))
    if isinstance(err, RateLimited):
        headers.update(err.headers)
    if err.http_status == 413:
        headers["connection"] = "close"  # the rest of the body was not read
    if isinstance(exc, HTTPException) and exc.headers:
        for k, v in exc.headers.items():
            headers.setdefault(k.lower(), v)
    return Response(
        orjson.dumps(scrubber.envelope(err, hint=hint)),
        status_code=err.http_status,
        headers=headers,
        media_type="application/json",
    )


def exception_handlers(scrubber: Scrubber) -> dict[Any, Any]:
    """Handlers for Starlette's ``ExceptionMiddleware``; anything else is caught by our middleware."""

    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(exc, scrubber)

    return {LlmgwError: handle, ValidationError: handle, HTTPException: handle}
