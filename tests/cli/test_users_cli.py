"""``llmgw users`` through the real entry point, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmgw.auth.keys import KeyService
from llmgw.errors import AuthError
from llmgw.storage.db import make_engine


@pytest.fixture
def run(cli: Any, db_url: str) -> Any:
    def go(*args: str) -> Any:
        return cli(*args, env={"LLMGW_DATABASE_URL": db_url})

    return go


def test_create_and_list(run: Any) -> None:
    made = run("users", "create", "--email", "Ann@Example.com", "--name", "Ann", "--role", "admin")
    assert made.exit_code == 0, made.stderr
    assert "ann@example.com" in made.stdout
    assert run("users", "create", "--email", "bob@example.com", "--json").exit_code == 0
    listed = run("users", "list", "--json")
    assert listed.exit_code == 0
    users = json.loads(listed.stdout)
    assert [(u["email"], u["name"], u["role"], u["status"]) for u in users] == [
        ("ann@example.com", "Ann", "admin", "active"),
        ("bob@example.com", None, "user", "active"),
    ]
    table = run("users", "list")
    assert "ann@example.com" in table.stdout and "bob@example.com" in table.stdout


def test_empty_list(run: Any) -> None:
    assert json.loads(run("users", "list", "--json").stdout) == []
    assert "no users" in run("users", "list").stdout


def test_duplicate_email_is_exit_5_with_one_line(run: Any) -> None:
    assert run("users", "create", "--email", "dup@example.com").exit_code == 0
    again = run("users", "create", "--email", "DUP@example.com")
    assert again.exit_code == 5 and again.stdout == ""
    lines = again.stderr.splitlines()
    assert lines[0] == "Error: a user with email 'dup@example.com' already exists"
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint: "))
    assert len(json.loads(run("users", "list", "--json").stdout)) == 1


def test_disable_blocks_the_users_keys_and_enable_restores(run: Any, db_url: str) -> None:
    assert run("users", "create", "--email", "c@example.com").exit_code == 0
    key = json.loads(
        run("keys", "create", "--name", "k", "--user", "c@example.com", "--json").stdout
    )
    engine = make_engine(db_url)
    try:
        keys = KeyService(engine)
        assert keys.authenticate(key["key"])
        off = run("users", "disable", "c@example.com")
        assert off.exit_code == 0 and "1 live key refused" in off.stdout
        with pytest.raises(AuthError):
            keys.authenticate(key["key"])
        listed = json.loads(run("users", "list", "--json").stdout)
        assert listed[0]["status"] == "disabled"
        assert json.loads(run("keys", "list", "--json").stdout)[0]["status"] == "user disabled"
        assert run("users", "enable", "c@example.com").exit_code == 0
        assert keys.authenticate(key["key"])
    finally:
        engine.dispose()


def test_unknown_user_is_exit_4(run: Any) -> None:
    for args in (("users", "disable", "ghost@example.com"), ("users", "enable", "nobody")):
        result = run(*args)
        assert result.exit_code == 4, args
        assert result.stderr.startswith("Error: no user ")


def test_bad_email_and_role_are_exit_2(run: Any) -> None:
    assert run("users", "create", "--email", "not-an-email").exit_code == 2
    assert run("users", "create", "--email", "a@example.com", "--role", "root").exit_code == 2
    assert json.loads(run("users", "list", "--json").stdout) == []
