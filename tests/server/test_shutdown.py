"""Graceful shutdown of a real ``llmgw serve`` process: SIGTERM drains streams, flushes usage, exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from .conftest import LLMGW, free_port

pytestmark = pytest.mark.slow

WORDS = " ".join(f"w{i}" for i in range(12))  # ~15 stream frames


@pytest.fixture
def serve(
    serve_process: Callable[..., tuple[subprocess.Popen[bytes], str]],
) -> Callable[..., tuple[subprocess.Popen[bytes], str]]:
    """Start ``llmgw serve`` against an upstream URL with a drain deadline; (process, base URL)."""

    def start(upstream_url: str, drain: float, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
        return serve_process(upstream_url, "--drain-seconds", str(drain), *extra)

    return start


async def _stream(
    client: httpx.AsyncClient, url: str, secret: str, started: asyncio.Event
) -> list[Any]:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": WORDS}],
        "stream": True,
    }
    events: list[Any] = []
    async with client.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
    ) as r:
        assert r.status_code == 200
        buf = b""
        async for chunk in r.aiter_bytes():
            started.set()
            buf += chunk
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                payload = frame.removeprefix(b"data: ")
                events.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return events


def _text(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


async def test_sigterm_drains_twenty_streams(
    serve: Any, upstream_factory: Any, key: Any, read_usage: Any, tmp_path: Path
) -> None:
    up = upstream_factory(chunk_delay_ms=150)  # each stream takes about 2.5 s
    proc, url = serve(up.url, drain=15)
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        started = [asyncio.Event() for _ in range(20)]
        tasks = [asyncio.create_task(_stream(client, url, key.secret, ev)) for ev in started]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 10)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        # Draining: a newcomer is refused or told "not ready", never "ready".
        try:
            r = await client.get(f"{url}/readyz")
            assert r.status_code == 503, r.text
        except httpx.TransportError:
            pass
        results = await asyncio.gather(*tasks)
    code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0
    assert time.monotonic() - t_term < 15
    for events in results:
        assert events[-1] == "[DONE]"
        assert _text(events) == f"Echo: {WORDS}"
    rows = read_usage()
    assert len(rows) == 20
    assert {(r["status"], r["error_type"]) for r in rows} == {(200, None)}
    assert all(r["completion_tokens"] > 0 for r in rows)
    # one JSON access-log line per request, written out before the exit; never the key itself
    log = (tmp_path / "serve.log").read_text()
    lines = [orjson.loads(x) for x in log.splitlines() if x.startswith("{")]
    chats = [x for x in lines if x["path"] == "/v1/chat/completions"]
    assert len(chats) == 20 and {x["status"] for x in chats} == {200}
    assert {x["request_id"] for x in chats} == {r["request_id"] for r in rows}
    assert key.secret not in log


async def test_stream_longer_than_the_drain_deadline_gets_a_final_error(
    serve: Any, upstream_factory: Any, key: Any, read_usage: Any
) -> None:
    up = upstream_factory(chunk_delay_ms=1000)  # about 15 s: far longer than the deadline
    proc, url = serve(up.url, drain=1.5)
    async with httpx.AsyncClient(timeout=30) as client:
        started = asyncio.Event()
        task = asyncio.create_task(_stream(client, url, key.secret, started))
        await asyncio.wait_for(started.wait(), 10)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        events = await task
        elapsed = time.monotonic() - t_term
    assert 1.0 < elapsed < 5
    assert events[-1]["error"]["code"] == "shutting_down"
    assert "[DONE]" not in events
    assert await asyncio.to_thread(proc.wait, 15) == 0
    rows = read_usage()
    assert [(r["status"], r["error_type"]) for r in rows] == [(503, "drain_deadline")]
    assert up.app.state.stats.streams_completed == 0  # the upstream call was closed too


async def test_workers_drain_and_exit_zero(
    serve: Any, upstream_factory: Any, key: Any, read_usage: Any
) -> None:
    up = upstream_factory(chunk_delay_ms=100)
    proc, url = serve(up.url, 10, "--workers", "2")
    async with httpx.AsyncClient(timeout=30) as client:
        started = [asyncio.Event() for _ in range(4)]
        tasks = [asyncio.create_task(_stream(client, url, key.secret, ev)) for ev in started]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 10)
        proc.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*tasks)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    assert all(events[-1] == "[DONE]" for events in results)
    assert len(read_usage()) == 4


@pytest.mark.parametrize("case", ["port-in-use", "bad-drain", "missing-credential"])
def test_serve_start_failures_are_one_line(
    home: Path, tmp_path: Path, db_file: str, test_engine: Any, case: str
) -> None:
    cfg = tmp_path / "bad.toml"
    provider = 'api_key_env = "LLMGW_TEST_NOT_SET"\n' if case == "missing-credential" else ""
    cfg.write_text(
        f'[database]\nurl = "{db_file}"\n\n[[providers]]\nname = "p"\nkind = "openai"\n'
        f'base_url = "http://127.0.0.1:9/v1"\n{provider}'
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1] if case == "port-in-use" else free_port()
        args = [LLMGW, "--config", str(cfg), "serve", "--port", str(port)]
        if case == "bad-drain":
            args += ["--drain-seconds", "-1"]
        env = {**os.environ, "LLMGW_HOME": str(home)}
        env.pop("LLMGW_TEST_NOT_SET", None)
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr
    expected = {
        "port-in-use": "cannot listen",
        "bad-drain": "drain_seconds",
        "missing-credential": "no credential",
    }[case]
    assert expected in errors[0]


def test_sigterm_while_workers_start_is_a_clean_stop(
    home: Path, db_file: str, upstream_factory: Any, upstream_key: str, tmp_path: Path
) -> None:
    """SHUT: a stop that reaches the workers before they serve (still importing) exits 0, not
    9: they held no request. Under load a late second worker made the drain test flaky."""
    up = upstream_factory()
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "{db_file}"\n\n[[providers]]\nname = "openai"\nkind = "openai"\n'
        f'base_url = "{up.url}/v1"\napi_key_env = "EMULATOR_API_KEY"\nmodels = ["gpt-4o-mini"]\n'
    )
    env = {**os.environ, "EMULATOR_API_KEY": upstream_key, "LLMGW_HOME": str(home)}
    log_path = tmp_path / "serve.log"
    argv = [LLMGW, "--config", str(cfg), "serve", "--port", str(free_port()), "--workers", "2"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "worker(s)" not in log_path.read_text():  # the supervisor bound and spawned
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
