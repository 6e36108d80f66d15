"""The admin commands with ``--url``/``--token`` (remote mode): a wrong URL is exit 9 with a hint,
bad flags are exit 2 before any request, the token is never printed, and remote mode loads no
database code while local mode loads no httpx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult

LLMGW = str(Path(sys.executable).with_name("llmgw"))
FRESH = {"id", "prefix", "created_at", "key", "rotated_from", "email", "revoked_at", "user_id"}
"""Fields that differ between two objects created one in each mode."""

Run = Callable[..., CliResult]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TOKEN = "llmgw_" + "T0k3n" * 8 + "abc"


def test_a_wrong_url_is_exit_9_naming_it_with_a_hint(cli: Run) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    res = cli("--url", url, "--token", TOKEN, "keys", "list")
    assert res.exit_code == 9
    assert res.stderr.splitlines() == [
        f"Error: cannot reach the llmgw server at {url}: connection refused",
        "hint: is `llmgw serve` running there? check --url / LLMGW_URL",
    ]
    assert TOKEN not in res.stderr + res.stdout
    res = cli("users", "list", env={"LLMGW_URL": url, "LLMGW_TOKEN": TOKEN})
    assert res.exit_code == 9 and TOKEN not in res.stderr


def test_a_url_that_is_not_http_or_no_token_is_exit_2(cli: Run) -> None:
    res = cli("--url", "localhost:8080", "--token", TOKEN, "users", "list")
    assert (res.exit_code, res.stderr.splitlines()[0]) == (2, "Error: --url is not an http(s) URL")
    res = cli("--url", "http://127.0.0.1:1", "audit")
    assert res.exit_code == 2 and "LLMGW_TOKEN" in res.stderr


def test_url_after_the_command_says_where_it_goes(cli: Run) -> None:
    res = cli("keys", "list", "--url", "http://127.0.0.1:1")
    assert res.exit_code == 2
    assert "--url and --token go before the command: llmgw --url URL keys list" in res.stderr


def test_commands_that_read_the_database_themselves_refuse_url(cli: Run, home: Path) -> None:
    """usage export would otherwise answer quietly from a local (empty) database."""
    for args in (("usage", "export", "--format", "csv"), ("usage", "rejected")):
        res = cli("--url", "http://127.0.0.1:1", "--token", TOKEN, *args)
        assert res.exit_code == 2, args
        assert "works on the database directly, not through --url" in res.stderr
    assert not list(home.glob("*.db"))


def test_remote_mode_never_loads_the_database_stack(tmp_path: Path) -> None:
    """keys list --url imports httpx, not SQLAlchemy; local mode never imports httpx."""
    code = (
        "import sys, json\n"
        "from llmgw.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    url = f"http://127.0.0.1:{_free_port()}"
    env = {**os.environ, "LLMGW_HOME": str(tmp_path)}
    remote = subprocess.run(
        [sys.executable, "-c", code, "--url", url, "--token", TOKEN, "keys", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    loaded = set(json.loads(remote.stderr.splitlines()[-1]))
    assert "httpx" in loaded and "sqlalchemy" not in loaded
    local = subprocess.run(
        [sys.executable, "-c", code, "keys", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "httpx" not in set(json.loads(local.stderr.splitlines()[-1]))
