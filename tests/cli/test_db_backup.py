"""``llmgw db backup``, ``db restore``, ``db verify`` (issue 12): online, checked, rotated."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.migrate_data import generate, migrated_sqlite

_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA busy_timeout=10000")
i = 0
while True:
    conn.execute(
        "INSERT INTO usage (request_id, created_at, endpoint, stream, prompt_tokens, "
        "completion_tokens, total_tokens, cost, latency_ms, status) "
        "VALUES (?, '2026-12-03 10:00:00.000000', 'chat', 0, 1, 1, 2, '0.1', 1.0, 200)",
        (f"w-{i}",),
    )
    if i == 20:
        print("writing", flush=True)
    i += 1
"""


def _need_tool(name: str) -> None:
    """Skip when a Debian tool is absent locally; under CI=true that is a failure."""
    import shutil

    if shutil.which(name) is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (CI=true: required)")
        pytest.skip(f"{name} is not installed")


@pytest.fixture
def db(home: Path) -> Path:
    """The configured SQLite database (LLMGW_HOME/llmgw.db) with 20,000 usage rows."""
    path = home / "llmgw.db"
    home.mkdir(parents=True, exist_ok=True)
    migrated_sqlite(path)
    generate(path, usage=20_000)
    return path


def _ids(path: Path) -> set[int]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM usage")}
    finally:
        conn.close()


@contextlib.contextmanager
def _writing(db: Path, script: str) -> Iterator[subprocess.Popen[str]]:
    """Another process committing a row at a time into ``db`` (``script``) while the block
    runs (its process); killed after it."""
    writer = subprocess.Popen(
        [sys.executable, "-c", script, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        yield writer
    finally:
        writer.kill()
        writer.wait()
        assert writer.stdout is not None
        writer.stdout.close()


def test_backup_while_writing_then_restore_and_verify(cli: Any, db: Path, home: Path) -> None:
    with _writing(db, _WRITER) as writer:
        committed = _ids(db)  # every row committed before the backup began
        made = cli("db", "backup", "--json")
        assert made.exit_code == 0, made.stderr
        info = json.loads(made.stdout)
        backup = Path(info["file"])
        assert backup.parent == home / "backups" and info["checks"]["integrity"] == "ok"
        assert committed <= _ids(backup)
        assert len(_ids(db)) > len(committed)  # the writer was not stopped by the backup

        busy = cli("db", "restore", str(backup), "--yes")
        assert busy.exit_code == 5 and f"process {writer.pid}" in busy.stderr

    asked = cli("db", "restore", str(backup))
    assert asked.exit_code == 2 and "--yes" in asked.stderr  # not a terminal: refused, untouched
    after_writer = _ids(db)
    done = cli("db", "restore", str(backup), "--yes", "--json")
    assert done.exit_code == 0, done.stderr
    kept = Path(json.loads(done.stdout)["replaced"])
    assert _ids(db) == _ids(backup) and committed <= _ids(db)
    assert _ids(kept) == after_writer  # the replaced data is kept, WAL folded in
    ok = cli("db", "verify", "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["checks"]["foreign_keys"] == "ok"
    assert cli("usage", "stats", "--since", "2000-01-01", "--json").exit_code == 0


def _writer_rows(path: Path) -> list[int]:
    """The numbers ``i`` of the writer's rows (``request_id`` ``w-i``) in ``path``, sorted."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT request_id FROM usage WHERE request_id LIKE 'w-%'")
        return sorted(int(r[0][2:]) for r in rows)
    finally:
        conn.close()


def test_a_scheduled_paced_backup_while_writing_restores_every_row_committed_before_it(
    cli: Any, db: Path, home: Path, tmp_path: Path
) -> None:
    """What ``llmgw serve``'s ``[backup] interval`` runs: the copy in small paced steps (one
    read snapshot held across them) and the quick check, in the child process, while another
    process commits a row at a time; then ``db restore`` and ``db verify``."""
    from llmgw.storage.backup_schedule import BackupScheduler

    folder = tmp_path / "scheduled"
    with _writing(db, _WRITER):
        committed = _ids(db)  # every row committed before the backup began
        size_mb = db.stat().st_size / 1e6
        sched = BackupScheduler(
            f"sqlite:///{db}", folder, keep=2, interval=3600, pace=size_mb / 0.5
        )  # about 0.5 s of copying in 1 MB steps (256 pages), the writer going on between them
        sched.run_once()
        assert sched.stats.results == {"ok": 1, "failed": 0}
        during = _writer_rows(db)
    (backup,) = folder.glob("llmgw-*.db")
    saved = _writer_rows(backup)
    assert committed <= _ids(backup)
    # one snapshot: the writer's rows up to some point, none missing, none after it
    assert saved == list(range(len(saved))) and len(during) > len(saved)
    done = cli("db", "restore", str(backup), "--yes", "--json")
    assert done.exit_code == 0, done.stderr
    assert _ids(db) == _ids(backup) and committed <= _ids(db)
    ok = cli("db", "verify", "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["checks"]["integrity"] == "ok"


def test_a_damaged_backup_fails_verify_and_is_not_restored(cli: Any, db: Path, home: Path) -> None:
    made = cli("db", "backup", "--json")
    backup = Path(json.loads(made.stdout)["file"])
    data = bytearray(backup.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\xa5" * 4096  # a page of garbage
    broken = home / "broken.db"
    broken.write_bytes(bytes(data))
    bad = cli("db", "verify", str(broken))
    assert bad.exit_code == 10 and bad.stderr.startswith("Error: ")
    before = _ids(db)
    refused = cli("db", "restore", str(broken), "--yes")
    assert refused.exit_code == 10
    assert _ids(db) == before and not list(home.glob("llmgw.db.replaced-*"))
    notdb = home / "not.db"
    notdb.write_text("hello")
    assert cli("db", "verify", str(notdb)).exit_code == 10
    assert cli("db", "verify", str(home / "missing.db")).exit_code == 4


def test_rotation_keeps_the_newest(cli: Any, db: Path, home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "b"
    made = [
        json.loads(cli("db", "backup", "--to", str(folder), "--keep", "2", "--json").stdout)
        for _ in range(4)
    ]
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted(Path(m["file"]).name for m in made[-2:])
    assert made[-1]["removed"] and not list(folder.glob("*.partial"))


@pytest.mark.postgres
def test_postgres_backup_and_restore_through_pg_dump(cli: Any, pg_url: str, tmp_path: Path) -> None:
    _need_tool("pg_dump")
    env = {"LLMGW_DATABASE_URL": pg_url}
    assert cli("keys", "create", "--name", "kept", env=env).exit_code == 0
    made = cli("db", "backup", "--to", str(tmp_path), "--json", env=env)
    assert made.exit_code == 0, made.stderr
    dump = Path(json.loads(made.stdout)["file"])
    assert dump.suffix == ".dump" and cli("db", "verify", str(dump)).exit_code == 0
    assert cli("keys", "create", "--name", "after-backup", env=env).exit_code == 0
    done = cli("db", "restore", str(dump), "--yes", "--json", env=env)
    assert done.exit_code == 0, done.stderr
    assert Path(json.loads(done.stdout)["replaced"]).is_file()
    names = {k["name"] for k in json.loads(cli("keys", "list", "--json", env=env).stdout)}
    assert names == {"kept"}


@pytest.mark.postgres
def test_pg_dump_and_pg_restore_never_get_the_password_on_their_command_line(
    cli: Any, pg_url: str, tmp_path: Path
) -> None:
    """The URL's password reaches pg_dump and pg_restore in PGPASSWORD, not in argv (which any
    local user reads in ``ps``), and they get llmgw's TCP keepalives and ``tcp_user_timeout``
    (``database.dead_connection_timeout``) so a dump over a dead link fails instead of hanging.
    The real tools run; a wrapper on PATH records what each was started with."""
    import shutil

    from sqlalchemy.engine import make_url

    _need_tool("pg_dump")
    password = "pw-s3cr3t-9f2c"
    url = make_url(pg_url).set(password=password).render_as_string(hide_password=False)
    spy, log = tmp_path / "bin", tmp_path / "argv.log"
    spy.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        real = shutil.which(tool)
        assert real is not None
        (spy / tool).write_text(
            "#!/bin/sh\n"
            f'printf "%s argv:%s env:%s\\n" "{tool}" "$*" "${{PGPASSWORD:-}}" >> {log}\n'
            f'exec {real} "$@"\n'
        )
        (spy / tool).chmod(0o755)
    env = {
        "LLMGW_DATABASE_URL": url,
        "LLMGW_DATABASE__DEAD_CONNECTION_TIMEOUT": "12",
        "PATH": f"{spy}:{__import__('os').environ['PATH']}",
    }
    assert cli("keys", "create", "--name", "kept", env=env).exit_code == 0
    made = cli("db", "backup", "--to", str(tmp_path / "b"), "--json", env=env)
    assert made.exit_code == 0, made.stderr
    dump = json.loads(made.stdout)["file"]
    done = cli("db", "restore", dump, "--yes", "--json", env=env)
    assert done.exit_code == 0, done.stderr
    # those that connect (not the archive checks, pg_restore --list): the backup's pg_dump,
    # restore's dump of the data it replaces, then its pg_restore
    runs = [r for r in log.read_text().splitlines() if "--dbname" in r]
    assert [r.split()[0] for r in runs] == ["pg_dump", "pg_dump", "pg_restore"], runs
    for run in runs:
        argv, _, passed = run.partition(" env:")
        assert password not in argv, run
        assert passed == password
        assert "keepalives=1" in argv and "tcp_user_timeout=12000" in argv, run
    assert password not in made.stdout + made.stderr + done.stdout + done.stderr


def test_a_paced_copy_is_written_back_as_it_goes_and_reports_its_phases(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[backup] pace``: the copy reaches the disk in steps (``fdatasync`` every
    ``_SYNC_BYTES``), not as a whole database of dirty pages at the end; the result says how
    long the copy, its last write-back and the check took (``llmgw serve`` logs them)."""
    import os

    from llmgw.storage import backup as bk

    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(bk, "_SYNC_BYTES", 1)  # after every step
    monkeypatch.setattr(os, "fdatasync", counting)
    size_mb = db.stat().st_size / 1e6
    result = bk.backup(f"sqlite:///{db}", tmp_path / "b", keep=2, pace=size_mb / 0.2, quick=True)
    page = 4096
    assert len(synced) >= db.stat().st_size // (bk._STEP_PAGES * page) - 1 > 0
    assert _ids(result.file) == _ids(db) and result.checks["check"] == "quick"
    phases = result.as_dict()["phases"]
    assert set(phases) == {"copy", "sync", "check"} and phases["copy"] > 0
    assert not list((tmp_path / "b").glob("*-journal")) and not list(
        (tmp_path / "b").glob("*.partial")
    )


def _writer_checkpointing_every(pages: int) -> str:
    """The writer with ``PRAGMA wal_autocheckpoint`` at ``pages`` (0: its rows stay in the WAL;
    a few pages: the WAL is folded into the main file and starts over again and again)."""
    return _WRITER.replace(
        'conn.execute("PRAGMA busy_timeout=10000")',
        f'conn.execute("PRAGMA busy_timeout=10000")\nconn.execute("PRAGMA wal_autocheckpoint={pages}")',
    )


@pytest.mark.parametrize(("pace", "checkpoint"), [(None, 0), (20.0, 0), (20.0, 8)])
def test_a_file_level_copy_while_writing_holds_every_row_committed_before_it(
    db: Path, tmp_path: Path, pace: float | None, checkpoint: int
) -> None:
    """``[backup] method = "file"``: the main file copied by the kernel and the snapshot's WAL
    frames applied over it, while another process commits a row at a time (its rows left in the
    WAL, or checkpointed every few pages so the WAL starts over during the copy): one snapshot
    with every row committed before the copy began, a self-contained file that passes the full
    check."""
    from llmgw.storage import backup as bk

    dest = tmp_path / "copy.db"
    with _writing(db, _writer_checkpointing_every(checkpoint)):
        committed = _ids(db)
        in_wal = Path(f"{db}-wal").stat().st_size
        phases = bk.copy_sqlite_file(db, dest, pace=pace)
        during = _writer_rows(db)
    assert phases is not None and phases["copy"] > 0
    assert in_wal > 0 and not Path(f"{dest}-wal").exists()
    saved = _writer_rows(dest)
    assert committed <= _ids(dest)
    assert saved == list(range(len(saved))) and len(during) > len(saved) > 20
    assert bk.check_sqlite(dest)["integrity"] == "ok"
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()


def test_a_file_level_copy_leaves_a_database_not_in_wal_mode_to_the_backup_api(
    db: Path, tmp_path: Path
) -> None:
    from llmgw.storage import backup as bk

    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    assert bk.copy_sqlite_file(db, tmp_path / "copy.db") is None
    assert not (tmp_path / "copy.db").exists()
    result = bk.backup(f"sqlite:///{db}", tmp_path / "b", keep=2, method="file", quick=True)
    assert _ids(result.file) == _ids(db)
