"""The hot-path HTTP client to one upstream: aiohttp, timeouts, a concurrency cap, SSE, error mapping.

One ``Transport`` per upstream owns one ``aiohttp.ClientSession`` (created lazily inside the running
loop) with keep-alive connections. Every call is bounded by four timeouts:

- ``connect``: opening the TCP (and TLS) connection;
- ``first_byte``: from sending the request until the response headers arrive;
- ``idle``: between two reads of the body (stream chunks, or parts of a JSON body);
- ``total``: the whole call, including the wait for a concurrency slot.

A per-upstream semaphore caps calls in flight; a call that cannot get a slot within the queue
timeout fails with ``RateLimited`` (429, ``Retry-After``). Redirects are never followed. Errors
become ``UpstreamError``/``UpstreamTimeout`` whose messages name the provider and the failure, never
the upstream's body, URL credentials or headers. Non-2xx answers are returned (``request``) or raised
as ``UpstreamStatus`` (``open_stream``) for the adapter to map with its provider's error format.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from ssl import SSLContext
from typing import Any, Literal

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from llmgw import __version__
from llmgw.errors import ConfigError, RateLimited, UpstreamError, UpstreamTimeout

__all__ = ["Transport", "UpstreamStatus", "parse_json", "redact", "ssl_context"]

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_SSE_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
_LINES_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# Below common server keep-alive timeouts (uvicorn 5 s): reusing a connection the server is
# closing makes a POST fail, and POSTs are not retried.
KEEPALIVE_SECONDS = 4.0
DRAIN_SECONDS = 0.05
MAX_BODY_BYTES = 256 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 1024 * 1024
MAX_EVENT_BYTES = 16 * 1024 * 1024
# A call that got its slot within this many seconds shares one ClientTimeout with the full total.
_TIMEOUT_SLACK = 0.01


def redact(text: str, secrets: Iterable[str] = (), limit: int = 500) -> str:
    """``text`` without the given secrets, bearer tokens or ``sk-``-style keys; one line, capped.

    Cut to ``limit`` characters only *after* redaction: cutting first would turn a secret that
    straddles the cut into a fragment the exact-match step no longer finds.
    """
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "[redacted]")
    text = _BEARER.sub(r"\1 [redacted]", text)
    text = _KEYLIKE.sub("[redacted]", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


_BEARER = re.compile(r"(?i)\b(bearer|basic|api-key|oauth)\s+[^\s'\",]+")
_KEYLIKE = re.compile(r"\b(?:sk|llmgw|key|tok)[-_][A-Za-z0-9_\-]{8,}")


def ssl_context(ca_bundle: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A verifying TLS context: the system's CAs plus ``ca_bundle`` (PEM) when given.

    Verification is never switched off; a missing or unreadable bundle is a ``ConfigError``.
    """
    ctx = ssl.create_default_context()
    if ca_bundle is not None:
        try:
            ctx.load_verify_locations(cafile=os.fspath(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the CA bundle {os.fspath(ca_bundle)}: {type(exc).__name__}",
                hint="ca_bundle must be a readable PEM file of CA certificates",
            ) from None
    return ctx


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
        self._headers = {"User-Agent": f"llmgw/{__version__}", **(headers or {})}
        self.max_concurrency = max_concurrency
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.idle_timeout = idle_timeout
        self.total_timeout = total_timeout
        self.queue_timeout = min(queue_timeout, total_timeout)
        self.secrets = tuple(s for s in secrets if s)
        self._ssl = ssl
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self._urls: dict[str, URL] = {}
        self._full_timeout: aiohttp.ClientTimeout | None = None
        self.in_flight = 0
        """Calls holding a slot right now (tests and metrics read it)."""

    # -- plumbing -----------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            limit = self.max_concurrency or 1024
            connector = aiohttp.TCPConnector(
                limit=limit,
                limit_per_host=0,
                keepalive_timeout=KEEPALIVE_SECONDS,
                ttl_dns_cache=300,
                ssl=self._ssl if self._ssl is not None else True,  # True: verify with system CAs
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                # An upstream's cookies must not be sent on other callers' requests; skipping
                # the jar also saves its per-request filtering and parsing.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                trust_env=False,  # proxies come from config, not from the environment
                read_bufsize=2**16,
            )
            self._loop = loop
            self._sem = asyncio.Semaphore(self.max_concurrency) if self.max_concurrency else None
        return self._session

    def url(self, path: str) -> URL:
        """The absolute URL of ``path`` under the base URL (cached)."""
        u = self._urls.get(path)
        if u is None:
            u = URL(self.base_url + "/" + path.lstrip("/"))
            self._urls[path] = u
        return u

    async def _acquire(self) -> float:
        """Wait for a concurrency slot; return the monotonic deadline of the whole call."""
        start = time.monotonic()
        sem = self._sem
        if sem is not None:
            if sem.locked():
                try:
                    async with asyncio.timeout(self.queue_timeout):
                        await sem.acquire()
                except TimeoutError:
                    raise RateLimited(
                        f"upstream {self.provider} is at its concurrency limit "
                        f"({self.max_concurrency}); try again shortly",
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

    def _timeout(self, deadline: float) -> aiohttp.ClientTimeout:
        remaining = deadline - time.monotonic()
        full = self._full_timeout
        if full is not None and remaining >= self.total_timeout - _TIMEOUT_SLACK:
            return full  # no wait for a slot: the usual case, one shared object
        t = aiohttp.ClientTimeout(
            total=max(0.001, remaining),
            sock_connect=self.connect_timeout,
            sock_read=self.first_byte_timeout,
        )
        if full is None and remaining >= self.total_timeout - _TIMEOUT_SLACK:
            self._full_timeout = t
        return t

    def _error(self, exc: BaseException, phase: str) -> UpstreamError:
        """Map an aiohttp/asyncio failure to the error tree; ``phase`` is 'headers' or 'body'."""
        p = self.provider
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return UpstreamTimeout(
                f"timed out connecting to {p} after {self.connect_timeout:g}s", provider=p
            )
        if isinstance(exc, aiohttp.SocketTimeoutError):
            if phase == "headers":
                return UpstreamTimeout(
                    f"{p} sent no response within {self.first_byte_timeout:g}s", provider=p
                )
            return UpstreamTimeout(
                f"{p} went silent for {self.idle_timeout:g}s in the middle of a response",
                provider=p,
            )
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(
                f"{p} did not finish within the total timeout of {self.total_timeout:g}s",
                provider=p,
            )
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return UpstreamError(f"the TLS certificate of {p} could not be verified", provider=p)
        if isinstance(exc, aiohttp.ClientSSLError):
            return UpstreamError(f"the TLS handshake with {p} failed", provider=p)
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamError(f"cannot connect to {p}", provider=p)
        if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
            if phase == "headers":
                return UpstreamError(f"{p} closed the connection before answering", provider=p)
            return UpstreamError(
                f"connection to {p} was lost in the middle of a response", provider=p
            )
        if isinstance(exc, aiohttp.TooManyRedirects | aiohttp.InvalidURL):
            return UpstreamError(f"bad upstream URL or redirect for {p}", provider=p)
        return UpstreamError(f"request to {p} failed ({type(exc).__name__})", provider=p)

    def _redirect(self, status: int) -> UpstreamError:
        return UpstreamError(
            f"upstream {self.provider} answered with a redirect (HTTP {status}); "
            "redirect not followed",
            provider=self.provider,
            hint="check the provider's base_url",
        )

    async def _read(self, resp: aiohttp.ClientResponse, cap: int) -> bytes:
        if resp.content_length is not None and resp.content_length > cap:
            raise UpstreamError(
                f"upstream {self.provider} sent an oversized body", provider=self.provider
            )
        parts: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > cap:
                raise UpstreamError(
                    f"upstream {self.provider} sent an oversized body", provider=self.provider
                )
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _switch_to_idle(self, resp: aiohttp.ClientResponse) -> None:
        """After the headers, the read timeout becomes the idle timeout between body reads."""
        conn = resp.connection
        if conn is not None and conn.protocol is not None and not resp.content.is_eof():
            conn.protocol.read_timeout = self.idle_timeout
            conn.protocol.start_timeout()

    # -- public calls -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """One call; returns ``(status, headers, body)`` for any non-3xx status."""
        session = self._get_session()
        data = orjson.dumps(body) if isinstance(body, dict) else body
        hdrs = _JSON_HEADERS if headers is None else {**_JSON_HEADERS, **headers}
        deadline = await self._acquire()
        phase = "headers"
        try:
            async with session.request(
                method,
                self.url(path),
                data=data,
                headers=hdrs,
                allow_redirects=False,
                timeout=self._timeout(deadline),
            ) as resp:
                if 300 <= resp.status < 400:
                    raise self._redirect(resp.status)
                phase = "body"
                self._switch_to_idle(resp)
                cap = MAX_BODY_BYTES if resp.status < 400 else MAX_ERROR_BODY_BYTES
                return resp.status, resp.headers, await self._read(resp, cap)
        except UpstreamError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._error(exc, phase) from None
        finally:
            self._release()

    async def post_json(
        self, path: str, body: bytes | dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """``POST`` a JSON body; returns ``(status, headers, body)``."""
        return await self.request("POST", path, body, headers)

    async def get_json(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
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
        session = self._get_session()
        data = orjson.dumps(body) if isinstance(body, dict) else body
        base = _SSE_HEADERS if framing == "sse" else _LINES_HEADERS
        hdrs = base if headers is None else {**base, **headers}
        deadline = await self._acquire()
        resp: aiohttp.ClientResponse | None = None
        finished = False
        phase = "headers"
        try:
            try:
                resp = await session.request(
                    "POST",
                    self.url(path),
                    data=data,
                    headers=hdrs,
                    allow_redirects=False,
                    timeout=self._timeout(deadline),
                )
                if 300 <= resp.status < 400:
                    raise self._redirect(resp.status)
                phase = "body"
                self._switch_to_idle(resp)
                if resp.status >= 300:
                    err = await self._read(resp, MAX_ERROR_BODY_BYTES)
                    raise UpstreamStatus(self.provider, resp.status, resp.headers, err)
                ctype = resp.headers.get("Content-Type", "")
                if framing == "sse" and not ctype.startswith("text/event-stream"):
                    raise UpstreamError(
                        f"upstream {self.provider} did not answer with an event stream",
                        provider=self.provider,
                    )
            except UpstreamError:
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._error(exc, phase) from None
            reader = self._events(resp) if framing == "sse" else self._lines(resp)
            async with contextlib.aclosing(reader) as payloads:
                async for payload in payloads:
                    yield payload
            # Line streams end at EOF; SSE ends at [DONE], and the rest of the body is drained.
            finished = True if framing == "lines" else await self._drain(resp)
        finally:
            if resp is not None:
                if finished:
                    resp.release()
                else:
                    resp.close()  # drop the connection: the upstream stops generating
            self._release()

    async def _drain(self, resp: aiohttp.ClientResponse) -> bool:
        """Read what follows ``[DONE]`` (the end of the chunked body) so the connection is reused.

        The end normally arrives right behind ``[DONE]``; an upstream that is slower than
        ``DRAIN_SECONDS`` gets its connection closed instead of delaying the client's stream end.
        """
        reader = resp.content
        if reader.at_eof():
            return True
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                for _ in range(16):
                    if reader.at_eof():
                        return True
                    if not await reader.readany():
                        return reader.at_eof()
        except (aiohttp.ClientError, TimeoutError):
            pass
        return False

    async def _lines(self, resp: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
        """Each non-blank line of ``resp``'s body, until the upstream closes it."""
        buf = bytearray()
        while True:
            try:
                chunk = await resp.content.readany()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._error(exc, "body") from None
            if not chunk:
                break
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

    async def _events(self, resp: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
        """SSE events' data from ``resp`` (multi-line data joined with newlines)."""
        buf = bytearray()
        data: list[bytes] = []
        events = 0
        reader = resp.content
        while True:
            try:
                chunk = await reader.readany()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._error(exc, "body") from None
            if not chunk:
                break
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
        """Close the session and its connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
