"""Limits on receiving a request, below ASGI: a receipt deadline (slowloris: 408) and header limits (431).

uvicorn bounds only the idle time between requests (``timeout_keep_alive``, reset by every byte),
so a client that sends its headers or body a byte at a time holds a connection, and once the
headers are in, an ASGI task, for as long as it likes. ``ReceiptTimeoutProtocol`` is uvicorn's
httptools protocol with two deadlines, each ``[server] request_receipt_timeout`` long:

* headers: from the first byte of a request until its headers are complete;
* body: from then until the body is complete (its clock starts when the sweep below first sees
  the headers complete, so a body may get up to one sweep period more).

When one passes and the app has not started its response, the client gets ``408`` with OpenAI's
error envelope and ``Connection: close``, and the connection closes (the app, if it was waiting
for the body, sees a disconnect). When the app already answered (say a 401 before the body was
read), the connection just closes. Time between requests is not counted (``timeout_keep_alive``
covers it), nor is anything after the body: a long streaming response is unaffected. A
connection on which no request has begun at all is closed silently after ``timeout_keep_alive``,
the same bound as an idle keep-alive connection (uvicorn itself would keep it forever). The clock
does not run against the client while uvicorn has stopped reading (flow control, pipelining) or
while the client waits for ``100 Continue``.

Header limits (security catalogue IN-1): a request head (request line plus headers) larger than
``[server] max_header_bytes`` (default 64 KiB) or with more than ``max_headers`` header lines
(default 100) gets ``431`` with OpenAI's error envelope and ``Connection: close``, before any
ASGI task exists (so before authentication). httptools buffers a header until it is complete,
so the bytes of a head still arriving are counted as they are read: a client sending 1 MB
headers is cut off after about ``max_header_bytes`` plus one socket read, and memory per
connection stays bounded. Once a head is complete its exact size (URL plus names and values)
is checked only when the bytes read for it exceeded the limit: a normal request pays one addition
per read and one comparison per request.

Cost on the hot path: no timers per request. The protocol stores ``loop.time()`` when a request
begins (one wrapped parser callback); everything else happens in one timer per server
(``_Sweeper``), which walks the open connections every ``min(1, timeout / 10)`` seconds (at least
0.1 s) and stops when none are left. A deadline therefore fires up to one period late.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from llmgw.errors import HeadersTooLarge, LlmgwError, RequestTimeout

__all__ = ["ReceiptStats", "ReceiptTimeoutProtocol", "receipt_protocol"]

log = logging.getLogger("llmgw.server.receipt")


_FRESH, _HEADERS, _BODY = "fresh", "headers", "body"
_BODY_SINCE = "_llmgw_rx_since"  # set on uvicorn's RequestResponseCycle by the sweep


class ReceiptStats:
    """Counters of one server (plain attributes, updated on the event loop, read by the metrics)."""

    __slots__ = ("fresh_idle_closed", "headers_too_large", "timeouts")

    def __init__(self) -> None:
        self.timeouts = 0
        """Requests whose headers or body did not arrive within the deadline (408 or close)."""
        self.headers_too_large = 0
        """Requests refused with 431: head over ``max_header_bytes`` or ``max_headers`` lines."""
        self.fresh_idle_closed = 0
        """Connections closed because no request began within ``timeout_keep_alive``."""


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _error_response(default_headers: list[tuple[bytes, bytes]], err: LlmgwError) -> bytes:
    """A complete ``Connection: close`` response carrying ``err`` in OpenAI's error envelope."""
    body = orjson.dumps(err.to_openai())
    status = err.http_status
    head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
    for name, value in default_headers:
        head += [name, b": ", value, b"\r\n"]
    head += [
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(head)


def _response_408(default_headers: list[tuple[bytes, bytes]], what: str, timeout: float) -> bytes:
    err = RequestTimeout(f"The request {what} did not arrive within {timeout:g} seconds.")
    return _error_response(default_headers, err)


class _HeadersTooLarge(Exception):  # noqa: N818 - a signal out of the parser, not an error
    """Raised from a parser callback to stop parsing once the 431 has been sent."""


class _Sweeper:
    """One timer per server: closes the connections whose current phase has run out of time.

    The protocol records only when a request began (``_rx_since``); the phase is read here from
    uvicorn's own state: no ``scope`` yet is a fresh connection, a ``cycle`` that is not the
    current request's means its headers are still coming, a current cycle with ``more_body`` is
    receiving its body (the body's clock starts when a sweep first sees it, at most one period
    late), and without ``more_body`` the request is in, so nothing is timed until the next one.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, server_state: ServerState, timeout: float
    ) -> None:
        self.loop = loop
        self.connections = server_state.connections
        self.timeout = timeout
        self.period = max(0.1, min(1.0, timeout / 10))
        self._handle: asyncio.TimerHandle | None = None

    def ensure_running(self) -> None:
        if self._handle is None:
            self._handle = self.loop.call_later(self.period, self.sweep)

    def sweep(self) -> None:
        self._handle = None
        now = self.loop.time()
        timeout = self.timeout
        expired: list[tuple[ReceiptTimeoutProtocol, str]] = []
        for conn in self.connections:
            if not isinstance(conn, ReceiptTimeoutProtocol) or conn._rx_since is None:
                continue  # not ours, or nothing to time
            since = conn._rx_since
            cycle = conn.cycle
            if conn.scope is None:  # no request has begun on this connection
                if now - since >= conn.timeout_keep_alive:
                    expired.append((conn, _FRESH))
            elif cycle is None or cycle.scope is not conn.scope:  # headers still coming
                if now - since < timeout:
                    pass
                elif conn.flow.read_paused:
                    conn._rx_since = now  # uvicorn is not reading: the client is not the slow one
                elif cycle is not None and not cycle.response_complete:
                    pass  # pipelined behind a response in progress: judged once that is done
                else:
                    expired.append((conn, _HEADERS))
            elif not cycle.more_body:
                conn._rx_since = None  # request received: nothing to time until the next one
            elif (body_since := getattr(cycle, _BODY_SINCE, None)) is None:
                setattr(cycle, _BODY_SINCE, now)  # first sight of this body: its clock starts now
            elif now - body_since >= timeout:
                # (A body that arrived after the app had answered leaves more_body set, as
                # uvicorn stops tracking it; such a connection is closed here, which also bounds
                # it: the body's bytes cancelled uvicorn's keep-alive timer and nothing re-arms it.)
                if conn.flow.read_paused or cycle.waiting_for_100_continue:
                    setattr(cycle, _BODY_SINCE, now)  # we are not reading, or the client waits
                else:
                    expired.append((conn, _BODY))
        for conn, phase in expired:
            conn._receipt_expired(phase)
        if self.connections:
            self._handle = self.loop.call_later(self.period, self.sweep)


class ReceiptTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request-receipt deadlines (see the module docstring)."""

    receipt_timeout: float = 30.0
    """Seconds allowed for the headers, and again for the body (``receipt_protocol`` sets it)."""
    max_header_bytes: int = 64 * 1024
    """Largest request head (URL plus header names and values) accepted; bigger is 431."""
    max_headers: int = 100
    """Most header lines in a request; more is 431."""
    stats: ReceiptStats
    """Where the deadlines are counted (set by ``receipt_protocol``: the app's own counters)."""
    closing: bool = False
    """Set on the class when the server drains: every response from then on ends its connection
    (``Connection: close``), so a proxy stops reusing it instead of racing its close."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Two attributes only: uvicorn's protocol has 28 (with ``url``), and past 30 CPython
        # stops sharing instance-dict keys, which made every attribute access on the hot path slower.
        self._rx_since: float | None = None
        """``loop.time()`` when the current request (or the connection) began; None: not timed."""
        self._head: int | None = 0
        """Bytes read for the current request head; None once the head is complete (body)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._rx_since = self.loop.time()
        state = self.server_state
        sweeper: _Sweeper | None = getattr(state, "_llmgw_receipt_sweeper", None)
        if sweeper is None or sweeper.loop is not self.loop:
            sweeper = _Sweeper(self.loop, state, self.receipt_timeout)
            state._llmgw_receipt_sweeper = sweeper  # type: ignore[attr-defined]
        sweeper.ensure_running()

    def on_message_begin(self) -> None:
        """The parser saw a request's first byte: the only per-request cost (a clock read)."""
        HttpToolsProtocol.on_message_begin(self)
        self._rx_since = self.loop.time()

    def data_received(self, data: bytes) -> None:
        """uvicorn's ``data_received``, counting the bytes of a head still arriving."""
        head = self._head
        if head is not None:
            self._head = head = head + len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport.is_closing():  # we stopped the parser after answering 431
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        head = self._head
        if head is not None and (
            head > self.max_header_bytes or len(self.headers or ()) > self.max_headers
        ):
            # Still inside a head after this read, and it is already over a limit: stop here
            # rather than let httptools buffer the rest of a huge header.
            self._refuse_head()

    def on_headers_complete(self) -> None:
        """Check the complete head against the limits, then let uvicorn start the request."""
        head = self._head
        self._head = None
        if len(self.headers) > self.max_headers or (
            head is not None
            and head > self.max_header_bytes
            and len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            > self.max_header_bytes
        ):
            self._refuse_head()
            raise _HeadersTooLarge
        HttpToolsProtocol.on_headers_complete(self)
        if self.closing and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        """The request is in; the next bytes are the next request's head."""
        HttpToolsProtocol.on_message_complete(self)
        self._head = 0

    def _refuse_head(self) -> None:
        """431 with the envelope, and close: the head is over ``max_header_bytes``/``max_headers``."""
        self._head = None
        self._rx_since = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.stats.headers_too_large += 1
        err = HeadersTooLarge(
            f"The request headers are larger than {self.max_header_bytes} bytes "
            f"or more than {self.max_headers} lines."
        )
        transport.write(_error_response(self.server_state.default_headers, err))
        transport.close()

    def _receipt_expired(self, phase: str) -> None:
        """``phase`` ran out of time: 408 unless the app has answered, then close."""
        self._rx_since = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if phase == _FRESH:
            self.stats.fresh_idle_closed += 1
            transport.close()
            return
        self.stats.timeouts += 1
        cycle = self.cycle
        answered = phase == _BODY and cycle.response_started
        if phase == _BODY and not answered:
            # The app may be waiting in receive(): it gets http.disconnect, and whatever it
            # sends from now on is dropped (uvicorn ignores sends on a disconnected cycle).
            cycle.disconnected = True
            cycle.message_event.set()
        if not answered:
            transport.write(
                _response_408(self.server_state.default_headers, phase, self.receipt_timeout)
            )
        log.debug(
            "request %s not received within %gs from %s; closing",
            phase,
            self.receipt_timeout,
            self.client,
        )
        transport.close()


def receipt_protocol(
    timeout: float,
    stats: ReceiptStats | None = None,
    *,
    max_header_bytes: int = 64 * 1024,
    max_headers: int = 100,
) -> type[ReceiptTimeoutProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``: ``timeout`` seconds per phase,
    request heads up to ``max_header_bytes`` and ``max_headers`` lines, counted in ``stats``
    (the app's ``Metrics.receipt``; a fresh one when not given)."""
    return type(
        "ReceiptTimeoutProtocol",
        (ReceiptTimeoutProtocol,),
        {
            "receipt_timeout": float(timeout),
            "max_header_bytes": int(max_header_bytes),
            "max_headers": int(max_headers),
            "stats": stats if stats is not None else ReceiptStats(),
            "__module__": __name__,
        },
    )
