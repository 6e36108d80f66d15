"""The wheel: one import package ``llmgw`` with server/, tui/ and migrations/ mapped inside it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> where its files land in the wheel (pyproject [tool.setuptools] package-dir).
MAPPING = {
    ROOT / "src" / "llmgw": "llmgw",
    ROOT / "server": "llmgw/server",
    ROOT / "tui": "llmgw/tui",
    ROOT / "migrations": "llmgw/migrations",
}
REQUIRED = [
    "llmgw/__init__.py",
    "llmgw/py.typed",
    "llmgw/cli/__init__.py",
    "llmgw/server/__init__.py",
    "llmgw/migrations/__init__.py",
    "llmgw/migrations/env.py",
    "llmgw/migrations/script.py.mako",
    "llmgw/migrations/versions/0001_initial.py",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build the wheel from a copy of the tree, so the checkout gets no build/ or egg-info."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src-tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    for folder in ("src", "server", "tui", "migrations"):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    out = work / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [built] = out.glob("llmgw-*.whl")
    yield built


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_required_files_are_inside(wheel: Path) -> None:
    names = _names(wheel)
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, missing


def test_no_stray_top_level_packages(wheel: Path) -> None:
    tops = {n.split("/", 1)[0] for n in _names(wheel)}
    assert not tops & {"server", "tui", "migrations", "src", "tests"}, tops
    assert {t for t in tops if not t.endswith(".dist-info")} == {"llmgw"}, tops


def test_every_source_file_is_packaged(wheel: Path) -> None:
    """A module in a folder missing from ``packages = [...]`` would silently vanish from the wheel."""
    names = _names(wheel)
    missing = []
    for folder, prefix in MAPPING.items():
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if (
                path.suffix not in (".py", ".tcss", ".mako", ".typed", ".html", ".css", ".js")
                or "__pycache__" in path.parts
            ):
                continue
            inside = f"{prefix}/{path.relative_to(folder).as_posix()}"
            if inside not in names:
                missing.append(inside)
    assert not missing, f"not in the wheel (add the package to pyproject `packages`): {missing}"


def test_console_script_entry_point(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        [ep] = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(ep).decode()
    assert "[console_scripts]" in text and "llmgw = llmgw.cli:main" in text


def test_the_unpacked_wheel_imports_and_migrates(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "import llmgw, llmgw.server, llmgw.migrations\n"
        "root = Path(sys.argv[1]).resolve()\n"
        "for m in (llmgw, llmgw.server, llmgw.migrations):\n"
        "    assert root in Path(m.__file__).resolve().parents, m.__file__\n"
        "from llmgw.storage.db import make_engine\n"
        "from llmgw.storage.schema import current_revision, head_revision, upgrade\n"
        "engine = make_engine('sqlite:///' + sys.argv[2])\n"
        "upgrade(engine)\n"
        "assert current_revision(engine) == head_revision(engine) is not None\n"
        "print('ok', head_revision(engine))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    env["PYTHONPATH"] = str(site)  # ahead of the editable install's import hook
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(site), str(tmp_path / "w.db")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(420)
def test_a_clean_venv_from_the_wheel_serves_and_drains(wheel: Path, tmp_path: Path) -> None:
    """What deploy/Dockerfile does (a venv from the wheels, then serve), without a container engine.

    A fresh venv (no system site-packages, no editable checkout) gets the wheel and its
    dependencies; its ``llmgw serve`` starts with ``LLMGW_HOME`` on an empty folder (the image's
    volume), answers ``/healthz`` and ``/readyz``, and exits 0 on SIGTERM.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=360, check=False,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    home = tmp_path / "home"  # the volume: empty, created by the image
    home.mkdir()
    port = _free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LLMGW_", "PYTHON", "VIRTUAL_ENV"))
    }
    # The image's environment (deploy/Dockerfile ENV), on loopback.
    env |= {"LLMGW_HOME": str(home), "LLMGW_SERVER__HOST": "127.0.0.1",
            "LLMGW_SERVER__PORT": str(port), "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "llmgw"), "serve"], cwd=home, env=env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                    ready = r.status
                    break
            except OSError:
                time.sleep(0.2)
        assert ready == 200, log.read_text()[-3000:]
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
            assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
        # The installed files are the wheel's, not this checkout's.
        where = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import llmgw; print(llmgw.__file__)"],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip
        assert Path(where).is_relative_to(venv), where
        assert (home / "llmgw.db").exists()  # state went to LLMGW_HOME
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
