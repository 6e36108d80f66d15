"""Shared fixtures: an isolated LLMGW_HOME, real PostgreSQL databases, a migrated engine, the CLI."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import Engine

PG_ADMIN_DSN = os.environ.get("LLMGW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LLMGW_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _need(service: str, host: str, port: int) -> None:
    """Skip when a server is down locally; under CI=true a missing server is a failure."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError:
        msg = f"{service} is not reachable at {host}:{port}"
        if IN_CI:
            pytest.fail(msg + " (CI=true: required)")
        pytest.skip(msg)


class FakeClock:
    """Monotonic and wall seconds that move only when the test calls ``advance``.

    Production code takes clocks as callables (``create_app(settings, clock=...)``,
    ``KeyCache(clock=..., wall_clock=...)``, breakers, the rate limiter): pass ``fake`` (or
    ``fake.monotonic``) and ``fake.time`` instead of sleeping until a TTL or cooldown passes.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = time.time()

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        """The fake monotonic seconds."""
        return self.now

    def time(self) -> float:
        """The fake Unix time (starts at the real one)."""
        return self.wall

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self.now += seconds
        self.wall += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    """A ``FakeClock`` for this test."""
    return FakeClock()


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own LLMGW_HOME and no LLMGW_* settings from the developer's shell."""
    for key in list(os.environ):
        if key.startswith("LLMGW_") and not key.startswith("LLMGW_TEST_"):
            monkeypatch.delenv(key)
    # pytest-xdist workers inherit COLUMNS=80, which piped tables honour: tests that want a
    # narrow table set it themselves.
    monkeypatch.delenv("COLUMNS", raising=False)
    home = tmp_path / "llmgw-home"
    monkeypatch.setenv("LLMGW_HOME", str(home))
    # Never read or write the developer's real OS keyring; tests that need one install their own.
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield home
    keyring.set_keyring(previous)


class MemoryKeyring:
    """An in-memory OS keyring backend (what a desktop's Secret Service does, without D-Bus);
    built on first use so that keyring's backend machinery loads only for the tests using it."""

    @staticmethod
    def install() -> Any:
        from keyring.backend import KeyringBackend
        from keyring.errors import PasswordDeleteError

        class Backend(KeyringBackend):
            priority = 1

            def __init__(self) -> None:
                super().__init__()
                self.data: dict[tuple[str, str], str] = {}

            def get_password(self, service: str, username: str) -> str | None:
                return self.data.get((service, username))

            def set_password(self, service: str, username: str, password: str) -> None:
                self.data[(service, username)] = password

            def delete_password(self, service: str, username: str) -> None:
                if (service, username) not in self.data:
                    raise PasswordDeleteError(username)
                del self.data[(service, username)]

        return Backend()


@pytest.fixture
def ring(_isolate: Path) -> Iterator[Any]:
    """An in-memory OS keyring for this test (``.data``: {(service, user): secret})."""
    import keyring

    backend = MemoryKeyring.install()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def home(_isolate: Path) -> Path:
    """This test's LLMGW_HOME."""
    return _isolate


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    _need("PostgreSQL", "127.0.0.1", 5432)
    name = f"llmgw_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    """The test Redis server (tests namespace their keys)."""
    _need("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, home: Path) -> str:
    """Each test using this runs twice: on SQLite under LLMGW_HOME and on a fresh PostgreSQL DB."""
    if request.param == "sqlite":
        return f"sqlite:///{home / 'test.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on ``db_url``."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    eng = make_engine(db_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@dataclass
class CliResult:
    """What one CLI run gave back."""

    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``llmgw ARGS`` in-process through the real entry point (error handling included)."""
    from llmgw.cli import main

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        old = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        capsys.readouterr()
        try:
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            else:  # pragma: no cover - main always exits
                code = 0
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run


@dataclass
class Upstream:
    """A running OpenAI emulator: ``url`` (``http://127.0.0.1:PORT``), ``base_url`` (``.../v1``)."""

    server: Any
    url: str
    base_url: str
    port: int
    stats: Any
    """``llmgw.emulators.openai.EmulatorStats``: requests, in_flight, max_in_flight, disconnects..."""

    def provider_config(self, name: str = "local", **overrides: Any) -> Any:
        """A ``ProviderConfig`` (kind openai) pointing at this emulator."""
        from llmgw.config import ProviderConfig

        return ProviderConfig(name=name, kind="openai", base_url=self.base_url, **overrides)


@pytest.fixture
def make_upstream() -> Iterator[Callable[..., Upstream]]:
    """Factory: ``make_upstream(**create_app_kwargs)`` starts an OpenAI emulator on a free port."""
    from llmgw.emulators.openai import create_app
    from llmgw.emulators.runner import serve_in_thread

    started: list[Any] = []

    def make(**kwargs: Any) -> Upstream:
        app = create_app(**kwargs)
        srv = serve_in_thread(app)
        started.append(srv)
        return Upstream(srv, srv.url, srv.url + "/v1", srv.port, app.state.stats)

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def upstream(make_upstream: Callable[..., Upstream]) -> Upstream:
    """The OpenAI emulator with default settings (no API key, models gpt-4o-mini and text-embedding-3-small)."""
    return make_upstream()


@pytest.fixture
def private_ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``(ca.pem, cert.pem, key.pem)``: a root CA that no system store trusts (like the Russian
    Trusted Root CA) and a leaf for 127.0.0.1 it signed."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Test Trusted Root CA"))
        .issuer_name(name("Test Trusted Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


@pytest.fixture
def tls_upstream(
    private_ca: tuple[Path, Path, Path],
) -> Iterator[Callable[[Any], tuple[str, Path]]]:
    """Serve an ASGI app over https with ``private_ca``'s leaf: ``start(app) -> (url, ca.pem)``."""
    import threading
    import time

    import uvicorn

    ca, cert, key = private_ca
    running: list[tuple[Any, threading.Thread, socket.socket]] = []

    def start(app: Any) -> tuple[str, Path]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app, log_config=None, log_level="warning", ssl_certfile=str(cert), ssl_keyfile=str(key)
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread, sock))
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return f"https://127.0.0.1:{sock.getsockname()[1]}", ca

    yield start
    for server, thread, sock in running:
        server.should_exit = True
        thread.join(5)
        sock.close()
