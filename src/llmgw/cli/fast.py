"""The CLI's fast path: ``llmgw keys list`` answered without Typer, pydantic or SQLAlchemy;
``llmgw dash`` started without Typer; ``llmgw usage stats`` (issue 13: <= 1 s over 10M rows on
PostgreSQL) without Typer, the pydantic settings and SQLAlchemy (the Typer command's statement in
plain SQL through ``sqlite3`` or ``psycopg``, ``usage/stats_sql.py``; only with a current
database and no stored provider, whose currencies come from the settings).

Scripts call ``llmgw keys list`` in loops, and Typer (which loads pydantic to convert
parameters), the pydantic settings and SQLAlchemy were most of its start-up. ``answer`` handles
the command only when it is sure to print exactly what the Typer app would:

- the arguments are ``[--debug] [-c|--config FILE] keys list [--all|-a] [--json]`` in any order
  within their level, nothing else (no ``--help``, ``--url``, ``--token``, ``--version``, no
  unknown or misspelled option: those keep Typer's own messages);
- ``LLMGW_URL`` is unset (remote mode goes to the server) and the shell is not completing;
- the config file and ``LLMGW_*`` variables set nothing but ``home`` and ``database.url``
  (``config_layers.plain_database_url``: nothing that could fail validation);
- the database is a SQLite file whose schema is current (``admin/quick.py``).

Otherwise it returns ``None`` and ``llmgw.cli.main`` runs the Typer app, which gives the same
output the slow way (or the error). tests/cli/test_fast_path.py runs each case both ways and
compares stdout, stderr and exit code byte for byte. A departure listed in docs/architecture.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

if TYPE_CHECKING:
    from llmgw.storage.opener import EngineOpener
    from llmgw.usage.stats_sql import GroupBy

__all__ = ["answer", "dash_args", "keys_list_args", "usage_stats_args"]


class KeysList(NamedTuple):
    """``llmgw keys list`` as the fast path understood it."""

    config_file: Path | None
    include_revoked: bool
    json: bool


def keys_list_args(args: Sequence[str]) -> KeysList | None:
    """The parsed arguments when they are exactly a local ``keys list``, else ``None``."""
    config: str | None = None
    i = 0
    while i < len(args) and args[i].startswith("-"):  # the root's options
        tok = args[i]
        if tok in ("-c", "--config"):
            if i + 1 >= len(args):
                return None
            config = args[i + 1]
            i += 2
            continue
        if tok.startswith("--config="):
            config = tok.removeprefix("--config=")
        elif tok != "--debug":
            return None
        i += 1
    if list(args[i : i + 2]) != ["keys", "list"]:
        return None
    flags = args[i + 2 :]
    if not set(flags) <= {"--all", "-a", "--json"}:
        return None
    if config is not None and (not config or config.startswith("-")):
        return None  # Typer's reading of these is not worth copying
    return KeysList(
        Path(config) if config is not None else None,
        "--all" in flags or "-a" in flags,
        "--json" in flags,
    )


class UsageStats(NamedTuple):
    """``llmgw usage stats`` as the fast path understood it (values not yet checked)."""

    config_file: Path | None
    since: str
    until: str | None
    by: str
    json: bool
    csv: bool


_STATS_OWN = ("--since", "--until", "--by")


def usage_stats_args(args: Sequence[str]) -> UsageStats | None:
    """The parsed arguments when they are exactly a local ``usage stats`` with ``--since``,
    ``--until``, ``--by``, ``--json`` or ``--csv`` (no filter), else ``None``."""
    root = _options(args, ("--config",))
    if root is None or list(args[root[1] : root[1] + 2]) != ["usage", "stats"]:
        return None
    own: dict[str, str] = {}
    flags: set[str] = set()
    rest = list(args[root[1] + 2 :])
    i = 0
    while i < len(rest):
        tok = rest[i]
        name, eq, value = tok.partition("=")
        if tok in ("--json", "--csv"):
            flags.add(tok)
            i += 1
            continue
        if name not in _STATS_OWN:
            return None
        if not eq:
            if i + 1 >= len(rest):
                return None
            value = rest[i + 1]
            i += 1
        if not value or value.startswith("-"):
            return None  # Typer's reading of these is not worth copying
        own[name] = value
        i += 1
    config = root[0].get("--config")
    return UsageStats(
        Path(config) if config is not None else None,
        own.get("--since", "7d"),
        own.get("--until"),
        own.get("--by", "day"),
        "--json" in flags,
        "--csv" in flags,
    )


class Dash(NamedTuple):
    """``llmgw dash`` as the fast path understood it (URL and token not yet resolved)."""

    config_file: Path | None
    root: dict[str, str]
    """``--url``/``--token`` given before ``dash``."""
    own: dict[str, str]
    """``--url``/``--token``/``--interval`` given after ``dash``."""


_DASH_ROOT = ("--config", "--url", "--token")
_DASH_OWN = ("--url", "--token", "--interval")


def _options(args: Sequence[str], names: Sequence[str]) -> tuple[dict[str, str], int] | None:
    """Leading ``--name VALUE``/``--name=VALUE`` (and ``-c``, ``--debug`` at the root) until the
    first word; ``None`` for anything else."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        tok = args[i]
        name, eq, value = tok.partition("=")
        if tok == "--debug" and "--config" in names:
            i += 1
            continue
        if name == "-c" and not eq and "--config" in names:
            name = "--config"
        if name not in names:
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            value = args[i + 1]
            i += 1
        if not value or value.startswith("-"):
            return None  # Typer's reading of these is not worth copying
        out[name] = value
        i += 1
    return out, i


def dash_args(args: Sequence[str]) -> Dash | None:
    """The parsed arguments when they are exactly ``llmgw dash`` with known options, else ``None``."""
    root = _options(args, _DASH_ROOT)
    if root is None or args[root[1] : root[1] + 1] != ["dash"]:
        return None
    rest = args[root[1] + 1 :]
    own = _options(rest, _DASH_OWN)
    if own is None or own[1] != len(rest):
        return None
    config = root[0].pop("--config", None)
    return Dash(Path(config) if config is not None else None, root[0], own[0])


def answer(args: Sequence[str]) -> int | None:
    """Run the command and return its exit code, or ``None`` when the Typer app must run it."""
    env = os.environ
    if "_LLMGW_COMPLETE" in env:
        return None
    dash = dash_args(args)
    if dash is not None:
        return _dash(dash)
    stats = usage_stats_args(args)
    if stats is not None:
        return None if env.get("LLMGW_URL") else _usage_stats(stats)
    cmd = keys_list_args(args)
    if cmd is None or env.get("LLMGW_URL"):
        return None
    from llmgw.config_layers import plain_database_url

    url = plain_database_url(cmd.config_file, env)
    if url is None:
        return None
    from llmgw.admin.quick import keys_list

    records = keys_list(url, include_revoked=cmd.include_revoked, now=datetime.now(UTC))
    if records is None:
        return None
    from llmgw.cli.keys_view import show_keys

    show_keys(records, json=cmd.json)
    return 0


def _usage_stats(cmd: UsageStats) -> int | None:
    """``llmgw usage stats`` without Typer, the pydantic settings or SQLAlchemy: the rollup
    statement in plain SQL through ``sqlite3`` or ``psycopg`` (``usage/stats_sql.py``). Only
    with a config that sets nothing but home and database, a plain URL (``_stats_connection``),
    a database at the current schema with no stored provider (so every cost is in
    ``XXX:<provider>``, as ``LocalAdmin`` would split it), no long unfolded tail (the Typer
    path folds it first) and values the Typer path accepts; any error is left to that path."""
    from llmgw.config_layers import plain_database_url

    url = plain_database_url(cmd.config_file, os.environ)
    if url is None or cmd.json and cmd.csv:
        return None
    from llmgw.cli.usage_view import show_stats, window
    from llmgw.errors import LlmgwError

    try:
        start, end = window(cmd.since, cmd.until)
    except LlmgwError:
        return None
    from llmgw.usage.stats_sql import GROUPS, read_stats

    if cmd.by not in GROUPS:
        return None
    opened = _stats_connection(url)
    if opened is None:
        return None
    conn, dialect, errors = opened
    try:
        try:
            cur = conn.cursor()
            from llmgw.storage.revisions import VERSION_TABLE, scripted_head

            cur.execute(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608
            if [r[0] for r in cur.fetchall()] != [scripted_head()]:
                return None  # the Typer path migrates (SQLite) or explains
            cur.execute("SELECT count(*) FROM providers")
            if cur.fetchone()[0]:
                return None  # their currencies come from the settings
            rows = read_stats(conn, dialect, cast("GroupBy", cmd.by), start, end, {})
        except errors:
            return None  # locked, gone...: the Typer path explains it
    finally:
        conn.close()
    if rows is None:
        return None
    from llmgw.admin.records import usage_record

    show_stats([usage_record(r) for r in rows], cmd.by, start, end, json=cmd.json, as_csv=cmd.csv)
    return 0


_PLAIN_PG = re.compile(
    r"postgres(?:ql)?(?:\+psycopg)?://((?:[^:@/?#\s]+(?::[^@/?#\s]*)?@)?"
    r"[A-Za-z0-9.\-]+(?::\d{1,5})?/[A-Za-z0-9_\-]+)"
)


def _stats_connection(
    url: str,
) -> tuple[Any, str, type[Exception] | tuple[type[Exception], ...]] | None:
    """(DB-API connection, dialect, the driver's error class) for a SQLite file that exists or a
    plain ``postgresql://[user[:password]@]host[:port]/db`` URL (no query, no other driver);
    ``None`` otherwise or when it cannot connect (the Typer path explains)."""
    from llmgw.config_layers import DATABASE_DEFAULTS

    timeout = float(DATABASE_DEFAULTS["connect_timeout"])
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is None:
            return None  # no file yet (the Typer path creates and migrates it) or special
        import sqlite3

        try:
            lite = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=10)
        except sqlite3.Error:
            return None
        return lite, "sqlite", sqlite3.Error
    plain = _PLAIN_PG.fullmatch(url)
    if plain is None:
        return None
    import psycopg

    from llmgw.storage.tcp import with_tcp_checks

    dead = float(DATABASE_DEFAULTS["dead_connection_timeout"])
    try:
        pg = psycopg.connect(
            with_tcp_checks(f"postgresql://{plain.group(1)}", dead),
            connect_timeout=max(1, int(timeout)),
        )
    except psycopg.Error:
        return None
    return pg, "postgresql", psycopg.Error


def _sqlite_path(url: str) -> Path | None:
    from llmgw.admin.quick import sqlite_file

    return sqlite_file(url)


class _SettingsOnDemand:
    """The full ``Settings``, loaded (with pydantic) on first attribute access: for the
    dashboard's rare uses (testing a provider), long after the first paint."""

    def __init__(self, config_file: Path | None) -> None:
        self._config_file = config_file
        self._settings: Any = None

    def load(self) -> Any:
        """The settings, loaded now if they were not yet."""
        if self._settings is None:
            from llmgw.config import load_settings

            self._settings = load_settings(self._config_file).settings
        return self._settings

    @property
    def providers(self) -> list[Any]:
        """The config file's providers without loading: none, as this path's config sets only
        home and database (what Providers' first paint filters the status rows with)."""
        return [] if self._settings is None else list(self._settings.providers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.load(), name)


def _dash(cmd: Dash) -> int | None:
    """``llmgw dash`` without Typer and, before the first paint, without pydantic: only with a
    config that sets nothing but home and database (so every other setting is its default:
    no ``[tui] keys``, no Redis), an interval Typer would accept, and a token for a URL."""
    env = os.environ
    from llmgw.config_layers import ALERTS_MODE, DATABASE_DEFAULTS, plain_database_url

    database_url = plain_database_url(cmd.config_file, env)
    if database_url is None:
        return None
    # Typer's order: the command's own flag, then its env var (LLMGW_URL, LLMGW_TOKEN), then
    # the root's value (flag, else the same env var).
    url = cmd.own.get("--url") or env.get("LLMGW_URL") or cmd.root.get("--url")
    token = cmd.own.get("--token") or env.get("LLMGW_TOKEN") or cmd.root.get("--token")
    try:
        interval = float(cmd.own.get("--interval", "2.0"))
    except ValueError:
        return None
    if not 0.2 <= interval <= 3600 or (url and not token):
        return None  # Typer's range message; the stored login (its module loads Typer)
    import sys

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None  # Typer's path says so
    from llmgw.cli.dash_launch import launch

    settings = _SettingsOnDemand(cmd.config_file)
    opener: EngineOpener | None = None

    def local() -> tuple[Any, Any]:
        nonlocal opener
        from llmgw.cli.dash_launch import local_sources
        from llmgw.cli.state import open_engine

        def engine() -> Any:
            return open_engine(database_url, migrate=True, **DATABASE_DEFAULTS)

        ops, alerts, opener = local_sources(
            database_url, engine, settings=settings, on_change=None, mode=ALERTS_MODE
        )  # no Redis in a plain config: nothing to announce changes to
        return ops, alerts

    def warm_up() -> None:
        """After the first paint: the engine, then the full settings (the Usage screen's
        currencies, a provider test), so later screens do not wait for them."""
        if opener is not None:
            opener()
        settings.load()

    try:
        return launch(
            url=url,
            token=token,
            interval=interval,
            keymap={},  # a plain config has no [tui] keys
            settings=settings,
            login=lambda _url: None,  # not reached: a URL without a token is Typer's
            local=local,
            warm_up=warm_up,
        )
    finally:
        if opener is not None:
            opener.dispose()
