"""The database goes away under a running gateway: cached keys keep working, unknown keys get 503,
/readyz says so, requests never wait on the database; it all recovers when the database is back."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from llmgw.auth.keys import KeyService
from llmgw.config import Settings
from llmgw.server import create_app
from llmgw.server.app import gateway_of
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade

pytestmark = pytest.mark.postgres

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


class CutProxy:
    """A TCP proxy to PostgreSQL that can be cut (connections closed, new ones refused)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.down = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:  # checked and registered together: cut() closes every pair
                if self.down.is_set():
                    client.close()
                    continue
                server = socket.create_connection(("127.0.0.1", 5432))
                self._conns |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # Shut down before closing: close() alone does not wake the other pump, blocked in
            # recv() on one of these sockets, and while it is blocked the socket stays open, so
            # the gateway's connection through it never sees the end (its query waits forever).
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        with self._lock:
            self.down.set()
            conns, self._conns = self._conns, set()
        for s in conns:  # every socket shut down first: a pump woken by one closes its pair
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for s in conns:
            with contextlib.suppress(OSError):
                s.close()

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.cut()
        with contextlib.suppress(OSError):  # wakes the accept() that close() alone would not
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


@pytest.fixture
def proxy() -> Iterator[CutProxy]:
    p = CutProxy()
    yield p
    p.close()


async def test_gateway_rides_out_a_database_outage(
    pg_url: str,
    proxy: CutProxy,
    emulator: Any,
    upstream_key: str,
    home: Path,
    monkeypatch: Any,
    fake_clock: Any,
) -> None:
    """ST-1/ST-5: a known key rides out the outage, an unknown one gets 503, readiness fails.
    The gateway runs on a fake clock: the test moves it past the key and readiness caches."""
    direct = make_engine(pg_url)
    upgrade(direct)
    key = KeyService(direct).create("outage")
    monkeypatch.setenv("EMULATOR_API_KEY", upstream_key)
    via_proxy = make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
    settings = Settings(
        home=home,
        database={"url": via_proxy, "connect_timeout": 1},
        server={"key_cache_seconds": 0.5},
        usage={"flush_interval": 0.05, "retry_interval": 0.2},
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
    app = create_app(settings, clock=fake_clock)
    headers = {"Authorization": f"Bearer {key.secret}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=20) as c:
            assert (
                await c.post("/v1/chat/completions", json=CHAT, headers=headers)
            ).status_code == 200
            assert (await c.get("/readyz")).status_code == 200

            proxy.cut()
            fake_clock.advance(2.1)  # past the key cache (0.5 s) and the readiness cache (2 s)
            t0 = time.monotonic()
            r = await c.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert r.status_code == 200, r.text  # a key seen recently rides out the outage
            assert time.monotonic() - t0 < 3  # and nothing waited on the database for long
            r = await c.get("/v1/models", headers={"Authorization": "Bearer llmgw_" + "q" * 43})
            err = r.json()["error"]
            assert r.status_code == 503 and (err["type"], err["code"]) == (
                "api_error",
                "database_unavailable",
            )
            assert "database" in r.json()["error"]["message"]
            r = await c.get("/readyz")
            assert r.status_code == 503 and "database unreachable" in r.json()["problems"]

            proxy.restore()
            deadline = time.monotonic() + 15
            while (await c.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "not ready again after the database came back"
                await asyncio.sleep(0.3)  # real time for the database to answer again
                fake_clock.advance(2.1)  # and the readiness cache's interval
            assert await asyncio.to_thread(gateway_of(app).flush_usage, 15.0)
    with direct.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM usage").scalar()
    direct.dispose()
    assert n == 2  # the request made during the outage was spooled and written afterwards
