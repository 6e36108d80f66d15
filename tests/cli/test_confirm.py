"""Destructive commands ask first (issue 8 item 11): a prompt on a terminal, ``--yes`` otherwise.

``db downgrade`` (drops tables), ``keys revoke`` and ``keys rotate`` (a secret stops working for
good). Without a terminal and without ``--yes`` they exit 2 and change nothing; on a terminal,
answering no exits 1 and changes nothing, yes goes ahead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from llmgw.storage.db import make_engine


def _tables(home: Path) -> set[str]:
    engine = make_engine(f"sqlite:///{home / 'llmgw.db'}")
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _status(cli: Any, key_id: str) -> str:
    listed = json.loads(cli("keys", "list", "--all", "--json").stdout)
    return str(next(k["status"] for k in listed if k["id"] == key_id))


def _refused(result: Any) -> None:
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ") and "not confirmed" in lines[0]
    assert lines[1].startswith("hint: ") and "--yes" in lines[1]
    assert result.stdout == ""


def test_downgrade_without_a_terminal_needs_yes(cli: Any, home: Path) -> None:
    made = json.loads(cli("keys", "create", "--name", "k", "--json").stdout)
    _refused(cli("db", "downgrade", "base"))
    assert "api_keys" in _tables(home) and _status(cli, made["id"]) == "active"
    down = cli("db", "downgrade", "base", "--yes")
    assert down.exit_code == 0, down.stderr
    assert _tables(home) == set()


def test_downgrade_typo_is_exit_2_before_any_question(cli: Any, home: Path) -> None:
    assert cli("db", "upgrade").exit_code == 0
    result = cli("db", "downgrade", "nosuchrev")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot migrate to revision 'nosuchrev'")


def test_revoke_and_rotate_without_a_terminal_need_yes(cli: Any) -> None:
    made = json.loads(cli("keys", "create", "--name", "k", "--json").stdout)
    _refused(cli("keys", "revoke", made["id"]))
    _refused(cli("keys", "rotate", made["prefix"], "--json"))
    assert _status(cli, made["id"]) == "active"
    assert len(json.loads(cli("keys", "list", "--all", "--json").stdout)) == 1
    assert cli("keys", "revoke", made["id"], "-y").exit_code == 0
    assert _status(cli, made["id"]) == "revoked"
    assert cli("keys", "revoke", made["id"]).exit_code == 0  # already revoked: nothing to ask


def test_downgrade_on_a_terminal_asks_and_no_keeps_everything(
    cli: Any, home: Path, terminal: Any
) -> None:
    assert cli("keys", "create", "--name", "k").exit_code == 0
    term = terminal("db", "downgrade", "base")
    term.expect("drops every table (keys, users, usage) and their rows. [y/N]:")
    term.send("n\n")
    assert term.wait() == 1
    assert "Error: not confirmed; nothing was changed" in term.text
    assert "api_keys" in _tables(home)

    term = terminal("db", "downgrade", "base")
    term.expect("[y/N]:")
    term.send("y\n")
    assert term.wait() == 0, term.text
    assert "-> empty" in term.text
    assert _tables(home) == set()


def test_revoke_on_a_terminal_asks_with_the_key_name(cli: Any, terminal: Any) -> None:
    made = json.loads(cli("keys", "create", "--name", "ci-bot", "--json").stdout)
    term = terminal("keys", "revoke", made["id"][:8])
    term.expect(f"Revoke key ci-bot ({made['prefix']})?")
    term.send("\n")  # the default is no
    assert term.wait() == 1
    assert _status(cli, made["id"]) == "active"

    term = terminal("keys", "revoke", made["id"][:8])
    term.expect("[y/N]:")
    term.send("y\n")
    assert term.wait() == 0, term.text
    assert _status(cli, made["id"]) == "revoked"
