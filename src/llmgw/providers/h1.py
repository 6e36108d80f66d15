"""A lean HTTP/1.1 client for the hot path: a keep-alive pool per upstream and the llhttp parser.

``Transport`` calls one upstream thousands of times a second with small JSON bodies. A general
client spends most of its time on per-request objects (request and response wrappers, header
multidicts, cookie and tracing hooks, timer contexts); this one writes one pre-rendered header
block, feeds the answer to ``httptools`` (llhttp, the parser uvicorn uses) and keeps nothing else.

What it does:

- HTTP/1.1 over TCP or TLS (``ssl.SSLContext``, verification as configured by the caller), one
  request at a time per connection, keep-alive with an idle limit (``keepalive``), most recently
  used connection first; a connection is reused only after a complete answer that allows it.
- Bodies delimited by ``Content-Length``, chunked encoding or connection close; ``gzip`` and
  ``deflate`` (zlib or raw) content codings decoded on the fly (others fail); 1xx answers skipped.
- Timeouts per phase, armed with one loop timer: connecting, waiting for the answer's headers
  (``first_byte``), silence between body reads (``idle``), and an absolute deadline for the whole
  call. A timeout aborts the connection.
- A body cap per answer (on the decoded size); flow control on streamed bodies (reading pauses
  above a high-water mark, and the idle timeout does not run while we are the ones not reading).
- Header values are checked for CR/LF (no header injection from, say, a token an upstream sent).

It raises only ``H1Error`` subclasses, whose messages never contain URLs, headers or bodies;
``Transport`` maps them onto the gateway's error tree.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from collections.abc import Iterator, Mapping
from typing import Literal

import httptools

__all__ = [
    "BodyTooLarge",
    "ConnectError",
    "ConnectTimeout",
    "Connection",
    "Disconnected",
    "H1Error",
    "Headers",
    "Pool",
    "ProtocolError",
    "ReadTimeout",
    "TLSError",
    "TLSVerifyError",
    "TotalTimeout",
]

HIGH_WATER = 256 * 1024  # streamed body bytes buffered before reading pauses
_CRLF = ("\r", "\n")


class H1Error(Exception):
    """Any failure of an HTTP call; the message names the failure, never the exchange's content."""


class ConnectError(H1Error):
    """The TCP connection could not be opened (refused, unreachable, name not resolved)."""


class TLSVerifyError(ConnectError):
    """The server's TLS certificate did not verify."""


class TLSError(ConnectError):
    """The TLS handshake failed for another reason."""


class ConnectTimeout(H1Error):
    """Opening the connection took longer than the connect timeout."""


class ReadTimeout(H1Error):
    """No answer headers within the first-byte timeout, or silence longer than the idle timeout."""

    def __init__(self, phase: Literal["headers", "body"]) -> None:
        super().__init__(f"read timeout while waiting for the {phase}")
        self.phase = phase


class TotalTimeout(H1Error):
    """The call's absolute deadline passed."""


class Disconnected(H1Error):
    """The server closed the connection before the answer was complete."""


class ProtocolError(H1Error):
    """The answer was not valid HTTP/1.1, or used a content coding we cannot decode."""


class BodyTooLarge(H1Error):
    """The answer's body is larger than the cap the caller set."""


class Headers(Mapping[str, str]):
    """An answer's headers: case-insensitive lookup, built from the raw pairs on first use."""

    __slots__ = ("_map", "raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self._map: dict[str, str] | None = None

    def _index(self) -> dict[str, str]:
        m = self._map
        if m is None:
            m = {}
            for k, v in self.raw:
                name = k.decode("latin-1").lower()
                value = v.decode("latin-1")
                m[name] = f"{m[name]}, {value}" if name in m else value
            self._map = m
        return m

    def __getitem__(self, key: str) -> str:
        return self._index()[key.lower()]

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        """The value of ``key`` (repeated headers joined with ``, ``), else ``default``."""
        return self._index().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index()

    def __iter__(self) -> Iterator[str]:
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())

    def __repr__(self) -> str:  # names only: values may carry cookies or tokens
        return f"Headers({sorted(self._index())})"


def check_header(name: str, value: str) -> None:
    """Refuse a header that would split the request (CR or LF in its name or value)."""
    if any(c in name or c in value for c in _CRLF) or ":" in name or not name:
        raise ValueError(f"invalid character in the {name[:40]!r} header")


def render_headers(headers: Mapping[str, str]) -> bytes:
    """``headers`` as the lines of a request's header block, each ending with CRLF."""
    parts = []
    for name, value in headers.items():
        check_header(name, value)
        parts.append(f"{name}: {value}\r\n")
    return "".join(parts).encode("latin-1")


class Connection(asyncio.Protocol):
    """One keep-alive connection: the parser's callbacks fill in the answer of the current call."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.active = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.length_known = False
        self.decoder: zlib._Decompress | None = None
        self.sniff = False  # deflate: the first body byte tells the zlib format from raw deflate
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.received = 0
        self.cap = 0
        self.error_cap = 0
        self.exc: H1Error | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        # timeouts: one timer, re-armed lazily from the time of the last read
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = 0.0
        self.phase: Literal["headers", "body"] = "headers"
        self.first_byte = 0.0
        self.idle = 0.0
        self.deadline = 0.0
        self.last_read = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if not self.active:  # bytes on an idle connection: it cannot be trusted with a call
            self.close()
            self.pool.forget(self)
            return
        self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols"))
        except httptools.HttpParserError:
            if self.complete:  # bytes after the complete answer: keep it, drop the connection
                self.keep_alive = False
                self.close()
            elif self.exc is None:  # not a failure raised from one of our callbacks
                self._fail(ProtocolError("the server sent an invalid HTTP answer"))
        if (
            self.phase == "body"
            and not self.complete
            and self.exc is None
            and self.timer_due > self.last_read + self.idle
        ):
            self._cancel_timer()  # the headers are in: from now on the idle timeout applies
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.complete or self.exc is not None:
            return
        if self.headers_done and not self.length_known and exc is None:
            self.on_message_complete()  # a body delimited by the connection's close
            self.keep_alive = False
            return
        self._fail(Disconnected("the server closed the connection"))

    def pause_writing(self) -> None:  # request bodies are small; nothing to throttle
        pass

    def resume_writing(self) -> None:
        pass

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: stop before it touches the first
            raise httptools.HttpParserError("data after the answer")
        self.raw_headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        self.headers_done = True
        self.phase = "body"
        if status >= 400:
            self.cap = self.error_cap
        for name, value in self.raw_headers:
            lname = name.lower()
            if lname == b"content-length" or lname == b"transfer-encoding":
                self.length_known = True
            elif lname == b"content-encoding":
                self._decoder_for(value.strip().lower())
        if status == 204 or status == 304:
            self.length_known = True
        self._wake()

    def _decoder_for(self, coding: bytes) -> None:
        if coding == b"gzip" or coding == b"x-gzip":
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == b"deflate":
            self.decoder = zlib.decompressobj()
            self.sniff = True
        elif coding not in (b"identity", b""):
            self._fail(ProtocolError("the server used a content coding llmgw cannot decode"))

    def on_body(self, body: bytes) -> None:
        if self.decoder is not None:
            if self.sniff:  # zlib data starts with CM=8; some servers send raw deflate instead
                self.sniff = False
                if body[0] & 0x0F != 8:
                    self.decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                # at most one byte over the cap: a small compressed body must not inflate unbounded
                body = self.decoder.decompress(body, self.cap - self.received + 1)
            except zlib.error:
                self._fail(ProtocolError("the server sent a corrupt compressed body"))
                raise httptools.HttpParserError("corrupt body") from None
            if not body:
                return
        self.received += len(body)
        if self.received > self.cap:
            self._fail(BodyTooLarge("the answer's body is over the size limit"))
            raise httptools.HttpParserError("body too large")
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.headers_done:  # the end of an interim 1xx answer
            return
        if self.decoder is not None:
            rest = self.decoder.flush()
            if rest:
                self.body.append(rest)
                self.received += len(rest)
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._cancel_timer()
        self._wake()

    # -- the current call ---------------------------------------------------------------------

    def _wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def _fail(self, exc: H1Error) -> None:
        if self.exc is None:
            self.exc = exc
        self._cancel_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _arm(self) -> None:
        """Set the timer for the current phase: first byte, else idle, capped by the deadline."""
        due = self.first_byte if self.phase == "headers" else self.last_read + self.idle
        self.timer_due = min(due, self.deadline)
        self.timer = self.loop.call_at(self.timer_due, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.complete or self.exc is not None:
            return
        now = self.loop.time()
        if now >= self.deadline:
            self._fail(TotalTimeout("the call's deadline passed"))
        elif self.phase == "headers":
            if now >= self.first_byte:
                self._fail(ReadTimeout("headers"))
            else:
                self._arm()
        elif self.paused:  # we stopped reading (a slow consumer): the silence is ours
            self.last_read = now
            self._arm()
        elif now >= self.last_read + self.idle:
            self._fail(ReadTimeout("body"))
        else:
            self._arm()  # there was a read since the timer was set: wait from that read

    def start(
        self,
        head: bytes,
        body: bytes | None,
        *,
        cap: int,
        error_cap: int,
        first_byte: float,
        idle: float,
        deadline: float,
    ) -> None:
        """Send one request and arm its timeouts (times on the loop's clock)."""
        self._reset()
        self.active = True
        self.cap, self.error_cap = cap, error_cap
        now = self.loop.time()
        self.last_read = now
        self.first_byte = now + first_byte
        self.idle = idle
        self.deadline = deadline
        assert self.transport is not None
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        self._arm()

    async def wait(self) -> None:
        """Until the parser has news (headers, body bytes, the end) or the call failed."""
        if self.exc is not None:
            raise self.exc
        w = self.waiter = self.loop.create_future()
        try:
            await w
        except asyncio.CancelledError:
            self._fail(Disconnected("the call was cancelled"))
            raise
        if self.exc is not None:
            raise self.exc

    async def headers(self) -> None:
        """Until the answer's status and headers are in."""
        while not self.headers_done:
            await self.wait()

    async def read_all(self) -> bytes:
        """The whole body (the caller already has the headers)."""
        while not self.complete:
            self._resume()
            await self.wait()
        body = self.body
        self.body = collections.deque()
        self.buffered = 0
        if len(body) == 1:
            return body[0]
        return b"".join(body)

    async def read_some(self) -> bytes:
        """The body bytes buffered so far, waiting for some; ``b""`` at the end of the body."""
        while not self.body:
            if self.complete:
                return b""
            self._resume()
            await self.wait()
        chunks = self.body
        self.body = collections.deque()
        self.buffered = 0
        self._resume()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.last_read = self.loop.time()  # the idle timeout counts from reading again
            self.transport.resume_reading()

    def close(self) -> None:
        """Drop the connection (the call ended early, or the pool is closing)."""
        self._cancel_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Pool:
    """Keep-alive connections to one origin, most recently used first."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        keepalive: float,
    ) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.ssl = ssl_context
        self.keepalive = keepalive
        self.idle: list[Connection] = []
        self.closed = False

    async def acquire(self, connect_timeout: float) -> Connection:
        """A live idle connection, else a new one (``ConnectError``/``ConnectTimeout``/TLS errors)."""
        now = self.loop.time()
        idle = self.idle
        while idle:
            conn = idle.pop()
            t = conn.transport
            if conn.closed or t is None or t.is_closing() or now - conn.idle_since > self.keepalive:
                conn.close()
                continue
            return conn
        return await self._connect(connect_timeout)

    async def _connect(self, seconds: float) -> Connection:
        try:
            async with asyncio.timeout(seconds):
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None,
                )
        except TimeoutError:
            raise ConnectTimeout("timed out opening the connection") from None
        except ssl.SSLCertVerificationError:
            raise TLSVerifyError("the server's certificate did not verify") from None
        except ssl.SSLError:
            raise TLSError("the TLS handshake failed") from None
        except OSError:
            raise ConnectError("cannot connect") from None
        return conn

    def release(self, conn: Connection) -> None:
        """Give ``conn`` back after a complete answer; it is closed unless it can be reused."""
        if self.closed or conn.closed or not conn.complete or not conn.keep_alive:
            conn.close()
            return
        conn._cancel_timer()
        conn.active = False
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    def forget(self, conn: Connection) -> None:
        """``conn`` was closed (by either side): never hand it out again."""
        if self.idle and conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        """Close the idle connections; connections in use close when their call ends."""
        self.closed = True
        while self.idle:
            self.idle.pop().close()
