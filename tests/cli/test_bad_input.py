"""Bad input gets one ``Error:`` line (+ optional hint), a documented exit code, and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llmgw.storage.db import make_engine

DOCUMENTED = {1, 2, 3, 4, 5, 6, 7, 8, 9, 130}


def assert_one_error(result: Any, code: int, *words: str) -> str:
    """Exit ``code``; stderr is one ``Error:`` line plus at most a ``hint:`` line; no traceback."""
    assert code in DOCUMENTED
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("Error: "), result.stderr
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for word in words:
        assert word in lines[0], (word, lines[0])
    return str(lines[0])


def _home_files(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")) if home.exists() else []


def _key_rows(home: Path) -> int:
    engine = make_engine(f"sqlite:///{home / 'llmgw.db'}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM api_keys")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[server\nport = 1\n", ("invalid TOML",)),
        ("[server]\nport = 'eighty'\n", ("server.port",)),
        ("[server]\nprot = 8080\n", ("server.prot", "unknown setting")),
        ("[database]\nurl = 5\n", ("database.url",)),
        ("\xff\xfe", ()),
    ],
)
def test_malformed_config_creates_no_database(
    cli: Any, home: Path, tmp_path: Path, text: str, words: tuple[str, ...]
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(text.encode("latin-1"))
    result = cli("--config", str(cfg), "keys", "create", "--name", "x")
    line = assert_one_error(result, 2, *words)
    assert str(cfg) in line
    assert result.stdout == ""
    assert not (home / "llmgw.db").exists()


def test_malformed_config_in_home_is_found_and_reported(cli: Any, home: Path) -> None:
    home.mkdir(parents=True)
    (home / "config.toml").write_text("log_level = 'loud'\n")
    assert_one_error(cli("keys", "list"), 2, "log_level")
    assert _home_files(home) == ["config.toml"]


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "create", "--name", "x", "--bogus"),
        ("keys", "create", "--bogus", "--name", "x"),
        ("keys", "list", "--al"),
        ("--nope", "keys", "list"),
        ("frobnicate",),
        ("keys", "frobnicate"),
        ("keys", "create"),  # --name is required
        ("keys", "create", "--name"),  # flag without its value
        ("keys", "create", "--name", "x", "--rpm", "ten"),
        ("users", "create"),
        ("keys", "revoke"),
    ],
)
def test_unknown_flags_and_commands_are_exit_2_and_write_nothing(
    cli: Any, home: Path, args: tuple[str, ...]
) -> None:
    assert_one_error(cli(*args), 2)
    assert _home_files(home) == []


def test_a_mistyped_command_gets_a_suggestion(cli: Any) -> None:
    """The root group imports commands lazily; its suggestions still cover every command."""
    for typo, meant in (("kys", "keys"), ("sreve", "serve"), ("usrs", "users")):
        result = cli(typo, "list")
        assert result.exit_code == 2
        assert f"Did you mean {meant!r}?" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--expires", "3x"),
        ("--expires", "0d"),
        ("--expires", "-5d"),
        ("--expires", ""),
        ("--expires", "30 days"),
        ("--expires", "99999999d"),  # past year 9999
        ("--expires", "999999999w"),  # more days than a timedelta holds
        ("--rpm", "0"),
        ("--tpm", "-1"),
        ("--models", ","),
        ("--models", "a,,b"),
        ("--user", ""),
        ("--user", "  "),
    ],
)
def test_bad_values_are_exit_2_before_the_database_is_touched(
    cli: Any, home: Path, args: tuple[str, ...]
) -> None:
    assert_one_error(cli("keys", "create", "--name", "x", *args), 2)
    assert _home_files(home) == []


def test_bad_duration_names_the_flag(cli: Any) -> None:
    assert_one_error(cli("keys", "create", "--name", "x", "--expires", "3x"), 2, "--expires", "3x")


def test_blank_name_is_refused(cli: Any, home: Path) -> None:
    assert_one_error(cli("keys", "create", "--name", "  "), 2, "name")
    assert _home_files(home) == []


def test_duplicate_email_is_exit_5_and_keeps_one_user(cli: Any) -> None:
    assert cli("users", "create", "--email", "a@example.com").exit_code == 0
    assert_one_error(cli("users", "create", "--email", "a@example.com"), 5, "a@example.com")
    assert len(json.loads(cli("users", "list", "--json").stdout)) == 1


def test_revoking_an_unknown_key_is_exit_4_and_changes_nothing(cli: Any) -> None:
    made = json.loads(cli("keys", "create", "--name", "x", "--json").stdout)
    for ref in ("deadbeef", "00000000-0000-4000-8000-000000000000", "llmgw_AAAAAA", "y"):
        assert_one_error(cli("keys", "revoke", ref), 4)
    assert_one_error(cli("keys", "rotate", "deadbeef"), 4)
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert [(k["id"], k["status"]) for k in listed] == [(made["id"], "active")]


def test_a_pasted_secret_is_never_echoed(cli: Any) -> None:
    made = json.loads(cli("keys", "create", "--name", "x", "--json").stdout)
    wrong = made["key"][:-1] + ("A" if made["key"][-1] != "A" else "B")
    result = cli("keys", "revoke", wrong, "--yes")
    assert_one_error(result, 4)
    assert wrong not in result.stderr and wrong[12:] not in result.stderr
    result = cli("keys", "revoke", made["key"], "--yes")  # the real secret names its key
    assert result.exit_code == 0, result.stderr
    assert made["key"] not in result.stdout + result.stderr
    assert made["key"][12:] not in result.stdout + result.stderr


def test_key_for_unknown_user_writes_no_key(cli: Any, home: Path) -> None:
    assert cli("keys", "list").exit_code == 0  # database exists, empty
    assert_one_error(cli("keys", "create", "--name", "x", "--user", "ghost@example.com"), 4)
    assert _key_rows(home) == 0


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/x",
        "postgresql://postgres:pa55word-s3cret@127.0.0.1:1/x",
    ],
)
def test_unreachable_database_is_exit_3_without_the_password(
    cli: Any, home: Path, url: str
) -> None:
    for args in (("keys", "create", "--name", "x"), ("users", "list"), ("db", "current")):
        result = cli(*args, env={"LLMGW_DATABASE_URL": url})
        line = assert_one_error(result, 3, "127.0.0.1:1")
        assert "pa55word" not in result.stderr and "pa55word" not in line
        assert result.stdout == ""
    assert _home_files(home) == []


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url at all"])
def test_unsupported_database_url_is_exit_2(cli: Any, home: Path, url: str) -> None:
    assert_one_error(cli("keys", "list", env={"LLMGW_DATABASE_URL": url}), 2)
    assert _home_files(home) == []
