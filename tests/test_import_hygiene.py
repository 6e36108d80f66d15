"""Import boundaries: the CLI stays light, import-linter contracts hold, the public surface is fixed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import llmgw

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("textual", "uvicorn", "starlette", "aiohttp")
# Source folders mapped into the one import package (pyproject [tool.setuptools] package-dir).
MAPPED = {"server": "server", "tui": "tui", "migrations": "migrations"}


def _probe(code: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """Run ``code`` in a fresh interpreter; the modules it left imported, and its stdout."""
    dump = "\nimport json, sys\nsys.stderr.write('\\n' + json.dumps(sorted(sys.modules)) + '\\n')\n"
    proc = subprocess.run(
        [sys.executable, "-c", code + dump],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stderr.strip().splitlines()[-1])), proc.stdout


def _loaded_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    loaded, _ = _probe(code, env)
    return [m for m in HEAVY if m in loaded]


def test_importing_the_cli_loads_no_server_or_tui_stack() -> None:
    assert _loaded_after("import llmgw.cli") == []


def test_an_admin_command_loads_no_server_or_tui_stack(tmp_path: Path) -> None:
    code = (
        "from llmgw.cli import main\n"
        "try:\n"
        "    main(['keys', 'list', '--json'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
    )
    assert _loaded_after(code, {"LLMGW_HOME": str(tmp_path / "home")}) == []


def _modules_after(argv: list[str], env: dict[str, str]) -> tuple[set[str], str]:
    """Run ``llmgw argv`` in a fresh interpreter; the modules it imported and its stdout."""
    code = (
        "import sys\n"
        "from llmgw.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "sys.stdout.flush()\n"
    )
    return _probe(code, env)


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


# What only some commands need; each one costs tens of milliseconds of start-up.
DEFERRED = ("sqlalchemy", "sqlmodel", "alembic", "pydantic", "pydantic_settings", "rich")
OTHER_COMMANDS = (
    "config_cmd",
    "db",
    "emulate",
    "emulate_ru",
    "providers",
    "serve",
    "usage",
    "users",
)


def test_help_imports_no_command_module_database_or_rich(tmp_path: Path) -> None:
    """`llmgw --help` lists every command from one-line strings: no command module is imported."""
    loaded, out = _modules_after(["--help"], {"LLMGW_HOME": str(tmp_path)})
    assert "keys" in out and "usage" in out
    assert _roots(loaded).isdisjoint(DEFERRED + HEAVY), sorted(_roots(loaded) & set(DEFERRED))
    assert not {m for m in loaded if m.startswith("llmgw.cli.")} - {
        "llmgw.cli.app",
        "llmgw.cli.fast",
        "llmgw.cli.lazy",
        "llmgw.cli.main",
        "llmgw.cli.state",
    }
    assert "llmgw.config" not in loaded


def test_completing_command_names_imports_no_command_module(tmp_path: Path) -> None:
    env = {
        "LLMGW_HOME": str(tmp_path),
        "COMP_WORDS": "llmgw ",
        "COMP_CWORD": "1",
        "_LLMGW_COMPLETE": "complete_bash",
    }
    loaded, out = _modules_after([], env)
    assert set(out.split()) >= {"serve", "keys", "usage", "providers"}
    assert "llmgw.cli.keys" not in loaded and "sqlalchemy" not in loaded


def test_keys_list_on_a_current_schema_imports_only_what_it_uses(tmp_path: Path) -> None:
    """On a SQLite file whose schema is current: no SQLAlchemy at all (``admin/quick.py`` reads
    it with the standard library), no other command's module, no HTTP stack; with --json (what
    scripts call) no rich either. With no config file the fast path (``cli/fast.py``) answers:
    no Typer and no pydantic either."""
    env = {"LLMGW_HOME": str(tmp_path)}
    _modules_after(["keys", "create", "--name", "ci"], env)  # creates and migrates the database
    never = {"sqlalchemy", "sqlmodel", "alembic", "httpx", "uvicorn", "starlette", "textual"}
    never |= {"typer", "pydantic", "pydantic_settings", "platformdirs"}
    for argv in (["keys", "list"], ["keys", "list", "--json"]):
        loaded, out = _modules_after(argv, env)
        assert "ci" in out
        unwanted = never | ({"rich"} if "--json" in argv else set())
        assert not _roots(loaded) & unwanted, sorted(_roots(loaded) & unwanted)
        assert not {f"llmgw.cli.{m}" for m in OTHER_COMMANDS} & loaded
        assert "sqlalchemy.dialects.postgresql" not in loaded


def test_usage_stats_on_a_current_schema_imports_no_sqlalchemy(tmp_path: Path) -> None:
    """Issue 13 (``usage stats`` <= 1 s over 10M rows): the fast path runs the rollup statement
    in plain SQL through ``sqlite3``: no SQLAlchemy, SQLModel tables, Alembic, Typer or
    pydantic (importing them was most of the command's CPU)."""
    env = {"LLMGW_HOME": str(tmp_path)}
    _modules_after(["keys", "create", "--name", "ci"], env)  # creates and migrates the database
    never = {"sqlalchemy", "sqlmodel", "alembic", "typer", "pydantic", "pydantic_settings"}
    loaded, out = _modules_after(
        ["usage", "stats", "--since", "30d", "--by", "model", "--json"], env
    )
    assert '"by": "model"' in out or '"by":"model"' in out
    assert not _roots(loaded) & never, sorted(_roots(loaded) & never)
    assert "llmgw.usage.reports" not in loaded and "llmgw.storage.tables" not in loaded


def test_public_surface_is_only_the_version() -> None:
    assert llmgw.__all__ == ["__version__"]
    assert isinstance(llmgw.__version__, str) and llmgw.__version__


def _analysis_tree(dest: Path) -> Path:
    """The package as a wheel lays it out, so grimp sees llmgw.server, llmgw.tui, llmgw.migrations.

    The editable install maps those folders with an import hook that import-linter cannot follow.
    """
    pkg = dest / "llmgw"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src" / "llmgw", pkg, ignore=ignore)
    for sub, folder in MAPPED.items():
        target = pkg / sub
        if (ROOT / folder / "__init__.py").exists():
            shutil.copytree(ROOT / folder, target, ignore=ignore)
        else:  # not written yet: an empty package so the contracts can name it
            target.mkdir()
            (target / "__init__.py").write_text("")
    return dest


def test_import_linter_contracts_hold(tmp_path: Path) -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.exists(), "import-linter is not installed in the venv"
    tree = _analysis_tree(tmp_path / "tree")
    proc = subprocess.run(
        [str(lint), "--no-cache"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_the_dashboards_first_screen_loads_no_sqlmodel(tmp_path: Path) -> None:
    """``llmgw dash`` (local) paints Providers from provider_status: SQLModel, pydantic and the
    key, user and audit services load only when a screen uses them (a third of its start-up)."""
    code = (
        "from llmgw.storage.db import make_engine\n"
        "from llmgw.admin.local import LocalAdmin\n"
        "from llmgw.admin.ops import Actor\n"
        f"a = LocalAdmin(make_engine('sqlite:///{tmp_path / 'x.db'}'), Actor.local(), 'tui')\n"
        "a.whoami()\n"
        "from llmgw.alerts.ops import LocalAlerts\n"  # llmgw dash builds it at start too
        "LocalAlerts(a.engine, Actor.local(), 'tui')\n"
    )
    loaded, _ = _probe(code)
    assert not {"sqlmodel", "pydantic", "llmgw.storage.tables", "llmgw.auth.keys"} & loaded


def test_the_fast_dashboards_first_paint_loads_no_sqlalchemy_pydantic_or_typer(
    tmp_path: Path,
) -> None:
    """``llmgw dash`` through ``cli/fast.py`` on a current SQLite file: Providers is read with
    ``sqlite3`` and the engine opens after the first paint (``storage/opener.py``), so nothing
    before the first frame loads SQLAlchemy, pydantic or Typer."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    upgrade(engine)
    engine.dispose()
    code = (
        "import llmgw.cli.fast, llmgw.cli.dash_launch\n"
        "from llmgw.storage.opener import EngineOpener\n"
        "from llmgw.admin.local import LocalAdmin\n"
        "from llmgw.admin.ops import Actor\n"
        "from llmgw.alerts.ops import LocalAlerts\n"
        f"o = EngineOpener('sqlite:///{tmp_path / 'x.db'}', lambda: 1 / 0)\n"
        "from llmgw.cli.fast import _SettingsOnDemand\n"  # status rows filtered, unloaded
        "a = LocalAdmin(o, Actor.local(), 'tui', settings=_SettingsOnDemand(None))\n"
        "LocalAlerts(o, Actor.local(), 'tui')\n"
        "assert a.providers_status() == [] and a.whoami()['mode'] == 'local'\n"
        "from llmgw.tui.app import LlmgwApp, screen_class\n"
        "screen_class('providers')\n"
    )
    loaded, _ = _probe(code)
    assert not {"sqlalchemy", "sqlmodel", "pydantic", "typer"} & _roots(loaded)


def test_the_dashboard_loads_only_its_first_screen() -> None:
    """``llmgw dash`` imports the app, checks an empty ``[tui] keys`` and shows Providers: the
    other screens (forms, charts, the chat client) load when they are first shown."""
    code = (
        "from llmgw.tui.keymap import check_keymap\n"
        "assert check_keymap({}) == {}\n"
        "from llmgw.tui.app import LlmgwApp, screen_class\n"
        "screen_class('providers')\n"
    )
    loaded, _ = _probe(code)
    later = {
        f"llmgw.tui.screens.{name}"
        for name in (
            "requests",
            "usage",
            "keys",
            "users",
            "audit",
            "chat",
            "help",
            "listing",
            "alerts",
            "alert_detail",
        )
    } | {"llmgw.tui.widgets.dialogs", "llmgw.admin.chat"}
    assert "llmgw.tui.screens.providers" in loaded
    assert not later & loaded, sorted(later & loaded)


def test_a_started_gateway_loads_no_pages_alert_history_or_conversations(tmp_path: Path) -> None:
    """``llmgw serve`` with default settings (alerts on, no page opened, no chat turn): no Jinja2,
    argon2, page module, alert query or conversation module is imported until first use, and on
    SQLite no psycopg (9 MiB; the alert worker imports ``store_pg``) (RSS at start-up:
    performance.md#memory-at-start-up); then each works on its first request."""
    code = f"""
import asyncio, sys, httpx
from llmgw.config import Settings
from llmgw.server import create_app
from llmgw.server.web import PAGES

later = ("jinja2", "argon2", "llmgw.server.web.core", "llmgw.server.web.login",
         "llmgw.server.web.account", "llmgw.server.web.authorize", "llmgw.server.web.device",
         "llmgw.identity.passwords", "llmgw.identity.sessions", "llmgw.identity.throttle",
         "llmgw.alerts.modes", "llmgw.conversations.context",
         "llmgw.conversations.store", "psycopg")

async def main():
    app = create_app(Settings(home={str(tmp_path)!r}, database={{"url": "sqlite:///{tmp_path}/x.db"}}))
    t = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=t, base_url="http://t") as c:
        assert (await c.get("/healthz")).status_code == 200
        print(sorted(m for m in later if m in sys.modules))
        r = await c.get("/login")
        print(r.status_code, "<form" in r.text, "jinja2" in sys.modules)
        r = await c.post("/alerts/webhook", content=b"{{}}")
        print(r.status_code)
        r = await c.get("/api/conversations", headers={{"authorization": "Bearer llmgw_nope"}})
        print(r.status_code)
    from llmgw.server.web.account import ACCOUNT_ROUTES

    accounts = {{(p, m, f.__name__) for p, m, f in ACCOUNT_ROUTES}}
    assert accounts == {{(p, m, n) for p, m, mod, n in PAGES if mod == "account"}}

asyncio.run(main())
"""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    upgrade(engine)
    engine.dispose()
    _, out = _probe(code)
    lines = out.strip().splitlines()
    assert lines[0] == "[]", lines[0]
    assert lines[1] == "200 True True"  # the sign-in page renders on its first request
    assert lines[2] == "404"  # the webhook without a token: not configured (parsed lazily)
    assert lines[3] == "401"


def test_a_started_gateway_without_publishing_targets_loads_no_httpx(tmp_path: Path) -> None:
    """The alert publishers (and httpx, which imports its CLI with rich and pygments when they are
    installed: about 0.1 s of ``llmgw serve``'s start-up) load only when a target is published
    to (docs/performance.md#container-image)."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    upgrade(engine)
    engine.dispose()
    code = f"""
import asyncio, sys
from llmgw.config import Settings
from llmgw.server import create_app

async def main():
    app = create_app(Settings(home={str(tmp_path)!r}, database={{"url": "sqlite:///{tmp_path}/x.db"}}))
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.2)  # the alert worker's first round
        print(sorted(m for m in ("httpx", "rich", "llmgw.alerts.publishers.slack") if m in sys.modules))

asyncio.run(main())
"""
    _, out = _probe(code)
    assert out.strip().splitlines()[0] == "[]"
