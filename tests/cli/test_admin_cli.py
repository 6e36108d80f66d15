"""``llmgw keys update``, ``users set-role``/``show``, ``usage recent`` and ``llmgw audit`` through
the real entry point, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import json
from typing import Any

import pytest


@pytest.fixture
def run(cli: Any, db_url: str) -> Any:
    def go(*args: str) -> Any:
        return cli(*args, env={"LLMGW_DATABASE_URL": db_url})

    return go


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_keys_update_edits_limits_models_and_expiry(run: Any) -> None:
    key = _json(run("keys", "create", "--name", "ci", "--rpm", "10", "--json"))
    out = _json(run("keys", "update", key["prefix"], "--rpm", "20", "--tpm", "500", "--json"))
    assert (out["rpm"], out["tpm"], out["models"], out["expires_at"]) == (20, 500, None, None)
    out = _json(run("keys", "update", key["id"], "--models", "a/b,c", "--expires", "1d", "--json"))
    assert out["models"] == ["a/b", "c"] and out["expires_at"] is not None and out["rpm"] == 20
    text = run("keys", "update", key["id"], "--rpm", "none", "--all-models", "--expires", "never")
    assert text.exit_code == 0, text.stderr
    assert text.stdout.startswith(f"updated key ci ({key['prefix']})")
    shown = _json(run("keys", "show", key["id"], "--json"))
    assert (shown["rpm"], shown["tpm"], shown["models"], shown["expires_at"]) == (
        None,
        500,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to change"),
        (("--rpm", "0"), "--rpm must be a positive whole number"),
        (("--rpm", "lots"), "invalid --rpm 'lots'"),
        (("--models", " , "), "invalid model list"),
        (("--models", "a", "--all-models"), "cannot be used together"),
        (("--expires", "soon"), "invalid --expires 'soon'"),
    ],
)
def test_keys_update_bad_input_is_exit_2_and_changes_nothing(
    run: Any, args: tuple[str, ...], message: str
) -> None:
    key = _json(run("keys", "create", "--name", "ci", "--rpm", "10", "--json"))
    bad = run("keys", "update", key["id"], *args)
    assert bad.exit_code == 2 and bad.stdout == ""
    assert message in bad.stderr.splitlines()[0]
    assert _json(run("keys", "show", key["id"], "--json"))["rpm"] == 10


def test_keys_update_of_a_revoked_key_is_a_conflict(run: Any) -> None:
    key = _json(run("keys", "create", "--name", "ci", "--json"))
    assert run("keys", "revoke", key["id"], "--yes").exit_code == 0
    refused = run("keys", "update", key["id"], "--rpm", "5")
    assert refused.exit_code == 5 and "revoked" in refused.stderr


def test_users_set_role_and_show(run: Any) -> None:
    assert run("users", "create", "--email", "ann@example.com").exit_code == 0
    done = run("users", "set-role", "ann@example.com", "admin")
    assert done.exit_code == 0 and done.stdout == "user ann@example.com now has role admin\n"
    assert _json(run("users", "show", "ann@example.com", "--json"))["role"] == "admin"
    assert "admin" in run("users", "show", "ann@example.com").stdout
    bad = run("users", "set-role", "ann@example.com", "root")
    assert bad.exit_code == 2 and "invalid role 'root'" in bad.stderr
    missing = run("users", "set-role", "nobody@example.com", "admin")
    assert missing.exit_code == 4


def test_audit_lists_each_cli_action_with_the_local_actor(run: Any) -> None:
    assert _json(run("audit", "--json")) == []
    assert "no audit log" in run("audit").stdout
    run("users", "create", "--email", "bob@example.com")
    key = _json(run("keys", "create", "--name", "ci", "--user", "bob@example.com", "--json"))
    run("keys", "update", key["id"], "--rpm", "7")
    rotated = _json(run("keys", "rotate", key["id"], "--yes", "--json"))
    run("keys", "revoke", rotated["id"], "--yes")
    run("users", "set-role", "bob@example.com", "admin")
    run("users", "disable", "bob@example.com")
    entries = _json(run("audit", "--json"))
    assert [e["action"] for e in entries] == [
        "users.disable",
        "users.set_role",
        "keys.revoke",
        "keys.rotate",
        "keys.update",
        "keys.create",
        "users.create",
    ]
    me = f"local:{getpass.getuser()}"
    assert {(e["actor"], e["actor_kind"], e["source"]) for e in entries} == {(me, "local", "cli")}
    dump = json.dumps(entries)
    assert key["key"] not in dump and rotated["key"] not in dump
    keys_only = _json(run("audit", "--action", "keys.*", "--limit", "2", "--json"))
    assert [e["action"] for e in keys_only] == ["keys.revoke", "keys.rotate"]
    assert _json(run("audit", "--actor", "someone@example.com", "--json")) == []
    assert len(_json(run("audit", "--since", "1h", "--actor", me, "--json"))) == 7
    table = run("audit")
    assert "keys.update" in table.stdout and "rpm=" in table.stdout
    bad = run("audit", "--action", "drop table")
    assert bad.exit_code == 2 and "invalid action" in bad.stderr


def test_usage_recent_and_new_groupings(run: Any) -> None:
    assert _json(run("usage", "recent", "--json")) == []
    assert "no recent requests" in run("usage", "recent").stdout
    for by in ("hour", "status"):
        assert _json(run("usage", "stats", "--by", by, "--json"))["rows"] == []
    bad = run("usage", "recent", "--limit", "0")
    assert bad.exit_code == 2 and "invalid limit" in bad.stderr
    missing = run("usage", "stats", "--key", "llmgw_AAAAAA")
    assert missing.exit_code == 4
