"""``llmgw keys list`` on a current SQLite file reads it with the standard library
(``llmgw.admin.quick``): the records are exactly ``LocalAdmin``'s, in every key state, and any
case it does not handle falls back to the ordinary path."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llmgw.admin import quick
from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite file with keys in every state a listing shows."""
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    engine = make_engine(url)
    upgrade(engine)
    clock = iter([NOW - timedelta(days=d) for d in range(40, 0, -1)])
    admin = LocalAdmin(engine, Actor.local(), "cli", clock=lambda: next(clock))
    admin.users_create("ann@example.com", name="Ann")
    admin.users_create("bob@example.com", role="admin")
    admin.keys_create("plain")
    admin.keys_create("limited", user="ann@example.com", rpm=60, tpm=1000,
                      models=["gigachat/GigaChat-2-Max", "yandex/*"])  # fmt: skip
    admin.keys_create("expiring", user="bob@example.com", expires=timedelta(days=1))
    gone = admin.keys_create("revoked")
    admin.keys_revoke(gone["prefix"])
    old = admin.keys_create("rotated")
    admin.keys_rotate(old["prefix"])
    admin.keys_create("ann's other", user="ann@example.com")
    admin.users_disable("ann@example.com")
    with engine.begin() as conn:  # a key the gateway has used
        conn.execute(
            sa.text("UPDATE api_keys SET last_used_at = :t WHERE name = 'plain'"),
            {"t": "2026-02-28 08:00:01.000250"},
        )
    engine.dispose()
    return url


@pytest.mark.parametrize("include_revoked", [False, True])
def test_the_records_are_localadmins(db: str, include_revoked: bool) -> None:
    engine = make_engine(db)
    try:
        expected = LocalAdmin(engine, Actor.local(), "cli", clock=lambda: NOW).keys_list(
            include_revoked=include_revoked
        )
    finally:
        engine.dispose()
    got = quick.keys_list(db, include_revoked=include_revoked, now=NOW)
    assert got == expected
    statuses = {r["status"] for r in got}
    assert statuses >= {"active", "expired", "user disabled"}
    assert ("revoked" in statuses) is include_revoked
    assert any(r["last_used_at"] == "2026-02-28T08:00:01.000250+00:00" for r in got)
    assert any(r["rotated_from"] for r in got) and any(r["models"] for r in got)


def test_anything_else_falls_back(db: str, tmp_path: Path) -> None:
    assert (
        quick.keys_list(f"sqlite:///{tmp_path / 'none.db'}", include_revoked=False, now=NOW) is None
    )
    assert quick.keys_list("postgresql://postgres@127.0.0.1/test", include_revoked=False,
                           now=NOW) is None  # fmt: skip
    assert quick.keys_list(db + "?timeout=3", include_revoked=False, now=NOW) is None
    assert quick.keys_list("sqlite://", include_revoked=False, now=NOW) is None
    path = db.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # a schema one revision behind: the CLI must migrate it
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    assert quick.keys_list(db, include_revoked=False, now=NOW) is None
    Path(path).write_bytes(b"not a database at all" * 100)
    assert quick.keys_list(db, include_revoked=False, now=NOW) is None


def test_keys_list_takes_it_without_sqlalchemy(tmp_path: Path) -> None:
    """What `llmgw keys list` prints is the same either way; on a current file no SQLAlchemy."""
    env = {"LLMGW_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    llmgw = [sys.executable, "-m", "llmgw"]
    subprocess.run([*llmgw, "keys", "create", "-n", "ci"], env=env, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['llmgw', 'keys', 'list', '--json']\n"
        "try:\n"
        "    runpy.run_module('llmgw', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('SQLA' if 'sqlalchemy' in sys.modules else 'NO-SQLA', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, check=True, timeout=60)  # fmt: skip
    assert done.stderr.strip().endswith("NO-SQLA"), done.stderr
    assert [r["name"] for r in json.loads(done.stdout)] == ["ci"]


def test_provider_status_records_are_localadmins(db: str) -> None:
    """The dashboard's first screen (local) before the engine opens: the same records."""
    from llmgw.admin.local import _provider_status
    from llmgw.storage.opener import EngineOpener

    engine = make_engine(db)
    try:
        assert quick.providers_status(db) == []
        rows: list[dict[str, Any]] = [
            {"provider": "yandex", "model": "yandexgpt/latest", "status": "down",
             "latency_ms": None, "error_rate": 1.0, "last_error": "HTTP 503: upstream busy",
             "updated_at": NOW - timedelta(seconds=30)},
            {"provider": "gigachat", "model": "GigaChat-2-Max", "status": "ok",
             "latency_ms": 412.5, "error_rate": 0.0, "last_error": None,
             "updated_at": NOW.replace(microsecond=250)},
            {"provider": "gigachat", "model": "GigaChat", "status": "degraded",
             "latency_ms": 1200.0, "error_rate": 0.25, "last_error": "timeout",
             "updated_at": NOW},
        ]  # fmt: skip
        with engine.begin() as conn:
            conn.execute(_provider_status().insert(), rows)
        expected = LocalAdmin(engine, Actor.local(), "tui").providers_status()
        assert quick.providers_status(db) == expected
        assert [r["model"] for r in expected] == ["GigaChat", "GigaChat-2-Max", "yandexgpt/latest"]
        opened: list[str] = []

        def open_it() -> sa.Engine:
            opened.append(db)
            return engine

        lazy = LocalAdmin(EngineOpener(db, open_it), Actor.local(), "tui")
        assert lazy.providers_status() == expected and opened == []  # read with sqlite3
        assert lazy.whoami()["mode"] == "local" and opened == []
        assert lazy.keys_list(include_revoked=True) and opened == [db]  # opens it, once
        assert lazy.providers_status() == expected and opened == [db]
        # with the configuration: only existing providers' rows ("yandex" is neither in the
        # config file nor stored), the same on both paths
        from llmgw.config import Settings

        settings = Settings(providers=[{"name": "gigachat", "kind": "gigachat"}])
        known = [r for r in expected if r["provider"] == "gigachat"]
        assert quick.providers_status(db, ("gigachat",)) == known
        assert (
            LocalAdmin(engine, Actor.local(), "tui", settings=settings).providers_status() == known
        )
        assert quick.providers_status(db, ()) == []
    finally:
        engine.dispose()
    path = db.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:  # an older schema: the ordinary path (which migrates)
        raw.execute("UPDATE alembic_version SET version_num = '0001'")
    assert quick.providers_status(db) is None and not quick.is_current(db)
