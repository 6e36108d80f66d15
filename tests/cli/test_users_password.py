"""``llmgw users set-password`` and ``llmgw users bootstrap-admin`` (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from llmgw.storage.db import make_engine


@pytest.fixture
def run(cli: Any, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    def go(*args: str, stdin: str | None = None) -> Any:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return cli(*args, env={"LLMGW_DATABASE_URL": db_url})

    return go


def test_bootstrap_admin_once_then_set_password(run: Any, db_url: str) -> None:
    from llmgw.identity.passwords import authenticate
    from llmgw.identity.sessions import SessionService

    r = run(
        "users",
        "bootstrap-admin",
        "Root@Example.com",
        "--password-stdin",
        stdin="first password 1\n",
    )
    assert r.exit_code == 0, r.stderr
    assert "root@example.com is the first admin" in r.stdout
    assert "first password 1" not in r.stdout + r.stderr
    again = run(
        "users", "bootstrap-admin", "two@example.com", "--password-stdin", stdin="second password\n"
    )
    assert again.exit_code == 5
    assert again.stderr.startswith("Error: an admin exists already") and "hint:" in again.stderr
    shown = json.loads(run("users", "show", "root@example.com", "--json").stdout)
    assert shown["role"] == "admin"
    assert run("users", "show", "two@example.com").exit_code != 0  # nothing half-written

    engine = make_engine(db_url)
    try:
        user = authenticate(engine, "root@example.com", "first password 1")
        assert user is not None
        SessionService(engine).create(user.id)
        r = run(
            "users",
            "set-password",
            "root@example.com",
            "--password-stdin",
            stdin="second password 2\n",
        )
        assert r.exit_code == 0, r.stderr
        assert r.stdout.strip() == "password set for root@example.com; 1 browser session ended"
        assert authenticate(engine, "root@example.com", "first password 1") is None
        assert authenticate(engine, "root@example.com", "second password 2") is not None
        assert SessionService(engine).list(user.id) == []
    finally:
        engine.dispose()
    audit = json.loads(run("audit", "--json").stdout)
    assert [a["action"] for a in audit[:2]] == ["users.set_password", "users.bootstrap_admin"]
    assert "password 2" not in json.dumps(audit)


def test_set_password_errors(run: Any) -> None:
    assert run("users", "create", "--email", "ann@example.com").exit_code == 0
    short = run("users", "set-password", "ann@example.com", "--password-stdin", stdin="tiny\n")
    assert short.exit_code == 2 and "too short" in short.stderr and "tiny" not in short.stderr
    ghost = run(
        "users", "set-password", "ghost@example.com", "--password-stdin", stdin="long enough pw\n"
    )
    assert ghost.exit_code == 4 and "no user matches 'ghost@example.com'" in ghost.stderr
    short_id = json.loads(run("users", "list", "--json").stdout)[0]["id"][:8]
    by_id = run("users", "set-password", short_id, "--password-stdin", stdin="long enough pw\n")
    assert (by_id.exit_code, by_id.stdout) == (0, "password set for ann@example.com\n")
    # No terminal and no --password-stdin: say how to pipe it in.
    piped = run("users", "set-password", "ann@example.com", stdin="")
    assert piped.exit_code == 2 and "--password-stdin" in piped.stderr
    remote = run("--url", "http://127.0.0.1:9", "users", "set-password", "ann@example.com")
    assert remote.exit_code == 2 and "not through --url" in remote.stderr
