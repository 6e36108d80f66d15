"""Tables fit an 80-column terminal and never break an id (issue 8 item 12).

Checked on a real pseudo-terminal 80 columns wide (the width Rich reads from the terminal) and
with ``COLUMNS=80`` on a pipe: no line is wider than 80 cells, and each id, key prefix, status
and date is whole on one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.cells import cell_len

CONFIG = """
[[providers]]
name = "local"
kind = "openai"
base_url = "http://127.0.0.1:9001/v1/a/rather/long/path/to/the/upstream/api"
models = ["gpt-4o-mini", "text-embedding-3-small"]
"""


def _assert_fits(text: str, whole: list[str], width: int = 80) -> None:
    lines = [
        x for x in text.splitlines() if not x.startswith("config file: ")
    ]  # a path, not a table
    assert lines, text
    for line in lines:
        assert cell_len(line) <= width, f"{cell_len(line)} cells: {line!r}\n{text}"
    for token in whole:
        assert any(token in line for line in lines), f"{token!r} broken or missing:\n{text}"


def _seed(cli: Any) -> list[dict[str, Any]]:
    email = "annabelle.longname-the-third@example.com"
    assert cli("users", "create", "--email", email, "--name", "Annabelle Longname").exit_code == 0
    made = []
    for name in ("ci-bot for the nightly integration build", "k2"):
        r = cli("keys", "create", "--name", name, "--user", email, "--expires", "30d", "--json")
        assert r.exit_code == 0, r.stderr
        made.append(json.loads(r.stdout))
    return made


def test_keys_and_users_list_fit_a_real_80_column_terminal(cli: Any, terminal: Any) -> None:
    made = _seed(cli)
    term = terminal("keys", "list", cols=80)
    assert term.wait() == 0, term.text
    _assert_fits(term.text, [w for k in made for w in (k["id"][:8], k["prefix"], "active")])

    users = json.loads(cli("users", "list", "--json").stdout)
    term = terminal("users", "list", cols=80)
    assert term.wait() == 0, term.text
    _assert_fits(term.text, [users[0]["id"][:8], "active"])


def test_a_wide_terminal_still_shows_every_column(cli: Any, terminal: Any) -> None:
    _seed(cli)
    term = terminal("keys", "list", cols=200)
    assert term.wait() == 0, term.text
    for header in ("created", "expires", "last used", "user"):
        assert header in term.text


def test_columns_80_on_a_pipe(cli: Any, home: Path) -> None:
    made = _seed(cli)
    env = {"COLUMNS": "80"}
    r = cli("keys", "show", made[0]["prefix"], env=env)
    _assert_fits(r.stdout, [made[0]["id"], made[0]["prefix"]])
    r = cli("keys", "list", "--all", env=env)
    _assert_fits(r.stdout, [made[1]["id"][:8], made[1]["prefix"]])

    cfg = home / "wide.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(CONFIG, encoding="utf-8")
    r = cli("--config", str(cfg), "providers", "list", env=env)
    assert r.exit_code == 0, r.stderr
    _assert_fits(r.stdout, ["local", "openai"])
    r = cli("--config", str(cfg), "config", "show", env=env)
    assert r.exit_code == 0, r.stderr
    _assert_fits(r.stdout, ["providers.0.first_byte_timeout", "server.key_cache_seconds"])
