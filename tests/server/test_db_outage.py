"""The database goes away under a running gateway: cached keys keep working, unknown keys get 503,
/readyz says so, requests never wait on the database; it all recovers when the database is back.
A database that goes silent (packets dropped, no FIN or RST) fails the calls on it within
``database.dead_connection_timeout``, and ``llmgw serve`` still stops on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.queries import AlertHistory
from llmgw.alerts.queue import ClaimedJob, JobQueue
from llmgw.alerts.stats import AlertStats
from llmgw.alerts.store import AlertStore
from llmgw.alerts.worker import AlertWorker, ClassifyStep, Done, StepResult
from llmgw.auth.keys import KeyService
from llmgw.config import AlertsSettings, Settings
from llmgw.server import create_app
from llmgw.server.app import gateway_of
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from tests.alerts.amdata import am_alert, am_payload
from tests.server.conftest import LLMGW, free_port

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


_CLONE_NEWNET = 0x40000000
_seq = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Blackhole:
    """A TCP proxy to PostgreSQL whose link can drop every packet, as a cut network does: no FIN,
    no RST, nothing acknowledged. A proxy that merely stops forwarding cannot do that (its own
    kernel keeps acknowledging data and keepalive probes), so the proxy's listening socket lives
    in a network namespace of its own, reached over a veth pair, and ``drop()`` takes the link
    down inside the namespace. Needs root (``ip netns``)."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100_000}x{next(_seq)}"
        self.ns, self.host_if, self.ns_if = f"llmgw-bh-{tag}", f"lgbh{tag}", f"lgbn{tag}"
        a, b = random.randrange(256), random.randrange(64) * 4
        self.ip = f"10.213.{a}.{b + 2}"
        _ip("netns", "add", self.ns)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
                "netns", self.ns)  # fmt: skip
            _ip("addr", "add", f"10.213.{a}.{b + 1}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.ns, "addr", "add", f"{self.ip}/30", "dev", self.ns_if)
            _ip("-n", self.ns, "link", "set", self.ns_if, "up")
            self._listener = self._listen_in_namespace()
        except BaseException:
            self._remove()
            raise
        self.port: int = self._listener.getsockname()[1]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.dropped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _listen_in_namespace(self) -> socket.socket:
        """A socket belongs to the namespace of the thread that made it: a thread enters the
        namespace (``setns`` moves only that thread) and makes the listener."""
        out: list[socket.socket | BaseException] = []

        def make() -> None:
            try:
                fd = os.open(f"/run/netns/{self.ns}", os.O_RDONLY)
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(fd, _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                out.append(socket.create_server((self.ip, 0)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                out.append(exc)

        t = threading.Thread(target=make)
        t.start()
        t.join()
        if isinstance(out[0], BaseException):
            raise out[0]
        return out[0]

    def url(self, pg_url: str) -> str:
        """``pg_url`` through this proxy."""
        u = make_url(pg_url).set(host=self.ip, port=self.port)
        return u.render_as_string(hide_password=False)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", 5432))
            with self._lock:
                self._conns |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        """From now on every packet between the clients and the proxy is lost."""
        self.dropped = True
        _ip("-n", self.ns, "link", "set", self.ns_if, "down")

    def heal(self) -> None:
        """Packets flow again (what was sent meanwhile is retransmitted)."""
        if not self.dropped:
            return
        _ip("-n", self.ns, "link", "set", self.ns_if, "up")
        self.dropped = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the link needs a moment to carry packets
            with contextlib.suppress(OSError), socket.create_connection((self.ip, self.port), 0.3):
                return
            time.sleep(0.1)

    def _remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)

    def close(self) -> None:
        self.heal()  # threads still waiting on a silent connection finish
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.close()
        self._remove()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("dropping packets needs root and iproute2 (a network namespace)")
    try:
        b = Blackhole()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a network namespace to drop packets in: {exc}")
    yield b
    b.close()


async def _until(check: Callable[[], bool], seconds: float, what: str) -> float:
    """Wait until ``check()``; the seconds it took (fails after ``seconds``)."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < seconds, f"{what} not within {seconds} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


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


async def test_a_silent_database_fails_the_alert_claim_in_bounded_time_and_the_worker_recovers(
    pg_url: str, blackhole: Blackhole
) -> None:
    """The network to PostgreSQL drops every packet: the alert queue's claim (a thread of the
    default executor) fails within about ``dead_connection_timeout`` instead of waiting for the
    kernel (15 minutes, hours on an idle connection), the worker's loop says so and goes on,
    and once packets flow again it runs the jobs queued meanwhile."""
    direct = make_engine(pg_url)
    upgrade(direct)
    via = make_engine(blackhole.url(pg_url), connect_timeout=1, dead_connection_timeout=3)
    settings = AlertsSettings(mode="transparent", poll_interval=0.1)
    store = AlertStore(direct, settings)
    published: list[int] = []

    async def publish(job: ClaimedJob) -> StepResult:
        published.append(job.alert_id)
        return Done()

    queue = JobQueue(via)
    classify = ClassifyStep(AlertHistory(via), None, settings)
    worker = AlertWorker(queue, {"classify": classify, "publish": publish}, settings, AlertStats())
    worker.start()
    try:
        store.ingest(parse_delivery(am_payload(am_alert("First"))))
        await _until(lambda: len(published) == 1, 15, "the first alert published")

        blackhole.drop()
        t0 = time.monotonic()
        with pytest.raises(sa.exc.OperationalError):
            await asyncio.wait_for(asyncio.to_thread(queue.claim, 4, 60), 20)
        assert time.monotonic() - t0 < 10  # 3 s unacknowledged, then 1 s to fail a reconnect
        await _until(lambda: worker.last_error is not None, 15, "the worker seeing the error")
        store.ingest(parse_delivery(am_payload(am_alert("Second"))))

        blackhole.heal()
        await _until(lambda: len(published) == 2, 20, "the alert queued meanwhile published")
        assert worker.last_error is None
    finally:
        blackhole.heal()
        await worker.aclose(grace=10)
        via.dispose()
        direct.dispose()


def test_serve_stops_on_sigterm_while_the_database_is_silent(
    pg_url: str, blackhole: Blackhole, home: Path, tmp_path: Path
) -> None:
    """SIGTERM while every packet to PostgreSQL is dropped: the alert worker's claim, the usage
    flush and the health writer fail within ``dead_connection_timeout`` each, so the process
    exits in bounded time (it used to hang in the event loop's shutdown, waiting for a thread
    of the default executor stuck on the silent connection)."""
    direct = make_engine(pg_url)
    upgrade(direct)
    direct.dispose()
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "{blackhole.url(pg_url)}"\n'
        "connect_timeout = 1\ndead_connection_timeout = 3\n\n"
        '[alerts]\nmode = "transparent"\npoll_interval = 0.1\ntimeout = 5\n'
    )
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "LLMGW_HOME": str(home)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [LLMGW, "--config", str(cfg), "serve", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        blackhole.drop()
        time.sleep(1.0)  # the worker's next claims are on the silent connection now
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve did not stop: {log_path.read_text()[-3000:]}") from None
        took = time.monotonic() - t0
        assert code == 0, log_path.read_text()[-3000:]
        assert took < 30, took
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _options(conn: Any) -> dict[str, str]:
    info = conn.connection.dbapi_connection.pgconn.info
    return {o.keyword.decode(): (o.val or b"").decode() for o in info if o.keyword}


def test_every_pool_connection_carries_the_checks_and_the_url_wins(pg_url: str) -> None:
    """The pool's connections carry keepalives and ``tcp_user_timeout`` from
    ``dead_connection_timeout``; an option the URL sets itself is kept; 0 adds none."""
    engine = make_engine(pg_url, dead_connection_timeout=30)
    own = make_engine(f"{pg_url}?keepalives_idle=7", dead_connection_timeout=30)
    off = make_engine(pg_url, dead_connection_timeout=0)
    try:
        with engine.connect() as c:
            opts = _options(c)
        assert {k: opts[k] for k in ("keepalives", "keepalives_idle", "keepalives_interval",
                                     "keepalives_count", "tcp_user_timeout")} == {
            "keepalives": "1", "keepalives_idle": "15", "keepalives_interval": "5",
            "keepalives_count": "3", "tcp_user_timeout": "30000",
        }  # fmt: skip
        with own.connect() as c:
            assert _options(c)["keepalives_idle"] == "7"
        with off.connect() as c:
            assert _options(c)["tcp_user_timeout"] in ("", "0")
    finally:
        for e in (engine, own, off):
            e.dispose()
