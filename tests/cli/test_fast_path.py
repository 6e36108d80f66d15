"""``llmgw keys list``'s fast path (``llmgw.cli.fast``) prints exactly what the Typer app prints.

Each case runs twice in this process: through the entry point (the fast path when it applies)
and through the Typer app alone; stdout, stderr and the exit code must be equal byte for byte.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmgw.cli import fast
from llmgw.cli import main as entry
from llmgw.config import load_settings
from llmgw.config_layers import SETTINGS_FIELDS, plain_database_url

Outcome = tuple[int, str, str]


@pytest.fixture
def both(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[Outcome, Outcome]]:
    """``llmgw ARGS`` through ``main`` and through the Typer app: (code, stdout, stderr) each."""
    main_module = sys.modules["llmgw.cli.main"]

    def once(run: Callable[[], Any]) -> Outcome:
        capsys.readouterr()
        try:
            run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        out = capsys.readouterr()
        return code, out.out, out.err

    def go(*args: str) -> tuple[Outcome, Outcome]:
        quick = once(lambda: entry(list(args)))
        slow = once(lambda: main_module._run_app(list(args), "--debug" in args))
        return quick, slow

    return go


@pytest.fixture
def keys(cli: Any, home: Path) -> None:
    """A current SQLite database with a user's key, a plain key, an expiring and a revoked one."""
    assert cli("users", "create", "--email", "ann@example.com").exit_code == 0
    assert cli("keys", "create", "--name", "ann's", "--user", "ann@example.com").exit_code == 0
    assert cli("keys", "create", "--name", "ci pipeline", "--rpm", "5").exit_code == 0
    assert cli("keys", "create", "--name", "temp", "--expires", "2d").exit_code == 0
    gone = json.loads(cli("keys", "create", "--name", "gone", "--json").stdout)
    assert cli("keys", "revoke", gone["id"], "--yes").exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "list"),
        ("keys", "list", "--json"),
        ("keys", "list", "-a"),
        ("keys", "list", "--all", "--json"),
        ("keys", "list", "--json", "--all", "-a"),
        ("--debug", "keys", "list"),
    ],
)
def test_fast_keys_list_prints_what_typer_prints(
    both: Callable[..., tuple[Outcome, Outcome]], keys: None, args: tuple[str, ...]
) -> None:
    assert fast.answer(list(args)) == 0  # the fast path took it
    quick, slow = both(*args)
    assert quick == slow
    assert quick[0] == 0 and "ci pipeline" in quick[1]
    assert ("gone" in quick[1]) == ("-a" in args or "--all" in args)


def test_a_config_file_naming_the_database_is_read_the_same(
    both: Callable[..., tuple[Outcome, Outcome]], keys: None, home: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{home / "llmgw.db"}"\n')
    for args in (("-c", str(cfg), "keys", "list"), (f"--config={cfg}", "keys", "list", "--json")):
        assert fast.answer(list(args)) == 0
        quick, slow = both(*args)
        assert quick == slow and quick[0] == 0 and "temp" in quick[1]


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "list", "--help"),
        ("keys", "list", "--jsn"),
        ("keys", "list", "extra"),
        ("keys", "list", "--url", "http://127.0.0.1:1"),
        ("--url", "http://127.0.0.1:1", "keys", "list"),
        ("--version", "keys", "list"),
        ("keys", "show", "x"),
        ("keys",),
        ("-c",),
        ("--config", "", "keys", "list"),
        ("--config", str(Path("/nonexistent/llmgw.toml")), "keys", "list"),
    ],
)
def test_everything_else_goes_to_typer_with_its_own_messages(
    both: Callable[..., tuple[Outcome, Outcome]], keys: None, args: tuple[str, ...]
) -> None:
    assert fast.answer(list(args)) is None
    quick, slow = both(*args)
    assert quick == slow


def test_settings_that_need_validation_take_the_typer_path(
    both: Callable[..., tuple[Outcome, Outcome]],
    keys: None,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A config with more than the database (here a port that is no number), or a server URL: Typer."""
    (home / "config.toml").write_text('[server]\nport = "eighty"\n')
    assert fast.answer(["keys", "list"]) is None
    quick, slow = both("keys", "list")
    assert quick == slow and quick[0] == 2 and "server.port" in quick[2]
    (home / "config.toml").unlink()
    monkeypatch.setenv("LLMGW_URL", "http://127.0.0.1:1")
    assert fast.answer(["keys", "list"]) is None


def test_an_old_or_missing_database_takes_the_typer_path(home: Path, cli: Any) -> None:
    assert fast.answer(["keys", "list"]) is None  # no file yet: Typer creates and migrates it
    res = cli("keys", "list", "--json")
    assert res.exit_code == 0 and res.stdout == "[]\n"
    assert fast.answer(["keys", "list"]) == 0


def test_settings_fields_list_matches_the_settings_model() -> None:
    from llmgw.config import Settings

    assert set(Settings.model_fields) == SETTINGS_FIELDS


@pytest.mark.parametrize(
    ("file", "env"),
    [
        (None, {}),
        (None, {"LLMGW_HOME": "~/somewhere/"}),
        (None, {"LLMGW_HOME": ""}),
        (None, {"LLMGW_HOME": "rel//dir/."}),
        (None, {"LLMGW_DATABASE_URL": "postgresql://u@h/db"}),
        (None, {"LLMGW_DATABASE__URL": "sqlite:////x/y.db", "LLMGW_OTHER_TOOL": "1"}),
        ('home = "/srv/gw"\n', {}),
        ('home = "/srv/gw"\n[database]\nurl = "sqlite:////a.db"\n', {"LLMGW_HOME": "/h"}),
        ('[database]\nurl = "sqlite:////a.db"\n', {"LLMGW_DATABASE_URL": "sqlite:////b.db"}),
    ],
)
def test_the_light_reader_gives_the_settings_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str | None, env: dict[str, str]
) -> None:
    """Database URL, home and environment overrides: the same as pydantic's ``Settings``."""
    monkeypatch.delenv("LLMGW_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = None
    if file is not None:
        cfg = tmp_path / "c.toml"
        cfg.write_text(file)
    want = load_settings(cfg).settings.database_url
    assert plain_database_url(cfg, os.environ) == want


@pytest.mark.parametrize(
    ("file", "env"),
    [
        ("log_level = 'debug'\n", {}),
        ("[database]\npool_size = 3\n", {}),
        ("not toml [", {}),
        (None, {"LLMGW_SERVER__PORT": "8080"}),
        (None, {"LLMGW_DATABASE_URL": '{"a": 1}'}),
        ("home = 5\n", {}),
    ],
)
def test_the_light_reader_declines_what_needs_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str | None, env: dict[str, str]
) -> None:
    monkeypatch.delenv("LLMGW_HOME", raising=False)  # else it would hide the file's home
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = None
    if file is not None:
        cfg = tmp_path / "c.toml"
        cfg.write_text(file)
    assert plain_database_url(cfg, os.environ) is None


def test_plain_defaults_are_the_settings_defaults(tmp_path: Path) -> None:
    from llmgw.config import Settings
    from llmgw.config_layers import ALERTS_MODE, DATABASE_DEFAULTS

    s = Settings(home=tmp_path)
    assert {
        "pool_size": s.database.pool_size,
        "connect_timeout": s.database.connect_timeout,
        "dead_connection_timeout": s.database.dead_connection_timeout,
    } == DATABASE_DEFAULTS
    assert s.alerts.mode == ALERTS_MODE
    assert s.tui.keys == {} and s.redis_url is None  # no keymap, no change broadcast


@pytest.mark.parametrize(
    "args",
    [
        ("dash", "--help"),
        ("dash", "--interval"),
        ("dash", "extra"),
        ("dash", "--debug"),
        ("--version", "dash"),
        ("-c", "--url", "dash"),
        ("--url", "", "dash"),
        ("keys", "dash"),
    ],
)
def test_dash_arguments_the_fast_path_leaves_to_typer(args: tuple[str, ...]) -> None:
    assert fast.dash_args(list(args)) is None


class _Tty:
    """A terminal for ``isatty`` that swallows what is written."""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("dash",), {}),
        (("--debug", "dash", "--interval", "0.5"), {}),
        (("dash",), {"LLMGW_URL": "http://127.0.0.1:1", "LLMGW_TOKEN": "llmgw_t"}),
        (("--url", "http://b:1", "--token", "llmgw_r", "dash"), {"LLMGW_URL": "http://a:1"}),
        (("--url=http://b:1", "dash", "--token=llmgw_o", "--interval=3"), {}),
        (("dash", "--url", "http://c:1", "--token", "llmgw_o"), {"LLMGW_TOKEN": "llmgw_e"}),
    ],
)
def test_fast_dash_opens_what_typer_opens(
    args: tuple[str, ...],
    env: dict[str, str],
    home: Path,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """URL, token (flag, then variable, then the root's), interval, keymap, database: the same."""
    import llmgw.cli.dash_launch as dash_launch

    assert cli("keys", "list").exit_code == 0  # a current database
    seen: list[dict[str, Any]] = []

    def launch(**kw: Any) -> int:
        got = {k: kw[k] for k in ("url", "token", "interval", "keymap")}
        got["database"] = kw["settings"].database_url
        if not kw["url"]:
            ops, alerts = kw["local"]()
            got["engine"] = str(ops.engine.url)
            got["mode"] = alerts.mode
            ops.engine.dispose()
        seen.append(got)
        return 0

    monkeypatch.setattr(dash_launch, "launch", launch)
    monkeypatch.setattr(sys, "stdin", _Tty())
    monkeypatch.setattr(sys, "stdout", _Tty())
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert fast.answer(list(args)) == 0
    with pytest.raises(SystemExit) as exc:
        sys.modules["llmgw.cli.main"]._run_app(list(args), False)
    assert exc.value.code == 0
    assert len(seen) == 2 and seen[0] == seen[1], seen


def test_fast_dash_without_a_terminal_or_with_a_login_is_typers(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert fast.answer(["dash"]) is None  # stdin is not a terminal here: Typer says so
    monkeypatch.setattr(sys, "stdin", _Tty())
    monkeypatch.setattr(sys, "stdout", _Tty())
    assert fast.answer(["dash", "--url", "http://127.0.0.1:1"]) is None  # the stored login
    assert fast.answer(["dash", "--interval", "0.1"]) is None  # Typer's range message
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[tui]\nkeys = {quit = "ctrl+q"}\n')
    assert fast.answer(["dash"]) is None  # a keymap to check


@pytest.mark.parametrize(
    "args",
    [
        ("usage", "stats", "--since", "2026-11-01", "--by", "model"),
        ("usage", "stats", "--since=2026-11-03T05:17", "--until", "2026-11-20T11:11", "--by=key"),
        ("usage", "stats", "--by", "user", "--since", "2026-11-01", "--json"),
        (
            "usage",
            "stats",
            "--csv",
            "--by",
            "day",
            "--since",
            "2026-11-10",
            "--until",
            "2026-11-15",
        ),
        ("--debug", "usage", "stats", "--since", "2026-11-30", "--by", "hour"),
        ("usage", "stats", "--since", "2026-11-01", "--by", "status", "--json"),
        ("usage", "stats", "--since", "2026-11-01", "--by", "version", "--csv"),
        ("usage", "stats", "--since", "30d", "--by", "provider"),
    ],
)
def test_fast_usage_stats_prints_what_typer_prints(
    both: Callable[..., tuple[Outcome, Outcome]],
    engine: Any,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
) -> None:
    """Issue 13: ``usage stats`` answered without Typer and the settings, on SQLite and
    PostgreSQL, prints the same bytes (the seeded month, so a window relative to now is empty)."""
    from tests import usage_month

    usage_month.seed(engine, rows=600)
    monkeypatch.setenv("LLMGW_DATABASE_URL", db_url)
    quick, slow = both(*args)
    assert quick == slow
    assert quick[0] == 0 and quick[1]
    assert fast.usage_stats_args(list(args)) is not None
    assert fast.answer(list(args)) == 0  # the fast path took it


@pytest.mark.parametrize(
    "args",
    [
        ("usage", "stats", "--key", "abc"),  # filters: the Typer path
        ("usage", "stats", "--by"),
        ("usage", "stats", "--since", "-5d"),
        ("--url", "http://x", "usage", "stats"),
        ("usage", "stats", "--help"),
    ],
)
def test_usage_stats_arguments_the_fast_path_leaves_to_typer(args: tuple[str, ...]) -> None:
    assert fast.usage_stats_args(list(args)) is None


@pytest.mark.parametrize(
    "args",
    [
        ("usage", "stats", "--by", "week"),
        ("usage", "stats", "--since", "yesterday"),
        ("usage", "stats", "--json", "--csv"),
        ("usage", "stats", "--since", "1d", "--until", "2d"),
    ],
)
def test_bad_usage_stats_values_get_typers_errors(
    both: Callable[..., tuple[Outcome, Outcome]], engine: Any, db_url: str,
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...],
) -> None:  # fmt: skip
    monkeypatch.setenv("LLMGW_DATABASE_URL", db_url)
    assert fast.answer(list(args)) is None
    quick, slow = both(*args)
    assert quick == slow and quick[0] == 2 and "Error:" in quick[2]
