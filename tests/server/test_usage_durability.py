"""ST-3 and ST-4 on a real ``llmgw serve``: usage survives ``kill -9`` under load; no record, no answer.

ST-3: every answer a client received (a JSON body, or a stream's ``[DONE]``) has its usage row
after ``kill -9`` and a restart, on SQLite and PostgreSQL, over 20 kill cycles of mixed JSON and
streaming load; a stream cut by the kill after its first chunk has a row too (``interrupted``,
``partial``) unless its final record made it. ST-4: with the journal directory unwritable and the
database refused, billable requests get 503 ``usage_unavailable``, ``/readyz`` fails and the
metric says why; ``serve`` mode answers them anyway.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade

from .conftest import LLMGW, free_port

pytestmark = pytest.mark.slow

CYCLES = int(os.environ.get("LLMGW_KILL_CYCLES", "10"))  # per database: 20 kills in all
CLIENTS = 24  # concurrent clients per cycle, half of them streaming


class Gateway:
    """Starts ``llmgw serve`` processes on one config (database, spool, [usage])."""

    def __init__(self, home: Path, tmp: Path, db_url: str, upstream: str, usage: str) -> None:
        self.home, self.tmp = home, tmp
        self.cfg = tmp / "config.toml"
        self.cfg.write_text(
            f'[database]\nurl = "{db_url}"\nconnect_timeout = 1\n\n'
            f"[usage]\n{usage}\n\n"
            "[[providers]]\n"
            'name = "openai"\nkind = "openai"\n'
            f'base_url = "{upstream}/v1"\n'
            'api_key_env = "EMULATOR_API_KEY"\n'
            'models = ["gpt-4o-mini"]\n'
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, upstream_key: str, *, ready: bool = True
    ) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        env = {**os.environ, "EMULATOR_API_KEY": upstream_key, "LLMGW_HOME": str(self.home)}
        argv = [LLMGW, "--config", str(self.cfg), "serve", "--port", str(port)]
        with (self.tmp / "serve.log").open("ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90  # start-up takes 10+ s on a loaded two-core machine
        path = "/readyz" if ready else "/healthz"
        while True:
            try:
                if httpx.get(url + path, timeout=1).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((self.tmp / "serve.log").read_text()[-3000:])
            time.sleep(0.05)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class Seen:
    """What the clients received: answered request ids, and streams cut after a chunk."""

    def __init__(self) -> None:
        self.json: set[str] = set()
        self.streams: set[str] = set()
        self.cut_streams: set[str] = set()


async def _client(c: httpx.AsyncClient, url: str, secret: str, stream: bool, seen: Seen) -> None:
    headers = {"Authorization": f"Bearer {secret}"}
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "one two three four five six"}],
    }
    while True:
        try:
            if not stream:
                r = await c.post(f"{url}/v1/chat/completions", json=body, headers=headers)
                if r.status_code == 200 and r.json()["choices"]:
                    seen.json.add(r.headers["x-request-id"])
                continue
            async with c.stream(
                "POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, headers=headers
            ) as r:
                rid = r.headers.get("x-request-id")
                got = b""
                try:
                    async for chunk in r.aiter_bytes():
                        got += chunk
                        if rid and b"data: {" in got:
                            seen.cut_streams.add(rid)
                        if got.endswith(b"data: [DONE]\n\n"):
                            seen.cut_streams.discard(rid)
                            seen.streams.add(rid)
                except httpx.TransportError:
                    pass
        except httpx.TransportError:
            return  # the gateway is gone


async def _load_then_kill(
    url: str, secret: str, proc: subprocess.Popen[bytes], answers: int
) -> Seen:
    seen = Seen()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=10, limits=limits) as c:
        tasks = [
            asyncio.create_task(_client(c, url, secret, i % 2 == 1, seen)) for i in range(CLIENTS)
        ]
        deadline = time.monotonic() + 20
        while len(seen.json) + len(seen.streams) < answers and time.monotonic() < deadline:  # noqa: ASYNC110 - polling counters the clients bump
            await asyncio.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # under load: requests and streams in flight
        proc.wait()
        await asyncio.wait(tasks, timeout=10)
    return seen


def _rows(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT request_id, status, error_type, metadata FROM usage"))
        out = {}
        for rid, status, error_type, meta in result:
            if isinstance(meta, str):
                meta = orjson.loads(meta)
            out[rid] = {"status": status, "error_type": error_type, "meta": meta or {}}
        return out


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def usage_db(request: pytest.FixtureRequest, home: Path) -> Iterator[tuple[str, Engine]]:
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'llmgw.db'}"
    else:
        url = str(request.getfixturevalue("pg_url"))
    engine = make_engine(url)
    upgrade(engine)
    yield url, engine
    engine.dispose()


def test_kill_9_under_load_loses_no_usage_row_st3(
    usage_db: tuple[str, Engine],
    home: Path,
    tmp_path: Path,
    upstream_factory: Callable[..., Any],
    upstream_key: str,
) -> None:
    """ST-3: 10 x kill -9 per database (20 in all) under mixed JSON and streaming load: every answer a client received
    has its row after restart; every stream cut after its first chunk has one as well."""
    from llmgw.auth.keys import KeyService

    url, engine = usage_db
    secret = KeyService(engine).create("durability").secret
    upstream = upstream_factory(latency_ms=2, chunk_delay_ms=3)
    gw = Gateway(home, tmp_path, url, upstream.url, "flush_interval = 0.5")
    rng = random.Random(8)
    total = Seen()
    try:
        for _ in range(CYCLES):
            proc, base = gw.start(upstream_key, ready=False)  # /readyz would wait for its 2 s cache
            seen = asyncio.run(_load_then_kill(base, secret, proc, rng.randint(20, 60)))
            total.json |= seen.json
            total.streams |= seen.streams
            total.cut_streams |= seen.cut_streams
        proc, base = gw.start(upstream_key)  # replays what the last kill left
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        gw.stop_all()
    rows = _rows(engine)
    answered = total.json | total.streams
    assert len(total.json) > CYCLES * 5 and len(total.streams) > CYCLES * 5
    missing = answered - rows.keys()
    assert not missing, f"{len(missing)} of {len(answered)} answers have no usage row"
    for rid in answered:
        assert rows[rid]["status"] == 200 and rows[rid]["error_type"] is None, rows[rid]
    cut_missing = total.cut_streams - rows.keys()
    assert not cut_missing, f"{len(cut_missing)} cut streams have no usage row"
    interrupted = [r for r in rows.values() if r["error_type"] == "interrupted"]
    assert all(r["meta"].get("partial") is True for r in interrupted)
    assert not list((home / "spool").glob("journal-*.jsonl")), "journals left after a clean stop"


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.postgres
@pytest.mark.parametrize("policy", ["refuse", "serve"])
async def test_unrecordable_usage_refuses_billable_requests_st4(
    policy: str,
    pg_url: str,
    emulator: Any,
    upstream_key: str,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ST-4: journal directory unwritable and PostgreSQL refused: ``refuse`` answers 503
    ``usage_unavailable`` (nothing sent upstream), ``serve`` answers 200; either way ``/readyz``
    fails, ``llmgw_usage_unrecordable`` is 1 and the log says why; all recovers with the database."""
    from sqlalchemy.engine import make_url

    from llmgw.auth.keys import KeyService
    from llmgw.config import Settings
    from llmgw.server import create_app
    from llmgw.server.app import gateway_of

    from .test_db_outage import CutProxy

    caplog.set_level("WARNING", logger="llmgw.usage")
    direct = make_engine(pg_url)
    upgrade(direct)
    key = KeyService(direct).create("st4")
    proxy = CutProxy()
    monkeypatch.setenv("EMULATOR_API_KEY", upstream_key)
    not_a_dir = tmp_path / "spool"
    not_a_dir.write_text("the journal and the spool cannot be written here")
    settings = Settings(
        home=home,
        database={
            "url": make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False),
            "connect_timeout": 1,
        },
        server={"key_cache_seconds": 0.5},
        usage={
            "flush_interval": 0.05,
            "retry_interval": 0.2,
            "spool_dir": str(not_a_dir),
            "on_unrecordable": policy,
        },
        providers=[
            {
                "name": "openai",
                "kind": "openai",
                "base_url": f"{emulator.url}/v1",
                "api_key_env": "EMULATOR_API_KEY",
                "models": ["gpt-4o-mini"],
            }
        ],
    )
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {key.secret}"}
    answered: set[str] = set()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=20) as c:

                async def chat() -> httpx.Response:
                    r = await c.post("/v1/chat/completions", json=CHAT, headers=headers)
                    if r.status_code == 200:
                        answered.add(r.headers["x-request-id"])
                    return r

                assert (await chat()).status_code == 200  # journal broken, database fine: served
                proxy.cut()
                deadline = time.monotonic() + 15
                while "usage cannot be recorded" not in (await c.get("/readyz")).text:
                    assert (await chat()).status_code == 200  # the writer has not seen it yet
                    assert time.monotonic() < deadline, "never noticed usage is unrecordable"
                    await asyncio.sleep(0.1)
                upstream_before = emulator.app.state.stats.requests
                results = [await chat() for _ in range(20)]
                if policy == "refuse":
                    assert {r.status_code for r in results} == {503}
                    err = results[0].json()["error"]
                    assert err["code"] == "usage_unavailable" and err["type"] == "api_error"
                    assert emulator.app.state.stats.requests == upstream_before
                else:
                    assert {r.status_code for r in results} == {200}
                ready = await c.get("/readyz")
                assert ready.status_code == 503
                assert any("journal not writable" in p for p in ready.json()["problems"])
                metrics = (await c.get("/metrics")).text
                assert "llmgw_usage_unrecordable 1.0" in metrics
                refused = 20.0 if policy == "refuse" else 0.0
                assert f"llmgw_usage_refused {refused}" in metrics
                assert "usage cannot be recorded: journal not writable" in caplog.text

                proxy.restore()  # the database is back: records held in memory are written
                deadline = time.monotonic() + 20
                while (await chat()).status_code != 200:
                    assert time.monotonic() < deadline, "still refusing after the database is back"
                    await asyncio.sleep(0.2)
                assert await asyncio.to_thread(gateway_of(app).flush_usage, 15.0)
    finally:
        proxy.close()
    with direct.connect() as conn:
        stored = {r for (r,) in conn.exec_driver_sql("SELECT request_id FROM usage")}
    direct.dispose()
    assert answered <= stored  # no answer without its row, even through the outage
