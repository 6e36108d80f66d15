"""``llmgw keys`` through the real entry point, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from llmgw.auth.keys import KeyService
from llmgw.errors import AuthError
from llmgw.storage.db import make_engine


@pytest.fixture
def run(cli: Any, db_url: str) -> Any:
    """``llmgw ARGS`` against this test's database."""

    def go(*args: str) -> Any:
        return cli(*args, env={"LLMGW_DATABASE_URL": db_url})

    return go


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def test_create_json_has_the_fields_and_the_key_authenticates(run: Any, db: Engine) -> None:
    before = datetime.now(UTC)
    out = _json(run("keys", "create", "--name", "ci", "--expires", "30d", "--json"))
    assert {"id", "key", "prefix", "name", "expires_at"} <= set(out)
    assert out["name"] == "ci" and out["key"].startswith("llmgw_") and len(out["key"]) == 49
    assert out["prefix"] == out["key"][:12] and out["status"] == "active"
    expires = datetime.fromisoformat(out["expires_at"])
    assert before + timedelta(days=30) <= expires <= datetime.now(UTC) + timedelta(days=30)
    info = KeyService(db).authenticate(out["key"])
    assert str(info.id) == out["id"]


def test_secret_is_printed_once_and_never_again(run: Any) -> None:
    created = run("keys", "create", "--name", "laptop")
    assert created.exit_code == 0, created.stderr
    lines = created.stdout.splitlines()
    secret = lines[-1]
    assert secret.startswith("llmgw_") and len(secret) == 49
    assert created.stdout.count(secret) == 1
    key_id = next(w for w in created.stdout.split() if w.count("-") == 4).rstrip(",")
    for args in (
        ("keys", "list"),
        ("keys", "list", "--all", "--json"),
        ("keys", "show", key_id),
        ("keys", "show", key_id, "--json"),
        ("keys", "revoke", key_id, "--json", "--yes"),
        ("keys", "list", "--all"),
    ):
        result = run(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert secret not in result.stdout and secret[12:] not in result.stdout, args


def test_limits_owner_and_models_are_stored(run: Any, db: Engine) -> None:
    assert run("users", "create", "--email", "dev@example.com").exit_code == 0
    made = run(
        "keys", "create", "--name", "svc", "--user", "dev@example.com", "--rpm", "60",
        "--tpm", "5000", "--models", "local/gpt-4o-mini, chat-default", "--json",
    )  # fmt: skip
    assert made.exit_code == 0 and made.stderr.startswith("warning: --models")  # no providers
    out = json.loads(made.stdout)
    shown = _json(run("keys", "show", out["prefix"], "--json"))
    assert shown["user"] == "dev@example.com" and shown["user_id"]
    assert (shown["rpm"], shown["tpm"]) == (60, 5000)
    assert shown["models"] == ["local/gpt-4o-mini", "chat-default"]
    assert "key" not in shown and "digest" not in shown
    info = KeyService(db).authenticate(out["key"])
    assert info.allows_model("chat-default") and not info.allows_model("local/other")


def test_list_shows_status_and_hides_revoked_without_all(run: Any) -> None:
    a = _json(run("keys", "create", "--name", "a", "--json"))
    b = _json(run("keys", "create", "--name", "b", "--json"))
    assert run("keys", "revoke", a["id"][:8], "--yes").exit_code == 0
    listed = _json(run("keys", "list", "--json"))
    assert [k["id"] for k in listed] == [b["id"]]
    every = {k["id"]: k["status"] for k in _json(run("keys", "list", "--all", "--json"))}
    assert every == {a["id"]: "revoked", b["id"]: "active"}
    table = run("keys", "list", "--all")
    assert "revoked" in table.stdout and "active" in table.stdout
    for column in ("id", "name", "prefix", "user", "created", "expires", "last", "status"):
        assert column in table.stdout


def test_revoke_then_authenticate_fails(run: Any, db: Engine) -> None:
    out = _json(run("keys", "create", "--name", "x", "--json"))
    revoked = _json(run("keys", "revoke", out["id"], "--json", "--yes"))
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    with pytest.raises(AuthError):
        KeyService(db).authenticate(out["key"])
    again = run("keys", "revoke", out["id"])  # idempotent
    assert again.exit_code == 0 and "revoked" in again.stdout


def test_rotate_gives_a_new_working_secret(run: Any, db: Engine) -> None:
    old = _json(run("keys", "create", "--name", "svc", "--rpm", "9", "--json"))
    new = _json(run("keys", "rotate", old["prefix"], "--json", "--yes"))
    assert new["key"] != old["key"] and new["id"] != old["id"]
    assert new["name"] == "svc" and new["rpm"] == 9 and new["rotated_from"] == old["id"]
    keys = KeyService(db)
    assert str(keys.authenticate(new["key"]).id) == new["id"]
    with pytest.raises(AuthError):
        keys.authenticate(old["key"])
    again = run("keys", "rotate", old["id"])
    assert again.exit_code == 5 and again.stderr.startswith("Error: ")


def test_show_unknown_key_is_exit_4(run: Any) -> None:
    result = run("keys", "show", "0123abcd")
    assert result.exit_code == 4 and result.stdout == ""
    assert result.stderr.splitlines()[0] == "Error: no API key matches '0123abcd'"
