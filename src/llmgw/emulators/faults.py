"""Fault injection shared by the GigaChat and YandexGPT emulators (500s, hangs, bad bodies...)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any, Literal, get_args

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

__all__ = ["FAULTS", "Fault", "fault_response", "json_response"]

Fault = Literal["500", "429", "timeout", "invalid_json", "html", "redirect", "echo_credentials"]
"""What a faulty emulator answers instead of the real thing.

- ``500``: the provider's own 500 body; ``429``: its rate-limit body;
- ``timeout``: waits ``hang_seconds`` before answering (the client should give up first);
- ``invalid_json``: 200 with a truncated JSON body; ``html``: a 502 HTML error page (a proxy in the way);
- ``redirect``: 302 to another host (a client must not follow it with credentials);
- ``echo_credentials``: a 500 whose body repeats the request's Authorization header and body.
"""

FAULTS: tuple[str, ...] = get_args(Fault)

_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact UTF-8 JSON response (``ensure_ascii=False``, as both real services send)."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(
        data, status_code=status, media_type="application/json; charset=utf-8", headers=headers
    )


async def fault_response(
    fault: str | None,
    request: Request,
    *,
    fail_rate: float,
    rng: random.Random,
    error_500: Callable[[], Response],
    error_429: Callable[[], Response],
    hang_seconds: float,
) -> Response | None:
    """The response a fault calls for, or ``None`` to answer normally."""
    if fault is None and fail_rate > 0 and rng.random() < fail_rate:
        fault = "500"
    if fault is None:
        return None
    if fault == "500":
        return error_500()
    if fault == "429":
        return error_429()
    if fault == "timeout":
        await asyncio.sleep(hang_seconds)
        return error_500()
    if fault == "invalid_json":
        return Response(
            b'{"choices": [{"message": {"role": "assistant", "content": "cut',
            media_type="application/json",
        )
    if fault == "html":
        return Response(_HTML, status_code=502, media_type="text/html")
    if fault == "redirect":
        return RedirectResponse("http://127.0.0.1:9/moved" + request.url.path, status_code=302)
    if fault == "echo_credentials":
        body = (await request.body()).decode(errors="replace")
        auth = request.headers.get("authorization", "")
        return JSONResponse(
            {
                "status": 500,
                "message": f"internal error; request was Authorization: {auth} body: {body}",
            },
            status_code=500,
        )
    raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
