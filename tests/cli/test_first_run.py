"""A fresh machine: the installed ``llmgw`` script, an empty LLMGW_HOME, no config at all."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "llmgw"


def _run(home: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    # No config anywhere: a fresh HOME and XDG dirs as well, so nothing of the developer's leaks in.
    env.update(
        LLMGW_HOME=str(home),
        HOME=str(tmp_path / "user-home"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),
    )
    return subprocess.run(
        [str(SCRIPT), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    home = tmp_path / "fresh" / "llmgw"
    assert not home.exists()
    return home


def test_keys_create_works_with_no_configuration(fresh_home: Path, tmp_path: Path) -> None:
    assert SCRIPT.exists(), f"console script missing next to {sys.executable}"
    result = _run(fresh_home, tmp_path, "keys", "create", "--name", "ci", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = json.loads(result.stdout)
    assert {"id", "key", "prefix", "name", "expires_at"} <= set(out)
    assert out["name"] == "ci" and out["expires_at"] is None
    secret = out["key"]
    assert secret.startswith("llmgw_") and out["prefix"] == secret[:12]

    db = fresh_home / "llmgw.db"
    assert db.is_file()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT digest, prefix, name FROM api_keys").fetchall()
    assert rows == [(hashlib.sha256(secret.encode()).hexdigest(), secret[:12], "ci")]
    # The plaintext is nowhere on disk: not in the database, its WAL, or anything else.
    for path in fresh_home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and secret[12:].encode() not in data, path

    listed = _run(fresh_home, tmp_path, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [k["id"] for k in json.loads(listed.stdout)] == [out["id"]]
    assert secret not in listed.stdout
    assert not (tmp_path / "user-home").exists()  # nothing written outside LLMGW_HOME


def test_help_and_version_need_no_database(fresh_home: Path, tmp_path: Path) -> None:
    for args in (("--help",), ("--version",), ("keys", "--help"), ("keys", "create", "--help")):
        result = _run(fresh_home, tmp_path, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.strip()
    assert not fresh_home.exists()
