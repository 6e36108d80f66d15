"""Request heads over ``server.max_header_bytes`` / ``server.max_headers`` get 431 on a real
``llmgw serve``, before authentication, and RSS stays bounded (security catalogue IN-1)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _raw_request(url: str, headers: list[tuple[str, str]], *, timeout: float = 10) -> bytes:
    """Send ``GET /healthz`` with ``headers`` on a raw socket; everything the server answered."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    assert host is not None and port is not None
    head = "GET /healthz HTTP/1.1\r\nHost: llmgw\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    with socket.create_connection((host, port), timeout=timeout) as s:
        with contextlib.suppress(OSError):  # the server may close before we finish sending
            s.sendall(head.encode("latin-1"))
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                answer += chunk
    return answer


def _status_and_error(answer: bytes) -> tuple[int, dict[str, Any] | None]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    error = orjson.loads(body)["error"] if status >= 400 else None
    return status, error


def test_in1_header_limits_on_a_real_server(serve_process: Any, emulator: Any) -> None:
    """IN-1: 1 MB of headers, one 1 MB header, too many header lines: 431 with the envelope and
    ``Connection: close``; heads within the defaults (64 KiB, 100 lines) are served."""
    _proc, url = serve_process(emulator.url)
    for headers in (
        [(f"x-big-{i}", "a" * 10_000) for i in range(100)],  # 1 MB in 100 headers
        [("x-huge", "b" * 1_000_000)],  # one 1 MB header
        [("x-a", "c" * 70_000)],  # just over 64 KiB
        [(f"x-n-{i}", "1") for i in range(101)],  # one line too many
    ):
        answer = _raw_request(url, headers)
        status, error = _status_and_error(answer)
        assert status == 431, answer[:300]
        assert error is not None and error["code"] == "headers_too_large"
        assert error["type"] == "invalid_request_error"
        assert b"connection: close" in answer.lower()
    for headers in (
        [(f"x-ok-{i}", "d" * 600) for i in range(90)],  # 54 KB in 90 lines
        [("x-ok", "e" * 60_000)],
    ):
        answer = _raw_request(url, headers)
        assert _status_and_error(answer)[0] == 200, answer[:300]
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert "llmgw_request_headers_too_large_total 4.0" in metrics


def test_in1_ten_connections_of_huge_headers_keep_rss_bounded(
    serve_process: Any, emulator: Any
) -> None:
    """IN-1: ten concurrent connections each sending 10 headers of 1 MB (100 MB in all) leave
    the server's RSS within a few MB of where it was, and it keeps serving."""
    proc, url = serve_process(emulator.url)
    httpx.get(f"{url}/healthz", timeout=5)
    before = _rss_kib(proc.pid)
    answers: list[bytes] = []

    def attack() -> None:
        answers.append(_raw_request(url, [(f"x-{i}", "z" * 1_000_000) for i in range(10)]))

    threads = [threading.Thread(target=attack) for _ in range(10)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert time.monotonic() - t0 < 30
    grown_mib = (_rss_kib(proc.pid) - before) / 1024
    assert [_status_and_error(a)[0] for a in answers] == [431] * 10
    assert grown_mib < 20, f"RSS grew by {grown_mib:.1f} MiB"
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("server", "ok", "refused"),
    [
        (
            "max_header_bytes = 4096",
            [("x-a", "a" * 3000)],
            [("x-a", "a" * 5000)],
        ),
        (
            "max_headers = 10",
            [(f"x-{i}", "1") for i in range(8)],
            [(f"x-{i}", "1") for i in range(10)],
        ),
    ],
    ids=["bytes", "count"],
)
def test_header_limits_are_configurable(
    serve_process: Any, emulator: Any, server: str, ok: Any, refused: Any
) -> None:
    _proc, url = serve_process(emulator.url, server=server)
    assert _status_and_error(_raw_request(url, ok))[0] == 200
    assert _status_and_error(_raw_request(url, refused))[0] == 431
