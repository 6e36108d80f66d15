"""The usage writer loses nothing: PostgreSQL cut mid-batch, process restarts with a spool, replays.

A TCP proxy on a free loopback port stands between the recorder and the shared PostgreSQL
server; cutting the proxy is our database outage (the shared server is never stopped).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from llmgw.config import UsageSettings
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from llmgw.usage.recorder import UsageEvent, UsageRecorder, event_to_row
from llmgw.usage.spool import Spool

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


class TcpProxy:
    """A threaded TCP proxy to PostgreSQL that can be cut (all connections closed, new ones
    refused) and restored, or armed to cut after N more client->server bytes (mid-message)."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._down = threading.Event()
        self._hang = threading.Event()
        self._held: list[socket.socket] = []
        self._closed = False
        self._budget: int | None = None
        self.was_cut = threading.Event()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def url(self, db_url: str) -> str:
        return make_url(db_url).set(port=self.port).render_as_string(hide_password=False)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down.is_set():
                client.close()  # refused: the client sees the server hang up at once
                continue
            if self._hang.is_set():
                self._held.append(client)  # accepted, never answered: a black hole
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if to_server and self._budget is not None:
                    with self._lock:
                        budget = self._budget
                        if budget is not None:
                            self._budget = budget - len(data)
                    if budget is not None and budget < len(data):
                        dst.sendall(data[: max(budget, 0)])  # half a message reaches the server
                        self.cut()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._kill(s)

    def _kill(self, s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
        with self._lock:
            self._conns.discard(s)

    def cut(self) -> None:
        """Close every connection and refuse new ones."""
        self._down.set()
        self._budget = None
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            self._kill(s)
        self.was_cut.set()

    def cut_after(self, nbytes: int) -> None:
        """Cut once ``nbytes`` more bytes went from a client to the server."""
        self.was_cut.clear()
        self._budget = nbytes

    def hang(self) -> None:
        """Accept new connections but never answer them."""
        self._hang.set()

    def restore(self) -> None:
        self._down.clear()
        self._hang.clear()
        for s in self._held:
            s.close()
        self._held.clear()

    def close(self) -> None:
        self._closed = True
        self.restore()
        self.cut()
        self._listener.close()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    p = TcpProxy()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def direct(pg_url: str) -> Iterator[Engine]:
    """A migrated engine straight to the test database (for checking, never cut)."""
    eng = make_engine(pg_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def _settings() -> UsageSettings:
    return UsageSettings(batch_size=200, flush_interval=0.05, retry_interval=0.1)


def _event(rid: str) -> UsageEvent:
    return UsageEvent(
        request_id=rid, created_at=datetime.now(UTC), provider="p", model="m", prompt_tokens=7
    )


def _ids(engine: Engine) -> list[str]:
    with engine.connect() as c:
        return list(c.execute(sa.text("SELECT request_id FROM usage")).scalars())


def _n(v: object) -> int:
    assert isinstance(v, int)
    return v


def _wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _assert_exactly(engine: Engine, expected: set[str]) -> None:
    ids = _ids(engine)
    assert len(ids) == len(expected), f"{len(ids)} rows, expected {len(expected)}"
    assert len(set(ids)) == len(ids), "duplicate request_id"
    assert set(ids) == expected


def test_cut_mid_batch_then_restore_every_record_once(
    proxy: TcpProxy, direct: Engine, pg_url: str, tmp_path: Path
) -> None:
    engine = make_engine(proxy.url(pg_url), connect_timeout=2)
    rec = UsageRecorder(engine, _settings(), tmp_path / "spool")
    rec.start()
    expected: set[str] = set()
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set() and i < 20_000:
            for _ in range(50):
                rid = f"ev-{i:06d}"
                expected.add(rid)
                rec.record(_event(rid))
                i += 1
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        _wait_until(lambda: len(_ids(direct)) >= 500, 20, "rows before the cut")
        proxy.cut_after(3000)  # the next insert is torn in the middle
        assert proxy.was_cut.wait(10)
        _wait_until(lambda: _n(rec.stats()["spooled"]) > 0, 10, "records spooled")
        assert rec.stats()["state"] == "degraded"
        time.sleep(0.5)  # keep recording while the database is unreachable
        proxy.restore()
        time.sleep(0.5)
    finally:
        stop.set()
        producer.join(10)
    try:
        assert rec.flush(10)
        _wait_until(
            lambda: rec.stats()["state"] == "ok" and rec.stats()["spool_records"] == 0,
            30,
            "spool replayed after restore",
        )
        stats = rec.stats()
        assert _n(stats["failures"]) >= 1 and _n(stats["replayed"]) > 0
        _assert_exactly(direct, expected)
        assert len(expected) > 1000
        assert not list((tmp_path / "spool").glob("usage-*.jsonl"))
    finally:
        rec.close(timeout=10)
        engine.dispose()


def test_backends_killed_repeatedly_every_record_once(
    direct: Engine, pg_url: str, tmp_path: Path
) -> None:
    """pg_terminate_backend on our own test database's connections while recording."""
    engine = make_engine(pg_url, connect_timeout=2)
    rec = UsageRecorder(engine, _settings(), tmp_path / "spool")
    rec.start()
    dbname = make_url(pg_url).database
    stop = threading.Event()
    killed = 0

    def killer() -> None:
        nonlocal killed
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            while not stop.is_set():
                n = c.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,),
                ).fetchone()
                killed += int(n[0]) if n else 0
                time.sleep(0.03)

    expected = {f"k-{i:05d}" for i in range(6000)}
    t = threading.Thread(target=killer)
    t.start()
    try:
        for i, rid in enumerate(sorted(expected)):
            rec.record(_event(rid))
            if i % 100 == 99:
                time.sleep(0.01)
    finally:
        stop.set()
        t.join(10)
    try:
        assert rec.flush(10)
        _wait_until(lambda: rec.stats()["spool_records"] == 0, 30, "spool drained")
        assert killed > 0
        _assert_exactly(direct, expected)
    finally:
        rec.close(timeout=10)
        engine.dispose()


_CHILD = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from llmgw.config import UsageSettings
    from llmgw.storage.db import make_engine
    from llmgw.usage.recorder import UsageEvent, UsageRecorder

    url, spool, first, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    engine = make_engine(url, connect_timeout=2)
    rec = UsageRecorder(engine, UsageSettings(batch_size=100, flush_interval=0.05,
                                              retry_interval=0.2), spool)
    rec.start()
    for i in range(first, first + count):
        rec.record(UsageEvent(request_id=f"rs-{i:05d}", created_at=datetime.now(UTC)))
    rec.flush(20)
    rec.close(timeout=20)
    print(json.dumps(rec.stats()))
    """
)


def _child(url: str, spool: Path, first: int, count: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, url, str(spool), str(first), str(count)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_restart_with_nonempty_spool_replays_exactly_once(
    proxy: TcpProxy, direct: Engine, pg_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    proxy.cut()  # the database is down for the first process
    first = _child(proxy.url(pg_url), spool, 0, 500)
    assert first["spooled"] == 500 and first["written"] == 0
    assert _ids(direct) == []
    assert Spool(spool).count_records() == 500
    proxy.restore()
    # a second process starts with the database up: it replays the spool and records its own
    second = _child(proxy.url(pg_url), spool, 500, 100)
    assert second["replayed"] == 500 and second["spool_records"] == 0
    _assert_exactly(direct, {f"rs-{i:05d}" for i in range(600)})
    assert not list(spool.glob("usage-*.jsonl"))


def test_committed_batch_that_was_also_spooled_is_not_duplicated(
    direct: Engine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    rec = UsageRecorder(direct, _settings(), spool_dir)
    rec.start()
    events = [_event(f"d-{i:04d}") for i in range(300)]
    for e in events:
        rec.record(e)
    rec.close()
    assert len(_ids(direct)) == 300
    # As if the commit reached the server but its answer was lost: the same batch is spooled,
    # twice even, together with records that never made it.
    spool = Spool(spool_dir)
    rows = [event_to_row(e) for e in events]
    spool.append(rows)
    spool.append(rows[:100] + [event_to_row(_event(f"new-{i}")) for i in range(50)])
    spool.close()
    rec2 = UsageRecorder(direct, _settings(), spool_dir)
    rec2.start()
    assert rec2.flush()
    rec2.close()
    _assert_exactly(direct, {f"d-{i:04d}" for i in range(300)} | {f"new-{i}" for i in range(50)})
    assert rec2.stats()["rejected"] == 0  # deduplicated by ON CONFLICT, not by the error path
    assert not list(spool_dir.glob("usage-*.jsonl"))


def test_close_with_database_down_returns_in_time_and_spools(
    proxy: TcpProxy, direct: Engine, pg_url: str, tmp_path: Path
) -> None:
    engine = make_engine(proxy.url(pg_url), connect_timeout=2)
    rec = UsageRecorder(engine, _settings(), tmp_path / "spool")
    rec.start()
    proxy.cut()
    for i in range(1000):
        rec.record(_event(f"c-{i}"))
    t0 = time.monotonic()
    rec.close(timeout=5)
    assert time.monotonic() - t0 < 6
    assert Spool(tmp_path / "spool").count_records() == 1000
    assert _ids(direct) == []
    engine.dispose()


_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from llmgw.config import UsageSettings
    from llmgw.storage.db import make_engine
    from llmgw.usage.recorder import UsageEvent, UsageRecorder

    url, spool = sys.argv[1], Path(sys.argv[2])
    rec = UsageRecorder(make_engine(url, connect_timeout=2),
                        UsageSettings(batch_size=50, flush_interval=0.05), spool)
    rec.start()
    for i in range(400):
        rec.record(UsageEvent(request_id=f"kill-{i:04d}", created_at=datetime.now(UTC)))
    assert rec.flush(20)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit: the spool must already hold them
    """
)


def test_kill_9_after_flush_loses_nothing(
    proxy: TcpProxy, direct: Engine, pg_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    proxy.cut()
    out = subprocess.run(
        [sys.executable, "-c", _KILLED, proxy.url(pg_url), str(spool)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == -9, out.stderr[-2000:]
    assert Spool(spool).count_records() == 400
    proxy.restore()
    rec = UsageRecorder(direct, _settings(), spool)
    rec.start()  # the dead process's flock is gone: its segment is replayable
    assert rec.flush()
    rec.close()
    _assert_exactly(direct, {f"kill-{i:04d}" for i in range(400)})
    assert not list(spool.glob("usage-*.jsonl"))


def test_close_gives_up_on_a_hung_database_in_time_and_spools(
    proxy: TcpProxy, direct: Engine, pg_url: str, tmp_path: Path
) -> None:
    """The database accepts connections and never answers: close(timeout) still returns."""
    spool = tmp_path / "spool"
    engine = make_engine(proxy.url(pg_url), connect_timeout=4)
    rec = UsageRecorder(engine, _settings(), spool)
    proxy.hang()
    rec.start()
    for i in range(300):
        rec.record(_event(f"h-{i:03d}"))
    time.sleep(0.3)  # the writer is now stuck connecting
    t0 = time.monotonic()
    rec.close(timeout=1.0)
    assert time.monotonic() - t0 < 1.5
    assert Spool(spool).count_records() >= 300
    proxy.restore()
    time.sleep(4.5)  # let the stuck writer time out (it may spool the same batch again)
    engine.dispose()
    rec2 = UsageRecorder(direct, _settings(), spool)
    rec2.start()
    assert rec2.flush()
    rec2.close()
    _assert_exactly(direct, {f"h-{i:03d}" for i in range(300)})
