"""The loopback redirect listener of ``llmgw login`` (RFC 8252 §7.3, §8.3).

A one-shot HTTP server on ``127.0.0.1`` and a port the OS picks, reachable from this machine only.
It waits, for a bounded time, for the browser to come back to ``/callback`` with the ``state``
this login sent:

- the right ``state`` and a ``code``: done; the browser gets a "you can close this tab" page;
- the right ``state`` and an ``error``: the login fails with the server's error code;
- a wrong or missing ``state``: answered 400 and ignored (another page, or an attacker trying to
  slip in their own code, must not complete or abort this login), counted for the final message;
- any other path or method: 404 / 405.

It serves requests one at a time in the calling thread; each connection may take at most
``READ_TIMEOUT`` seconds, so a client that connects and says nothing cannot hold the login.
"""

from __future__ import annotations

import hmac
import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["CALLBACK_PATH", "Callback", "LoopbackListener", "LoopbackTimeout"]

CALLBACK_PATH = "/callback"
READ_TIMEOUT = 5.0
"""Seconds one connection may take to send its request."""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llmgw login</title></head>
<body><main><h1>{title}</h1><p>{text}</p></main></body></html>
"""


@dataclass(frozen=True)
class Callback:
    """What the browser brought back with the right ``state``."""

    code: str | None
    error: str | None
    error_description: str | None

    def __repr__(self) -> str:  # the code is a credential until redeemed
        return f"Callback(error={self.error!r})"


class LoopbackTimeout(Exception):
    """No callback with the right ``state`` arrived in time (``wrong_state`` others did)."""

    def __init__(self, wrong_state: int) -> None:
        super().__init__("no answer from the browser in time")
        self.wrong_state = wrong_state


class _Server(HTTPServer):
    expected_state: str
    result: Callback | None
    wrong_state: int


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = READ_TIMEOUT  # socket timeout for this connection
    server_version = "llmgw-login"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Silent: the query string holds the authorization code."""

    def _page(self, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")  # the code is in this page's URL
        self.send_header("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """The redirect from the authorization server."""
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self._page(404, "Not found", "This address only takes the llmgw login redirect.")
            return
        query = parse_qs(parts.query, keep_blank_values=True)

        def one(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values and len(values) == 1 else None

        state = one("state")
        srv = self.server
        if (
            srv.result is not None
            or state is None
            or not hmac.compare_digest(state.encode(), srv.expected_state.encode())
        ):
            srv.wrong_state += 1
            self._page(
                400,
                "Not this login",
                "This answer does not belong to the llmgw login in progress, so it was ignored. "
                "Start the login again with `llmgw login` if you meant to sign in.",
            )
            return
        error, code = one("error"), one("code")
        if error is not None:
            srv.result = Callback(None, error, one("error_description"))
            self._page(
                200,
                "Login not completed",
                f"The server answered: {error}. You can close this tab; the terminal says more.",
            )
            return
        if not code:
            srv.result = Callback(None, "invalid_request", "the redirect carried no code")
            self._page(400, "Login not completed", "The redirect carried no code.")
            return
        srv.result = Callback(code, None, None)
        self._page(200, "Logged in", "llmgw login is complete. You can close this tab.")

    def _refuse(self) -> None:
        self._page(405, "Method not allowed", "Only GET is answered here.")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse


class LoopbackListener:
    """Listens on ``http://127.0.0.1:<port>/callback`` for one login's redirect.

    Use as a context manager; ``redirect_uri`` is what the authorization request names.
    """

    def __init__(self, state: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.expected_state = state
        self._server.result = None
        self._server.wrong_state = 0
        self._clock = clock

    @property
    def port(self) -> int:
        """The port the OS gave the listener."""
        return int(self._server.server_address[1])

    @property
    def redirect_uri(self) -> str:
        """``http://127.0.0.1:<port>/callback`` (the IP literal, never ``localhost``: §8.3)."""
        return f"http://127.0.0.1:{self.port}{CALLBACK_PATH}"

    @property
    def wrong_state(self) -> int:
        """How many requests with a wrong or missing ``state`` were refused so far."""
        return self._server.wrong_state

    def wait(self, timeout: float) -> Callback:
        """The first callback with the right ``state``; ``LoopbackTimeout`` after ``timeout`` s."""
        deadline = self._clock() + timeout
        while self._server.result is None:
            left = deadline - self._clock()
            if left <= 0:
                raise LoopbackTimeout(self._server.wrong_state)
            self._server.timeout = min(left, 0.5)
            self._server.handle_request()
        return self._server.result

    def close(self) -> None:
        """Stop listening."""
        self._server.server_close()

    def __enter__(self) -> LoopbackListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
