"""``llmgw users`` through the real entry point, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import uuid
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


def _short_id(table: str, email: str) -> str:
    """The id `users list` prints on ``email``'s row (its first 8 hex digits)."""
    row = next(line for line in table.splitlines() if email in line)
    found = re.search(r"\b[0-9a-f]{8}\b", row)
    assert found is not None, row
    return found.group(0)


def test_the_id_users_list_shows_works_wherever_a_user_is_taken(run: Any) -> None:
    """`users list` prints 8 characters of each id; every command taking a user accepts them."""
    made = json.loads(
        run("users", "create", "--email", "ann@example.com", "--name", "Ann Lee", "--json").stdout
    )
    listed = run("users", "list")
    assert listed.exit_code == 0, listed.stderr
    short = _short_id(listed.stdout, "ann@example.com")
    assert short == made["id"][:8]
    shown = run("users", "show", short, "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["email"] == "ann@example.com"
    assert "ann@example.com" in run("users", "show", short).stdout
    for ref in ("ANN@example.com", "Ann Lee", made["id"]):
        assert json.loads(run("users", "show", ref, "--json").stdout)["id"] == made["id"], ref
    off = run("users", "disable", short)
    assert off.exit_code == 0 and off.stdout.startswith("disabled user ann@example.com")
    assert run("users", "enable", "Ann Lee").exit_code == 0
    role = run("users", "set-role", short, "admin")
    assert (role.exit_code, role.stdout) == (0, "user ann@example.com now has role admin\n")
    budget = run("budgets", "set", "10", "--user", short, "--currency", "USD", "--json")
    assert budget.exit_code == 0, budget.stderr
    assert json.loads(budget.stdout)["subject_id"] == made["id"]
    quota = run("quotas", "set", "--user", "Ann Lee", "--rpm", "5", "--json")
    assert quota.exit_code == 0, quota.stderr
    for args in (("usage", "stats"), ("usage", "forecast"), ("tokens", "list")):
        r = run(*args, "--user", short, "--json")
        assert r.exit_code == 0, (args, r.stderr)


def test_an_ambiguous_user_is_exit_2_listing_the_candidates(
    run: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [uuid.UUID(f"abcdef01-0000-4000-8000-00000000000{i}") for i in (1, 2)]
    monkeypatch.setattr("llmgw.auth.users.uuid.uuid4", lambda: ids.pop(0))
    for email in ("one@example.com", "two@example.com"):
        assert run("users", "create", "--email", email, "--name", "Ops").exit_code == 0
    monkeypatch.undo()
    for ref in ("abcdef01", "Ops"):
        for args in (
            ("users", "show", ref),
            ("users", "disable", ref),
            ("budgets", "set", "5", "--user", ref, "--currency", "USD"),
            ("usage", "stats", "--user", ref),
        ):
            r = run(*args)
            assert (r.exit_code, r.stdout) == (2, ""), args
            assert r.stderr.splitlines() == [
                f"Error: '{ref}' matches 2 users: abcdef01 (one@example.com), "
                "abcdef01 (two@example.com)",
                "hint: give the email or the id (8+ characters) of the one you mean; "
                "`llmgw users list` shows them",
            ]
    listed = json.loads(run("users", "list", "--json").stdout)
    assert [u["status"] for u in listed] == ["active", "active"]  # nothing was disabled
    assert json.loads(run("budgets", "list", "--json").stdout) == []


def test_an_unknown_user_is_exit_4_with_one_error_line_and_a_hint(run: Any) -> None:
    assert run("users", "create", "--email", "ann@example.com").exit_code == 0
    cases: list[tuple[str, tuple[str, ...]]] = [
        ("nobody", ("users", "show", "nobody")),
        ("deadbeef", ("users", "set-role", "deadbeef", "admin")),
        ("ghost@example.com", ("quotas", "set", "--user", "ghost@example.com", "--rpm", "1")),
        ("nobody", ("usage", "forecast", "--user", "nobody")),
    ]
    for ref, args in cases:
        r = run(*args)
        assert (r.exit_code, r.stdout) == (4, ""), args
        assert r.stderr.splitlines() == [
            f"Error: no user matches {ref!r}",
            "hint: give their email, id (8+ characters) or name; "
            "`llmgw users list` shows every user",
        ]
    r = run("users", "show", "abc")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.splitlines()[0] == (
        "Error: 'abc' is too short to name a user: give at least 8 characters of their id"
    )
