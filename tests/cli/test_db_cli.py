"""``llmgw db upgrade/current/downgrade`` on SQLite and PostgreSQL via LLMGW_DATABASE_URL."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from llmgw.storage.db import make_engine

TABLES = {"users", "api_keys", "usage", "provider_status"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_current_downgrade_and_upgrade_again(cli: Any, db_url: str) -> None:
    env = {"LLMGW_DATABASE_URL": db_url}

    def current() -> dict[str, Any]:
        result = cli("db", "current", "--json", env=env)
        assert result.exit_code == 0, result.stderr
        return dict(json.loads(result.stdout))

    empty = current()
    assert empty["current"] is None and empty["up_to_date"] is False and empty["head"]
    assert "empty" in cli("db", "current", env=env).stdout

    up = cli("db", "upgrade", env=env)
    assert up.exit_code == 0, up.stderr
    assert _tables(db_url) >= TABLES
    state = current()
    assert state["current"] == state["head"] and state["up_to_date"] is True
    assert "up to date" in cli("db", "current", env=env).stdout

    # A key written now must be gone after `downgrade base` and the schema must come back clean.
    assert cli("keys", "create", "--name", "k", env=env).exit_code == 0
    down = cli("db", "downgrade", "base", "--yes", env=env)
    assert down.exit_code == 0, down.stderr
    assert _tables(db_url) == set()
    assert current()["current"] is None

    again = cli("db", "upgrade", "head", env=env)
    assert again.exit_code == 0, again.stderr
    assert _tables(db_url) >= TABLES
    listed = cli("keys", "list", "--json", env=env)
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_admin_commands_migrate_an_empty_database(cli: Any, db_url: str) -> None:
    env = {"LLMGW_DATABASE_URL": db_url}
    assert cli("users", "list", "--json", env=env).exit_code == 0
    assert _tables(db_url) >= TABLES


def test_downgrade_to_an_unknown_revision_is_an_error_without_traceback(
    cli: Any, db_url: str
) -> None:
    env = {"LLMGW_DATABASE_URL": db_url}
    assert cli("db", "upgrade", env=env).exit_code == 0
    result = cli("db", "downgrade", "nosuchrev", env=env)
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert _tables(db_url) >= TABLES
