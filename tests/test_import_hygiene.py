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


def _loaded_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    probe = (
        f"import json, sys\n{code}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


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
