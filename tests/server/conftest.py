"""Server fixtures: the OpenAI emulator upstream, settings, a migrated SQLite DB, a key, the app."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.config import Settings

UPSTREAM_KEY = "sk-emulator-upstream-secret-0123456789"
LLMGW = str(Path(sys.executable).with_name("llmgw"))
"""The console script, as installed next to this Python."""
MODELS = ("gpt-4o-mini", "text-embedding-3-small")


@pytest.fixture
def upstream_factory() -> Iterator[Callable[..., Any]]:
    """Start OpenAI emulators with chosen knobs (latency, faults); all stopped afterwards."""
    from llmgw.emulators.openai import create_app as emulator_app
    from llmgw.emulators.runner import serve_in_thread

    running: list[Any] = []

    def start(**kw: Any) -> Any:
        kw.setdefault("api_key", UPSTREAM_KEY)
        kw.setdefault("models", MODELS)
        server = serve_in_thread(emulator_app(**kw))
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture
def upstream_key() -> str:
    """The credential the emulators demand from the gateway."""
    return UPSTREAM_KEY


@pytest.fixture
def emulator(upstream_factory: Callable[..., Any]) -> Any:
    """A healthy OpenAI emulator (``.url``, ``.app.state.stats``)."""
    return upstream_factory()


@pytest.fixture
def db_file(home: Path) -> str:
    """The SQLite URL the gateway under test uses."""
    return f"sqlite:///{home / 'gateway.db'}"


@pytest.fixture
def test_engine(db_file: str) -> Iterator[Engine]:
    """A migrated engine on the gateway's database, for creating keys and reading usage."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    eng = make_engine(db_file)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def make_settings(
    home: Path, db_file: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Settings with one ``openai`` provider at ``url`` (plus any overrides for [server])."""
    monkeypatch.setenv("EMULATOR_API_KEY", UPSTREAM_KEY)

    def build(url: str, *, provider: dict[str, Any] | None = None, **server: Any) -> Settings:
        return Settings(
            home=home,
            database={"url": db_file},
            server={"key_cache_seconds": 1.0, **server},
            usage={"flush_interval": 0.05},
            providers=[
                {
                    "name": "openai",
                    "kind": "openai",
                    "base_url": f"{url}/v1",
                    "api_key_env": "EMULATOR_API_KEY",
                    "models": list(MODELS),
                    "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.60}},
                    **(provider or {}),
                }
            ],
            aliases={"chat-default": ["openai/gpt-4o-mini"]},
        )

    return build


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], emulator: Any, test_engine: Engine
) -> Settings:
    """Gateway settings pointing at the healthy emulator, database migrated."""
    return make_settings(emulator.url)


@pytest.fixture
def make_key(test_engine: Engine) -> Callable[..., Any]:
    """Create API keys (``CreatedKey``; ``.secret`` is the bearer token)."""
    from llmgw.auth.keys import KeyService

    svc = KeyService(test_engine)

    def create(name: str = "test", **kw: Any) -> Any:
        return svc.create(name, **kw)

    return create


@pytest.fixture
def key(make_key: Callable[..., Any]) -> Any:
    """One valid key with no restrictions."""
    return make_key("test")


@pytest.fixture
def auth(key: Any) -> dict[str, str]:
    """Headers authenticating with ``key``."""
    return {"Authorization": f"Bearer {key.secret}"}


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    """The gateway app with its lifespan running."""
    from llmgw.server import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """``httpx.AsyncClient`` talking to the app in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://llmgw", timeout=30) as c:
        yield c


@pytest.fixture
def gateway_server(settings: Settings) -> Iterator[Any]:
    """The gateway on a real uvicorn server on a free port (``.url``)."""
    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    server = serve_in_thread(create_app(settings))
    yield server
    server.stop()


@pytest.fixture
def read_usage(test_engine: Engine) -> Callable[[], list[dict[str, Any]]]:
    """Read every usage row, oldest first."""

    def read() -> list[dict[str, Any]]:
        with test_engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM usage ORDER BY id")).mappings().all()
        return [dict(r) for r in rows]

    return read


@pytest.fixture
def flushed_usage(read_usage: Callable[[], list[dict[str, Any]]]) -> Callable[..., Any]:
    """``await flushed_usage(app)``: flush the app's usage recorder, then read every row."""
    import asyncio

    from llmgw.server.app import gateway_of

    async def read(app: Any) -> list[dict[str, Any]]:
        assert await asyncio.to_thread(gateway_of(app).flush_usage, 10.0)
        return read_usage()

    return read


def _trust(ca: Path | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=str(ca)) if ca is not None else True


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve_process(
    home: Path, db_file: str, test_engine: Engine, upstream_key: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    """Start a real ``llmgw serve`` in front of an OpenAI emulator; returns (process, base URL).

    ``start(upstream_url, *flags, server="key = value lines for [server]", log_name=...)``
    (the output goes to ``tmp_path / log_name``, default ``serve.log``); it returns once
    ``/readyz`` answers 200 (the serve log is in the assertion otherwise). Killed at the end.
    ``verify=CA file`` (with ``ssl_certfile`` in ``server``): the URL is https, checked with that CA.
    """
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        upstream_url: str,
        *flags: str,
        server: str = "",
        log_name: str = "serve.log",
        verify: Path | None = None,
    ) -> tuple[subprocess.Popen[bytes], str]:
        cfg = tmp_path / "config.toml"
        cfg.write_text(
            f'[database]\nurl = "{db_file}"\n\n'
            f"[server]\n{server}\n\n"
            "[[providers]]\n"
            'name = "openai"\nkind = "openai"\n'
            f'base_url = "{upstream_url}/v1"\n'
            'api_key_env = "EMULATOR_API_KEY"\n'
            'models = ["gpt-4o-mini"]\n'
        )
        port = free_port()
        env = {**os.environ, "EMULATOR_API_KEY": upstream_key, "LLMGW_HOME": str(home)}
        log_path = tmp_path / log_name
        argv = [LLMGW, "--config", str(cfg), "serve", "--port", str(port), *flags]
        with log_path.open("wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"{'https' if verify else 'http'}://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=1, verify=_trust(verify))
                if ready.status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(log_path.read_text())
            time.sleep(0.1)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def ru_settings(
    home: Path, db_file: str, test_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Gateway settings with a ``gigachat`` and a ``yandex`` provider on the given emulators.

    ``build(giga_url, yandex_url, giga={...}, yandex={...}, **settings)``: the dicts override the
    providers' fields, the keywords add top-level settings (``routing``, ``aliases``...).
    """
    from llmgw.emulators import gigachat, yandexgpt

    monkeypatch.setenv("GIGACHAT_CREDENTIALS", gigachat.DEFAULT_CREDENTIALS)
    monkeypatch.setenv("YANDEX_API_KEY", yandexgpt.DEFAULT_API_KEY)

    def build(
        giga_url: str,
        yandex_url: str,
        *,
        giga: dict[str, Any] | None = None,
        yandex: dict[str, Any] | None = None,
        **settings: Any,
    ) -> Settings:
        return Settings(
            home=home,
            database={"url": db_file},
            usage={"flush_interval": 0.05},
            providers=[
                {
                    "name": "gigachat",
                    "kind": "gigachat",
                    "base_url": f"{giga_url}/api/v1",
                    "auth_url": f"{giga_url}/api/v2/oauth",
                    "scope": "GIGACHAT_API_B2B",
                    "api_key_env": "GIGACHAT_CREDENTIALS",
                    **(giga or {}),
                },
                {
                    "name": "yandex",
                    "kind": "yandexgpt",
                    "base_url": yandex_url,
                    "folder_id": yandexgpt.DEFAULT_FOLDER,
                    "api_key_env": "YANDEX_API_KEY",
                    **(yandex or {}),
                },
            ],
            **settings,
        )

    return build


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, clock: Callable[[], float] | None = None
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app for ``settings`` with its lifespan running, and an in-process client to it.

    ``clock`` (e.g. the ``fake_clock`` fixture) replaces the monotonic clock of the key cache,
    breakers, readiness cache and limiter, so a test advances time instead of sleeping.
    """
    from llmgw.server import create_app

    app = create_app(settings, clock=clock) if clock is not None else create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://llmgw", timeout=20) as c:
            yield app, c
