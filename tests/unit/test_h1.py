"""The HTTP/1.1 client (``h1`` under ``Transport``) against raw asyncio servers that write exact bytes.

Each upstream here is ``asyncio.start_server`` with a hand-written handler, so a test decides every
byte on the wire: keep-alive and connection reuse, close-delimited and chunked bodies, content
codings, body caps, interim answers, header injection, unsolicited bytes, flow control, timeouts
and what the request itself looks like.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import orjson
import pytest

from llmgw.errors import ConfigError, UpstreamError, UpstreamTimeout
from llmgw.providers import h1, transport
from llmgw.providers.transport import Transport, UpstreamStatus

pytestmark = pytest.mark.timeout(20)

READ_SIZE = 256 * 1024  # the most one socket read hands the protocol (asyncio's and uvloop's)


# -- raw upstreams ----------------------------------------------------------------------------


class Peer:
    """One accepted connection, seen from the server."""

    def __init__(self, up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.up = up
        self.reader = reader
        self.writer = writer
        self.index = up.accepted  # 1 for the first connection
        self.requests: list[tuple[bytes, bytes]] = []

    async def request(self) -> tuple[bytes, bytes] | None:
        """The next request's head (up to and including the blank line) and body; None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            self.up.stray += exc.partial
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        self.requests.append((head, body))
        self.up.requests.append((head, body))
        return head, body

    async def send(self, *parts: bytes, pause: float = 0.0) -> None:
        """Write ``parts`` one by one (separate TCP segments when ``pause`` > 0)."""
        for part in parts:
            self.writer.write(part)
            await self.writer.drain()
            if pause:
                await asyncio.sleep(pause)


Handler = Callable[[Peer], Awaitable[None]]


class Upstream:
    """A raw HTTP server on a free loopback port; counts connections and records requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.peers: list[Peer] = []
        self.requests: list[tuple[bytes, bytes]] = []
        self.stray = b""  # bytes of a request that never completed
        self.tasks: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.accepted += 1
        peer = Peer(self, reader, writer)
        self.peers.append(peer)
        try:
            await self.handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=2)
        await asyncio.wait_for(self.server.wait_closed(), 2)


class Bench:
    """Upstreams and transports of one test, all closed at its end."""

    def __init__(self) -> None:
        self.upstreams: list[Upstream] = []
        self.transports: list[Transport] = []

    async def serve(self, handler: Handler) -> Upstream:
        up = Upstream(handler)
        await up.start()
        self.upstreams.append(up)
        return up

    def transport(self, base_url: str, **kw: Any) -> Transport:
        opts: dict[str, Any] = {
            "connect_timeout": 2.0,
            "first_byte_timeout": 3.0,
            "idle_timeout": 3.0,
            "total_timeout": 10.0,
        }
        opts.update(kw)
        t = Transport(provider="up", base_url=base_url, **opts)
        self.transports.append(t)
        return t

    async def close(self) -> None:
        for t in self.transports:
            await t.aclose()
        for up in self.upstreams:
            await up.stop()


@pytest.fixture
async def bench() -> AsyncIterator[Bench]:
    b = Bench()
    try:
        yield b
    finally:
        await b.close()


def answer(
    body: bytes,
    status: str = "200 OK",
    headers: Iterable[str] = (),
    ctype: str = "application/json",
    version: str = "HTTP/1.1",
) -> bytes:
    """A complete answer with a Content-Length."""
    lines = [f"{version} {status}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
    lines += headers
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def target(head: bytes) -> str:
    """The request line's path."""
    return head.split(b" ", 2)[1].decode()


def header_lines(head: bytes) -> dict[str, str]:
    """The request's headers by lower-case name (values of repeated names joined by ', ')."""
    out: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        if line:
            name, _, value = line.decode("latin-1").partition(":")
            key = name.strip().lower()
            out[key] = f"{out[key]}, {value.strip()}" if key in out else value.strip()
    return out


def echo(delay: float = 0.0) -> Handler:
    """Keep-alive: answer each request with its path and the connection's number."""

    async def handle(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            if delay:
                await asyncio.sleep(delay)
            body = orjson.dumps({"path": target(req[0]), "conn": peer.index})
            await peer.send(answer(body))

    return handle


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


# -- 1. keep-alive ----------------------------------------------------------------------------


async def test_sequential_calls_share_one_connection(bench: Bench) -> None:
    up = await bench.serve(echo())
    t = bench.transport(up.base_url)
    for i in range(20):
        status, _, data = await t.get_json(f"items/{i}")
        assert status == 200
        assert orjson.loads(data) == {"path": f"/v1/items/{i}", "conn": 1}
    assert up.accepted == 1


async def test_concurrent_calls_open_connections_then_reuse_them(bench: Bench) -> None:
    up = await bench.serve(echo(delay=0.05))  # slow enough that all ten calls overlap
    t = bench.transport(up.base_url)

    async def round_(tag: str) -> set[int]:
        results = await asyncio.gather(*(t.get_json(f"{tag}/{i}") for i in range(10)))
        conns = set()
        for i, (status, _, data) in enumerate(results):
            assert status == 200
            got = orjson.loads(data)
            assert got["path"] == f"/v1/{tag}/{i}"  # each call got its own answer
            conns.add(got["conn"])
        return conns

    assert len(await round_("a")) == 10
    assert up.accepted == 10
    assert len(await round_("b")) == 10
    assert up.accepted == 10  # the second round ran on the first round's connections


# -- 2. Connection: close, close-delimited bodies -----------------------------------------------


async def test_connection_close_answer_is_not_reused(bench: Bench) -> None:
    async def handle(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            body = orjson.dumps({"conn": peer.index, "path": target(req[0])})
            # says close but leaves the socket open: the client must not send on it again
            await peer.send(answer(body, headers=["Connection: close"]))

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    for i in range(3):
        _, _, data = await t.get_json(f"n/{i}")
        assert orjson.loads(data) == {"conn": i + 1, "path": f"/v1/n/{i}"}
    assert up.accepted == 3
    assert [len(p.requests) for p in up.peers] == [1, 1, 1]


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
async def test_body_delimited_by_close_is_read_whole(bench: Bench, version: str) -> None:
    payload = orjson.dumps({"text": "x" * 50_000, "end": True})

    async def handle(peer: Peer) -> None:
        await peer.request()
        head = f"{version} 200 OK\r\nContent-Type: application/json\r\n\r\n".encode()
        parts = [payload[i : i + 7000] for i in range(0, len(payload), 7000)]
        await peer.send(head, *parts, pause=0.005)
        # the handler's end closes the socket, which ends the body

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    for _ in range(2):  # the second call needs (and gets) a new connection
        status, _, data = await t.post_json("chat", {"q": 1})
        assert status == 200
        assert data == payload
    assert up.accepted == 2


# -- 3. the server closes an idle connection ---------------------------------------------------


async def test_server_closing_an_idle_connection_is_no_error(bench: Bench) -> None:
    async def handle(peer: Peer) -> None:
        req = await peer.request()
        assert req is not None
        # keep-alive answer (no Connection: close), then the server drops the connection anyway
        await peer.send(answer(orjson.dumps({"conn": peer.index})))

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    for i in range(5):
        status, _, data = await t.post_json("chat", {"i": i})
        assert status == 200
        assert orjson.loads(data) == {"conn": i + 1}
        await asyncio.sleep(0.05)  # the FIN reaches the client before its next call
    assert up.accepted == 5


# -- 4. chunked bodies and streams --------------------------------------------------------------


async def test_chunked_answer_with_extensions_and_trailers(bench: Bench) -> None:
    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n",
                b'9;ext=1\r\n{"text": \r\n',
                b'6;name="quoted value"\r\n"hello\r\n',
                b"1\r\n \r\n",
                b'7\r\nworld"}\r\n',
                b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
                pause=0.002,
            )

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    for _ in range(3):
        status, _, data = await t.get_json("models")
        assert status == 200
        assert orjson.loads(data) == {"text": "hello world"}
    assert up.accepted == 1  # the trailers were consumed: the connection stayed usable


async def test_sse_stream_in_many_small_chunks(bench: Bench) -> None:
    events = [orjson.dumps({"i": i, "text": f"token {i}"}) for i in range(30)]
    sse = b": keep-alive comment\r\n\r\n"
    for i, e in enumerate(events):
        sse += b"event: chunk\r\nid: %d\r\ndata: %s\r\n\r\n" % (i, e)
    sse += b"data: line one\ndata: line two\n\n"
    sse += b"data: [DONE]\n\n"
    pieces = [sse[i : i + 5] for i in range(0, len(sse), 5)]

    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            await peer.send(head)
            for n, piece in enumerate(pieces):
                peer.writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                if n % 20 == 0:
                    await peer.writer.drain()
                    await asyncio.sleep(0.001)
            await peer.send(b"0\r\n\r\n")

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    for _ in range(2):
        got = [p async for p in t.open_stream("chat/completions", {"stream": True})]
        assert got == [*events, b"line one\nline two"]
    assert up.accepted == 1  # the stream's end was drained and its connection reused


# -- 5. content codings -------------------------------------------------------------------------


PAYLOAD = orjson.dumps({"choices": [{"text": "compressible " * 2000}]})


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # RFC 9110 deflate: the zlib format
        ("deflate", raw_deflate),  # what some servers send as deflate: no zlib header
    ],
)
async def test_content_coding_is_decoded(
    bench: Bench, coding: str, encode: Callable[[bytes], bytes]
) -> None:
    packed = encode(PAYLOAD)
    assert len(packed) < len(PAYLOAD) // 10

    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(answer(packed, headers=[f"Content-Encoding: {coding}"]))

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    for _ in range(2):
        status, headers, data = await t.get_json("models")
        assert status == 200
        assert data == PAYLOAD
    assert up.accepted == 1
    assert "gzip" in header_lines(up.requests[0][0])["accept-encoding"]


async def test_chunked_gzip_stream_is_decoded_on_the_fly(bench: Bench) -> None:
    lines = [orjson.dumps({"i": i}) + b"\n" for i in range(200)]
    packed = gzip.compress(b"".join(lines))

    async def handle(peer: Peer) -> None:
        await peer.request()
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        parts = [packed[i : i + 50] for i in range(0, len(packed), 50)]
        await peer.send(head, chunked(*parts))

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    got = [p async for p in t.open_stream("stream", {}, framing="lines")]
    assert got == [line.strip() for line in lines]


@pytest.mark.parametrize("split", [False, True])
async def test_unknown_content_coding_is_an_error(bench: Bench, split: bool) -> None:
    async def handle(peer: Peer) -> None:
        req = await peer.request()
        if req is None:
            return
        if peer.index == 1:
            raw = answer(b"\x1b\x07\x00brotli-bytes", headers=["Content-Encoding: br"])
            cut = raw.index(b"\r\n\r\n") + 4 if split else len(raw)
            await peer.send(raw[:cut], raw[cut:], pause=0.02)
            await asyncio.sleep(1)
        else:
            await peer.send(answer(b'{"ok": true}'))

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    with pytest.raises(UpstreamError, match="invalid HTTP answer"):
        await t.get_json("models")
    status, _, data = await t.get_json("models")  # a new connection, a good answer
    assert (status, data) == (200, b'{"ok": true}')
    assert up.accepted == 2


async def test_corrupt_gzip_is_an_error(bench: Bench) -> None:
    bad = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"this is not deflate data at all" * 3

    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(bad, headers=["Content-Encoding: gzip"]))
        await asyncio.sleep(1)

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    with pytest.raises(UpstreamError, match="invalid HTTP answer") as info:
        await t.get_json("models")
    assert "not deflate" not in str(info.value)


# -- 6. body caps -------------------------------------------------------------------------------


@pytest.fixture
def small_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "MAX_BODY_BYTES", 1000)
    monkeypatch.setattr(transport, "MAX_ERROR_BODY_BYTES", 200)


async def serve_once(bench: Bench, *parts: bytes, pause: float = 0.0) -> Upstream:
    """An upstream that answers every request with ``parts`` on a new connection, then closes."""

    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(*parts, pause=pause)
        await asyncio.sleep(0.5)

    return await bench.serve(handle)


@pytest.mark.usefixtures("small_caps")
async def test_content_length_over_the_cap_is_refused(bench: Bench) -> None:
    up = await serve_once(bench, answer(b"x" * 5000))
    t = bench.transport(up.base_url)
    with pytest.raises(UpstreamError, match="oversized"):
        await t.get_json("models")


@pytest.mark.usefixtures("small_caps")
async def test_chunked_body_growing_over_the_cap_is_refused(bench: Bench) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    parts = [b"%x\r\n%s\r\n" % (300, b"y" * 300) for _ in range(10)]
    up = await serve_once(bench, head, *parts, b"0\r\n\r\n", pause=0.005)
    t = bench.transport(up.base_url)
    with pytest.raises(UpstreamError, match="oversized"):
        await t.get_json("models")


@pytest.mark.usefixtures("small_caps")
async def test_error_answers_use_the_error_cap(bench: Bench) -> None:
    ok = await serve_once(bench, answer(b"o" * 500))
    status, _, data = await bench.transport(ok.base_url).get_json("models")
    assert (status, len(data)) == (200, 500)  # under the body cap of 1,000

    small = await serve_once(bench, answer(b"e" * 150, status="500 Internal Server Error"))
    status, _, data = await bench.transport(small.base_url).get_json("models")
    assert (status, len(data)) == (500, 150)

    big = await serve_once(bench, answer(b"e" * 500, status="500 Internal Server Error"))
    with pytest.raises(UpstreamError, match="oversized"):
        await bench.transport(big.base_url).get_json("models")
    stream = await serve_once(bench, answer(b"e" * 500, status="429 Too Many Requests"))
    with pytest.raises(UpstreamError, match="oversized") as info:
        async for _ in bench.transport(stream.base_url).open_stream("chat", {}):
            pass
    assert not isinstance(info.value, UpstreamStatus)


@pytest.mark.usefixtures("small_caps")
async def test_compressed_body_is_capped_by_its_decoded_size(bench: Bench) -> None:
    # ~30 KB of gzip that inflates to 30 MB: refused without ever holding the 30 MB
    bomb = gzip.compress(b"\0" * 30_000_000, compresslevel=9)
    up = await serve_once(bench, answer(bomb, headers=["Content-Encoding: gzip"]))
    t = bench.transport(up.base_url)
    tracemalloc.start()
    try:
        with pytest.raises(UpstreamError, match="oversized"):
            await t.get_json("models")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


# -- 7. garbage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH_9.6 secret-garbage\r\n",
        b"HTTP/1.1 200 OK\r\nbroken header line secret-garbage\r\n\r\n",
        b"HTTP/1.1 2xx secret-garbage\r\n\r\n",
    ],
)
async def test_garbage_instead_of_http(bench: Bench, garbage: bytes) -> None:
    up = await serve_once(bench, garbage)
    t = bench.transport(up.base_url)
    with pytest.raises(UpstreamError, match="invalid HTTP answer") as info:
        await t.post_json("chat", {})
    assert "secret" not in str(info.value)
    assert not isinstance(info.value, UpstreamTimeout)


# -- 8. interim answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("pause", [0.0, 0.01])
async def test_interim_answers_are_skipped(bench: Bench, pause: float) -> None:
    async def handle(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            await peer.send(
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n"
                b"Content-Encoding: br\r\n\r\n",
                answer(orjson.dumps({"path": target(req[0])}), headers=["X-Final: yes"]),
                pause=pause,
            )

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    for i in range(2):
        status, headers, data = await t.post_json(f"chat/{i}", {})
        assert status == 200
        assert orjson.loads(data) == {"path": f"/v1/chat/{i}"}
        assert headers.get("X-Final") == "yes"
        assert "Link" not in headers  # the final answer's headers only
    assert up.accepted == 1


# -- 9. header injection --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["tok\r\nX-Evil: 1", "tok\nX-Evil: 1", "tok\rX-Evil: 1"])
async def test_header_with_a_line_break_sends_nothing(bench: Bench, value: str) -> None:
    seen = bytearray()

    async def handle(peer: Peer) -> None:
        while data := await peer.reader.read(65536):
            seen.extend(data)
            if b"\r\n\r\n" in data:
                await peer.send(answer(b"{}"))

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    await t.get_json("warm")  # a pooled connection the bad call could have used
    before = bytes(seen)
    for call in (
        t.get_json("models", headers={"Authorization": value}),
        t.post_json("chat", {"a": 1}, headers={"X-Request-ID": value}),
    ):
        with pytest.raises(UpstreamError, match="line break") as info:
            await call
        assert "Evil" not in str(info.value)
    await asyncio.sleep(0.05)
    assert bytes(seen) == before  # not one byte of either request went out
    assert up.accepted == 1
    assert t.in_flight == 0
    assert (await t.get_json("after"))[0] == 200  # the pooled connection is still good
    assert up.accepted == 1


# -- 10. unsolicited bytes ------------------------------------------------------------------------


STALE = b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"stale"'


@pytest.mark.parametrize("together", [False, True])
async def test_bytes_on_an_idle_connection_discard_it(bench: Bench, together: bool) -> None:
    async def handle(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            body = answer(orjson.dumps({"path": target(req[0]), "conn": peer.index}))
            if together:  # the stray answer rides in the same segment as the real one
                await peer.send(body + STALE)
            else:
                await peer.send(body, STALE, pause=0.05)

    up = await bench.serve(handle)
    t = bench.transport(up.base_url)
    for i in range(3):
        status, _, data = await t.get_json(f"n/{i}")
        assert status == 200
        assert orjson.loads(data) == {"path": f"/v1/n/{i}", "conn": i + 1}
        await asyncio.sleep(0.15)
    assert up.accepted == 3


# -- 11. flow control ------------------------------------------------------------------------------


def ndjson(n: int) -> bytes:
    pad = "x" * 80
    return b"".join(b'{"i":%d,"pad":"%s"}\n' % (i, pad.encode()) for i in range(n))


async def serve_stream(bench: Bench, body: bytes) -> Upstream:
    async def handle(peer: Peer) -> None:
        await peer.request()
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        await peer.send(head)
        for i in range(0, len(body), 65536):
            await peer.send(body[i : i + 65536])

    return await bench.serve(handle)


@pytest.fixture
def buffered_peaks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """(bytes buffered, paused) after every body read of every connection."""
    peaks: list[tuple[int, bool]] = []
    on_body = h1.Connection.on_body

    def spy(self: h1.Connection, body: bytes) -> None:
        on_body(self, body)
        peaks.append((self.buffered, self.paused))

    monkeypatch.setattr(h1.Connection, "on_body", spy)
    return peaks


async def test_large_stream_with_a_slow_consumer_is_complete_and_bounded(
    bench: Bench, buffered_peaks: list[tuple[int, bool]]
) -> None:
    n = 50_000
    body = ndjson(n)
    assert len(body) > 5_000_000
    up = await serve_stream(bench, body)
    t = bench.transport(up.base_url)
    i = 0
    async for line in t.open_stream("stream", {}, framing="lines"):
        assert orjson.loads(line)["i"] == i
        i += 1
        if i % 2500 == 0:
            await asyncio.sleep(0.01)  # the consumer falls behind: reading must pause
    assert i == n
    assert any(paused for _, paused in buffered_peaks)
    assert max(b for b, _ in buffered_peaks) <= h1.HIGH_WATER + READ_SIZE


async def test_a_consumer_slower_than_the_idle_timeout_is_no_upstream_silence(
    bench: Bench,
) -> None:
    n = 20_000  # 2 MB: far more than the high-water mark, so reading pauses
    up = await serve_stream(bench, ndjson(n))
    t = bench.transport(up.base_url, idle_timeout=0.2)
    i = 0
    async for line in t.open_stream("stream", {}, framing="lines"):
        assert orjson.loads(line)["i"] == i
        i += 1
        if i == 1:
            await asyncio.sleep(0.6)  # the upstream is not silent: we stopped reading
    assert i == n


# -- 12. the idle timeout after the headers ----------------------------------------------------------


@pytest.mark.parametrize("partial", [b"", b'{"text": "par'])
async def test_idle_timeout_applies_once_the_headers_are_in(bench: Bench, partial: bytes) -> None:
    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            + partial
        )
        await asyncio.sleep(5)

    up = await bench.serve(handle)
    t = bench.transport(up.base_url, idle_timeout=0.3, first_byte_timeout=5.0)
    start = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="went silent for 0.3s"):
        await t.post_json("chat", {})
    assert 0.25 < time.monotonic() - start < 2.0

    start = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="went silent for 0.3s"):
        async for _ in t.open_stream("chat", {}, framing="lines"):
            pass
    assert 0.25 < time.monotonic() - start < 2.0


# -- 13. credentials, prefix and Host -------------------------------------------------------------


async def test_base_url_credentials_prefix_and_host(bench: Bench) -> None:
    up = await bench.serve(echo())
    t = bench.transport(f"http://user:p%40ss@127.0.0.1:{up.port}/api/v1/")
    _, _, data = await t.post_json("/chat/completions", {"m": 1})
    assert orjson.loads(data)["path"] == "/api/v1/chat/completions"
    head = up.requests[0][0]
    hdrs = header_lines(head)
    assert hdrs["authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert hdrs["host"] == f"127.0.0.1:{up.port}"
    assert head.startswith(b"POST /api/v1/chat/completions HTTP/1.1\r\n")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_errors_never_show_url_credentials(bench: Bench) -> None:
    secret_url = "http://user:p%40ss-word@127.0.0.1:{}/v1"
    failures: list[UpstreamError] = []
    t = bench.transport(secret_url.format(closed_port()))
    with pytest.raises(UpstreamError) as refused:
        await t.get_json("models")
    failures.append(refused.value)

    up = await serve_once(bench, b"garbage p@ss-word\r\n")
    t = bench.transport(secret_url.format(up.port))
    with pytest.raises(UpstreamError) as garbage:
        await t.get_json("models")
    failures.append(garbage.value)

    async def stall(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(3)

    slow = await bench.serve(stall)
    t = bench.transport(secret_url.format(slow.port), first_byte_timeout=0.2)
    with pytest.raises(UpstreamTimeout) as timeout:
        await t.get_json("models")
    failures.append(timeout.value)

    for exc in failures:
        text = f"{exc} {exc!r} {getattr(exc, 'hint', '')}"
        for secret in ("p@ss", "p%40ss", "user:", base64.b64encode(b"user:p@ss-word").decode()):
            assert secret not in text


# -- 14. request bytes --------------------------------------------------------------------------------


async def test_request_bytes(bench: Bench) -> None:
    up = await bench.serve(echo())
    t = bench.transport(f"http://127.0.0.1:{up.port}/base/v1")
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}
    await t.post_json("chat/completions", body)
    await t.get_json("/models")
    await t.request("POST", "raw", b"\x00\x01raw bytes")
    (post_head, post_body), (get_head, get_body), (raw_head, raw_body) = up.requests
    assert post_head.startswith(b"POST /base/v1/chat/completions HTTP/1.1\r\n")
    assert post_body == orjson.dumps(body)
    post_hdrs = header_lines(post_head)
    assert post_hdrs["content-length"] == str(len(post_body))
    assert post_hdrs["content-type"] == "application/json"
    assert "transfer-encoding" not in post_hdrs

    assert get_head.startswith(b"GET /base/v1/models HTTP/1.1\r\n")
    get_hdrs = header_lines(get_head)
    assert "content-length" not in get_hdrs
    assert "transfer-encoding" not in get_hdrs
    assert get_body == b""
    # nothing followed the GET's head: the next request's line came straight after it
    assert raw_head.startswith(b"POST /base/v1/raw HTTP/1.1\r\n")
    assert raw_body == b"\x00\x01raw bytes"
    assert up.accepted == 1 and up.stray == b""
    for head in (post_head, get_head, raw_head):  # each header once
        names = [line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:] if line]
        assert len(names) == len(set(names))


# -- 15. the base URL's scheme ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/v1", "unix:///tmp/sock", "127.0.0.1:8080/v1", "http://", "ws://h/v1"]
)
def test_non_http_base_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="not an http"):
        Transport(provider="up", base_url=url)


# -- 16. header edge cases ----------------------------------------------------------------------


async def test_a_call_header_replaces_the_transport_header_of_the_same_name(bench: Bench) -> None:
    up = await bench.serve(echo())
    t = bench.transport(f"http://user:pw@127.0.0.1:{up.port}/v1")
    await t.post_json("chat", {}, headers={"authorization": "Bearer tok"})
    await t.post_json("chat", {})
    (first, _), (second, _) = up.requests
    assert header_lines(first)["authorization"] == "Bearer tok"  # sent once, not joined
    assert header_lines(second)["authorization"].startswith("Basic ")
    assert header_lines(first)["host"] == f"127.0.0.1:{up.port}"


async def test_post_without_a_body_sends_content_length_zero(bench: Bench) -> None:
    up = await bench.serve(echo())
    t = bench.transport(up.base_url)
    status, _, _ = await t.request("POST", "tokens/refresh", None)
    assert status == 200
    head, body = up.requests[0]
    assert header_lines(head)["content-length"] == "0"
    assert body == b""


def test_a_transport_header_with_a_line_break_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="line break") as info:
        Transport(
            provider="up",
            base_url="http://127.0.0.1:9/v1",
            headers={"Authorization": "Bearer sk-secret-value\n"},
        )
    assert "sk-secret-value" not in str(info.value)


async def test_a_header_outside_latin1_is_refused_with_a_clear_message(bench: Bench) -> None:
    up = await bench.serve(echo())
    t = bench.transport(up.base_url)
    with pytest.raises(UpstreamError, match="outside Latin-1"):
        await t.post_json("chat", {}, headers={"X-Note": "привет"})
    assert up.requests == []
    assert t.in_flight == 0
