"""The hot-path HTTP client to one upstream: timeouts, a concurrency cap, SSE, error mapping.

One ``Transport`` per upstream owns one keep-alive connection pool (``h1.Pool``, created lazily
inside the running loop; see ``h1`` for why not a general-purpose client). Every call is bounded
by four timeouts:

- ``connect``: opening the TCP (and TLS) connection;
- ``first_byte``: from sending the request until the response headers arrive;
- ``idle``: between two reads of the body (stream chunks, or parts of a JSON body);
- ``total``: the whole call, including the wait for a concurrency slot.

A per-upstream semaphore caps calls in flight (``max_concurrency``, else 1,024); a call that cannot
get a slot within the queue timeout fails with ``RateLimited`` (429, ``Retry-After``). Redirects are
never followed. Errors become ``UpstreamError``/``UpstreamTimeout`` whose messages name the
provider and the failure, never the upstream's body, URL credentials or headers. Non-2xx answers
are returned (``request``) or raised as ``UpstreamStatus`` (``open_stream``) for the adapter to map
with its provider's error format.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncGenerator, Iterable, Mapping
from ssl import SSLContext
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import orjson

from llmgw import __version__
from llmgw.errors import ConfigError, RateLimited, UpstreamError, UpstreamTimeout
from llmgw.providers import h1
from llmgw.providers.tls import default_ssl_context

__all__ = ["Transport", "UpstreamStatus", "parse_json", "redact", "redact_secrets"]

_ACCEPT_JSON = b"Content-Type: application/json\r\nAccept: application/json\r\n"
_ACCEPT_SSE = b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
DEFAULT_MAX_CONNECTIONS = 1024  # calls in flight to one upstream when max_concurrency is unset
_MAX_CACHED_HEADS = 256
# Below common server keep-alive timeouts (uvicorn 5 s): reusing a connection the server is
# closing makes a POST fail, and POSTs are not retried.
KEEPALIVE_SECONDS = 4.0
DRAIN_SECONDS = 0.05
MAX_BODY_BYTES = 256 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 1024 * 1024
MAX_EVENT_BYTES = 16 * 1024 * 1024


def redact(text: str, secrets: Iterable[str] = (), limit: int = 500) -> str:
    """``text`` without the given secrets, bearer tokens or ``sk-``-style keys; one line, capped.

    Cut to ``limit`` characters only *after* redaction: cutting first would turn a secret that
    straddles the cut into a fragment the exact-match step no longer finds.
    """
    text = " ".join(redact_secrets(text, secrets).split())
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def redact_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secrets, bearer tokens, ``sk-``-style keys and URL passwords
    replaced by ``[redacted]``; lines and length kept (log messages, tracebacks)."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "[redacted]")
    text = _BEARER.sub(r"\1 [redacted]", text)
    text = _KEYLIKE.sub(_keylike, text)
    return _URL_PASSWORD.sub(r"\1[redacted]@", text)


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")
_BEARER = re.compile(r"(?i)\b(bearer|basic|api-key|oauth)\s+[^\s'\",]+")
_KEYLIKE = re.compile(r"\b(?:sk|llmgw|key|tok)[-_][A-Za-z0-9_\-]{8,}")
_BACKUP_NAME = re.compile(r"llmgw-\d{8}T\d{12}Z")


def _keylike(match: re.Match[str]) -> str:
    """``[redacted]`` for a key-shaped string, except a backup's file name (``llmgw-<UTC
    stamp>``, storage/backup.py: key-shaped, no secret), so the log says which file was written;
    only matches pay for the look."""
    text = match.group(0)
    return text if _BACKUP_NAME.fullmatch(text) else "[redacted]"


class UpstreamStatus(UpstreamError):
    """An upstream answered a stream request with a non-2xx status; the adapter maps it."""

    def __init__(self, provider: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__(f"upstream {provider} answered HTTP {status}", provider=provider)
        self.status = status
        self.headers = headers
        self.body = body


def parse_json(provider: str, status: int, headers: Mapping[str, str], body: bytes) -> Any:
    """The JSON in ``body``, or an ``UpstreamError`` that describes it without quoting it."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype == "text/html" or body.lstrip()[:1] == b"<":
        what = "an HTML page"
    elif not body:
        what = "an empty body"
    else:
        what = "a body that is not valid JSON"
    raise UpstreamError(
        f"upstream {provider} answered HTTP {status} with {what}", provider=provider
    ) from None


class Transport:
    """HTTP calls to one upstream base URL, with timeouts and a concurrency cap."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        max_concurrency: int | None = None,
        connect_timeout: float = 5.0,
        first_byte_timeout: float = 60.0,
        idle_timeout: float = 30.0,
        total_timeout: float = 600.0,
        queue_timeout: float = 5.0,
        secrets: Iterable[str] = (),
        ssl: SSLContext | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ConfigError(
                f"the base URL of provider {provider} is not an http(s) URL",
                hint="use a URL such as https://api.example.com/v1",
            )
        tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port or (443 if tls else 80)
        self._prefix = parts.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        if port is not None and port != (443 if tls else 80):
            host = f"{host}:{port}"
        fixed = {"Host": host, "User-Agent": f"llmgw/{__version__}"}
        fixed["Accept-Encoding"] = "gzip, deflate"
        if parts.username is not None:  # credentials in the URL: Basic auth, as browsers do
            user = unquote(parts.username)
            cred = f"{user}:{unquote(parts.password or '')}".encode()
            fixed["Authorization"] = "Basic " + base64.b64encode(cred).decode("ascii")
        fixed.update(headers or {})
        self._headers = fixed  # what every call sends before its own headers (tests read it)
        self._fixed_names = frozenset(k.lower() for k in fixed)
        try:
            self._fixed = h1.render_headers(fixed)
        except ValueError:
            raise ConfigError(
                f"a header of provider {provider} has a line break or a character outside Latin-1",
                hint="check the credential for a trailing newline",
            ) from None
        self._heads: dict[tuple[str, str, bool], bytes] = {}
        self._ssl: SSLContext | None = (ssl or default_ssl_context()) if tls else None
        self.max_concurrency = max_concurrency
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.idle_timeout = idle_timeout
        self.total_timeout = total_timeout
        self.queue_timeout = min(queue_timeout, total_timeout)
        self.secrets = tuple(s for s in secrets if s)
        self._pool: h1.Pool | None = None
        self._sem: asyncio.Semaphore | None = None
        self.in_flight = 0
        """Calls holding a slot right now (tests and metrics read it)."""

    # -- plumbing -----------------------------------------------------------------------------

    def _get_pool(self) -> h1.Pool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop or pool.closed:
            pool = self._pool = h1.Pool(
                loop, self._host, self._port, ssl_context=self._ssl, keepalive=KEEPALIVE_SECONDS
            )
            self._sem = asyncio.Semaphore(self.max_concurrency or DEFAULT_MAX_CONNECTIONS)
        return pool

    def _line(self, method: str, path: str) -> bytes:
        """The request line for ``path`` under the base URL's path."""
        target = self._prefix + "/" + path.lstrip("/")
        if any(c in target for c in " \r\n"):
            raise ValueError("a space or line break in the request path")
        return b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), target.encode("utf-8"))

    def _head(self, method: str, path: str, accept: bytes) -> bytes:
        """The request line and header block up to (not including) per-call headers."""
        key = (method, path, accept is _ACCEPT_SSE)
        head = self._heads.get(key)
        if head is None:
            head = self._line(method, path) + self._fixed + accept
            if len(self._heads) >= _MAX_CACHED_HEADS:  # paths that vary per call: no cache bloat
                self._heads.clear()
            self._heads[key] = head
        return head

    def _request_bytes(
        self,
        method: str,
        path: str,
        data: bytes | None,
        headers: Mapping[str, str] | None,
        accept: bytes,
    ) -> bytes:
        """The request's bytes up to the body; ``UpstreamError`` if a header cannot be sent."""
        try:
            if not headers:
                head = self._head(method, path, accept)
            elif self._fixed_names.isdisjoint(map(str.lower, headers)):
                head = self._head(method, path, accept) + h1.render_headers(headers)
            else:  # a call's header replaces the transport's header of the same name
                names = {n.lower() for n in headers}
                merged = {k: v for k, v in self._headers.items() if k.lower() not in names}
                merged.update(headers)
                head = self._line(method, path) + h1.render_headers(merged) + accept
        except ValueError:  # CR/LF, or a character outside Latin-1 (UnicodeEncodeError)
            raise UpstreamError(
                f"refused to send an invalid request header or path to {self.provider} "
                "(a line break or a character outside Latin-1)",
                provider=self.provider,
            ) from None
        if data is None:
            if method == "GET":
                return head + b"\r\n"
            return head + b"Content-Length: 0\r\n\r\n"  # some servers answer 411 without it
        return head + b"Content-Length: %d\r\n\r\n" % len(data)

    async def _acquire(self) -> float:
        """Wait for a concurrency slot; return the loop-clock deadline of the whole call."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        sem = self._sem
        assert sem is not None
        if sem.locked():
            try:
                async with asyncio.timeout(self.queue_timeout):
                    await sem.acquire()
            except TimeoutError:
                raise RateLimited(
                    f"upstream {self.provider} is at its concurrency limit "
                    f"({self.max_concurrency or DEFAULT_MAX_CONNECTIONS}); try again shortly",
                    retry_after=1.0,
                    local=True,  # our cap, not the upstream's: don't charge its breaker
                ) from None
        else:
            await sem.acquire()
        self.in_flight += 1
        return start + self.total_timeout

    def _release(self) -> None:
        self.in_flight -= 1
        if self._sem is not None:
            self._sem.release()

    def _error(self, exc: h1.H1Error, phase: str) -> UpstreamError:
        """Map a client failure to the error tree; ``phase`` is 'headers' or 'body'."""
        p = self.provider
        if isinstance(exc, h1.ConnectTimeout):
            return UpstreamTimeout(
                f"timed out connecting to {p} after {self.connect_timeout:g}s", provider=p
            )
        if isinstance(exc, h1.ReadTimeout):
            if exc.phase == "headers":
                return UpstreamTimeout(
                    f"{p} sent no response within {self.first_byte_timeout:g}s", provider=p
                )
            return UpstreamTimeout(
                f"{p} went silent for {self.idle_timeout:g}s in the middle of a response",
                provider=p,
            )
        if isinstance(exc, h1.TotalTimeout):
            return UpstreamTimeout(
                f"{p} did not finish within the total timeout of {self.total_timeout:g}s",
                provider=p,
            )
        if isinstance(exc, h1.TLSVerifyError):
            return UpstreamError(f"the TLS certificate of {p} could not be verified", provider=p)
        if isinstance(exc, h1.TLSError):
            return UpstreamError(f"the TLS handshake with {p} failed", provider=p)
        if isinstance(exc, h1.ConnectError):
            return UpstreamError(f"cannot connect to {p}", provider=p)
        if isinstance(exc, h1.BodyTooLarge):
            return UpstreamError(f"upstream {p} sent an oversized body", provider=p)
        if isinstance(exc, h1.Disconnected):
            if phase == "headers":
                return UpstreamError(f"{p} closed the connection before answering", provider=p)
            return UpstreamError(
                f"connection to {p} was lost in the middle of a response", provider=p
            )
        return UpstreamError(f"upstream {p} sent an invalid HTTP answer", provider=p)

    def _redirect(self, status: int) -> UpstreamError:
        return UpstreamError(
            f"upstream {self.provider} answered with a redirect (HTTP {status}); "
            "redirect not followed",
            provider=self.provider,
            hint="check the provider's base_url",
        )

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None,
        headers: Mapping[str, str] | None,
        accept: bytes,
        deadline: float,
    ) -> h1.Connection:
        """Open (or reuse) a connection, send the request, wait for the answer's headers."""
        data = orjson.dumps(body) if isinstance(body, dict) else body
        head = self._request_bytes(method, path, data, headers, accept)
        pool = self._pool
        assert pool is not None
        loop = pool.loop
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise h1.TotalTimeout("the call's deadline passed")
        conn = await pool.acquire(min(self.connect_timeout, remaining))
        conn.start(
            head,
            data,
            cap=MAX_BODY_BYTES,
            error_cap=MAX_ERROR_BODY_BYTES,
            first_byte=self.first_byte_timeout,
            idle=self.idle_timeout,
            deadline=deadline,
        )
        try:
            await conn.headers()
        except BaseException:
            conn.close()
            raise
        return conn

    # -- public calls -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One call; returns ``(status, headers, body)`` for any non-3xx status."""
        pool = self._get_pool()
        deadline = await self._acquire()
        phase = "headers"
        conn: h1.Connection | None = None
        try:
            conn = await self._send(method, path, body, headers, _ACCEPT_JSON, deadline)
            status = conn.status
            if 300 <= status < 400:
                raise self._redirect(status)
            phase = "body"
            data = await conn.read_all()
            result = status, h1.Headers(conn.raw_headers), data
            pool.release(conn)
            conn = None
            return result
        except h1.H1Error as exc:
            raise self._error(exc, phase) from None
        finally:
            if conn is not None:
                conn.close()
            self._release()

    async def post_json(
        self, path: str, body: bytes | dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """``POST`` a JSON body; returns ``(status, headers, body)``."""
        return await self.request("POST", path, body, headers)

    async def get_json(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """``GET`` a JSON resource; returns ``(status, headers, body)``."""
        return await self.request("GET", path, None, headers)

    async def open_stream(
        self,
        path: str,
        body: bytes | dict[str, Any],
        headers: Mapping[str, str] | None = None,
        *,
        framing: Literal["sse", "lines"] = "sse",
    ) -> AsyncGenerator[bytes, None]:
        """``POST`` and yield the stream's payloads.

        ``framing="sse"``: the data of each SSE event until ``[DONE]`` (the answer must be
        ``text/event-stream``). ``framing="lines"``: each non-blank line of a newline-delimited
        JSON body until the upstream closes it (the YandexGPT native stream).

        A non-2xx answer raises ``UpstreamStatus`` (with the capped body) before anything is
        yielded. Closing the generator early (``aclose()``, or the consumer being cancelled) closes
        the upstream connection, which cancels the upstream generation, and frees the slot.
        """
        pool = self._get_pool()
        accept = _ACCEPT_SSE if framing == "sse" else _ACCEPT_JSON
        deadline = await self._acquire()
        conn: h1.Connection | None = None
        finished = False
        phase = "headers"
        try:
            try:
                conn = await self._send("POST", path, body, headers, accept, deadline)
                status = conn.status
                if 300 <= status < 400:
                    raise self._redirect(status)
                phase = "body"
                resp_headers = h1.Headers(conn.raw_headers)
                if status >= 300:
                    err = await conn.read_all()
                    raise UpstreamStatus(self.provider, status, resp_headers, err)
                ctype = resp_headers.get("Content-Type", "") or ""
                if framing == "sse" and not ctype.startswith("text/event-stream"):
                    raise UpstreamError(
                        f"upstream {self.provider} did not answer with an event stream",
                        provider=self.provider,
                    )
            except h1.H1Error as exc:
                raise self._error(exc, phase) from None
            reader = self._events(conn) if framing == "sse" else self._lines(conn)
            async with contextlib.aclosing(reader) as payloads:
                async for payload in payloads:
                    yield payload
            # Line streams end at EOF; SSE ends at [DONE], and the rest of the body is drained.
            finished = True if framing == "lines" else await self._drain(conn)
        finally:
            if conn is not None:
                if finished:
                    pool.release(conn)
                else:
                    conn.close()  # drop the connection: the upstream stops generating
            self._release()

    async def _drain(self, conn: h1.Connection) -> bool:
        """Read what follows ``[DONE]`` (the end of the chunked body) so the connection is reused.

        The end normally arrives right behind ``[DONE]``; an upstream that is slower than
        ``DRAIN_SECONDS`` gets its connection closed instead of delaying the client's stream end.
        """
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                for _ in range(16):
                    if conn.complete:
                        return True
                    if not await conn.read_some():
                        return conn.complete
        except (h1.H1Error, TimeoutError):
            pass
        return False

    async def _chunks(self, conn: h1.Connection) -> AsyncGenerator[bytes, None]:
        """The body's bytes as they arrive, until its end."""
        while True:
            try:
                chunk = await conn.read_some()
            except h1.H1Error as exc:
                raise self._error(exc, "body") from None
            if not chunk:
                return
            yield chunk

    async def _lines(self, conn: h1.Connection) -> AsyncGenerator[bytes, None]:
        """Each non-blank line of the body, until the upstream ends it."""
        buf = bytearray()
        async for chunk in self._chunks(conn):
            buf += chunk
            while (i := buf.find(b"\n")) >= 0:
                line = bytes(buf[:i]).strip()
                del buf[: i + 1]
                if line:
                    yield line
            if len(buf) > MAX_EVENT_BYTES:
                raise UpstreamError(
                    f"upstream {self.provider} sent an oversized stream line",
                    provider=self.provider,
                )
        if buf.strip():
            yield bytes(buf).strip()

    async def _events(self, conn: h1.Connection) -> AsyncGenerator[bytes, None]:
        """SSE events' data from the body (multi-line data joined with newlines)."""
        buf = bytearray()
        data: list[bytes] = []
        events = 0
        async for chunk in self._chunks(conn):
            buf += chunk
            while True:
                i = buf.find(b"\n")
                if i < 0:
                    if len(buf) > MAX_EVENT_BYTES:
                        raise UpstreamError(
                            f"upstream {self.provider} sent an oversized stream event",
                            provider=self.provider,
                        )
                    break
                line = bytes(buf[:i])
                del buf[: i + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if not line:
                    if data:
                        payload = data[0] if len(data) == 1 else b"\n".join(data)
                        data = []
                        if payload == b"[DONE]":
                            if events == 0:
                                raise self._no_events()
                            return
                        events += 1
                        yield payload
                elif line.startswith(b"data:"):
                    value = line[5:]
                    data.append(value[1:] if value[:1] == b" " else value)
                # comments (":"), "event:", "id:" and "retry:" lines carry nothing we relay
        if data and data != [b"[DONE]"]:
            yield b"\n".join(data)
            events += 1
        if events == 0:
            raise self._no_events()

    def _no_events(self) -> UpstreamError:
        return UpstreamError(
            f"upstream {self.provider} ended the stream without any event", provider=self.provider
        )

    async def aclose(self) -> None:
        """Close the pool's idle connections; calls in flight close theirs when they end."""
        if self._pool is not None:
            self._pool.close()
        self._pool = None
