"""The request body, read once at the edge: size limit, JSON object, one validation into a model."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import Receive, Scope

from llmgw.errors import ClientDisconnected, InvalidRequest, PayloadTooLarge
from llmgw.schemas import FORBIDDEN_FIELDS
from llmgw.server.errors import validation_error

__all__ = ["decode_json", "parse", "read_json", "receive_body"]

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object: 413 over ``limit`` (by header or while reading), 400 if not JSON."""
    return decode_json(await receive_body(request.scope, request.receive, limit))


async def receive_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The raw request body from the ASGI ``receive``: 413 over ``limit`` (by header or while
    reading), 400 for a bad ``Content-Length``, ``ClientDisconnected`` when the client hangs up."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise InvalidRequest("invalid Content-Length header")
            if int(value) > limit:
                raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
            break
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        raw: bytes = message.get("body", b"")  # the usual case: the whole body in one message
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        return raw
    parts: list[bytes] = []
    size = 0
    while True:
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnected("the client closed the connection while sending")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        if chunk:
            parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)
        message = await receive()


def decode_json(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object; 400 with a precise message when it is empty or not one."""
    if not raw:
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("request body is not valid UTF-8") from None
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    return data


def parse(cls: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` into ``cls`` once; steering fields and schema errors give 400."""
    if not FORBIDDEN_FIELDS.isdisjoint(data):
        field = sorted(FORBIDDEN_FIELDS.intersection(data))[0]
        raise InvalidRequest(
            f"field {field!r} is not accepted: the gateway chooses the upstream and its credentials",
            param=field,
            code="forbidden_field",
        )
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
