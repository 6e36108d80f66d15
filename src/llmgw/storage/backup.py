"""Backups and restores: ``llmgw db backup``, ``db restore``, ``db verify``.

SQLite: the online backup API in one step (``Connection.backup(pages=-1)``). One step reads one
consistent snapshot under a read lock; in WAL mode that lock does not stop a gateway's writes, so
the copy holds every transaction committed before the step began and none half-done (a stepped
backup would restart whenever another process writes). The copy is written beside its final name,
checked (``PRAGMA integrity_check``, ``foreign_key_check``, a known schema revision), then renamed;
a failed check leaves no file that looks like a backup.

PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore``, when installed; the archive is checked
with ``pg_restore --list``. The tools get the URL's password in ``PGPASSWORD``, never on their
command line (which every local user can read in ``ps``), and the same TCP keepalives and
``tcp_user_timeout`` as llmgw's own connections (``database.dead_connection_timeout``), so a
dump over a link gone silent fails instead of hanging.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmgw.errors import Conflict, DataCheckFailed, NotFound, Unavailable, UsageError
from llmgw.storage.db import normalize_url, redact_url
from llmgw.storage.sqlite_source import holders
from llmgw.storage.tcp import DEAD_CONNECTION_TIMEOUT, with_tcp_checks

__all__ = [
    "BackupResult",
    "backup",
    "restore",
    "rotate",
    "verify_file",
]

_PREFIX = "llmgw-"


@dataclass
class BackupResult:
    """One backup, restore or check."""

    file: Path
    bytes: int
    seconds: float
    checks: dict[str, Any]
    removed: list[Path] | None = None
    replaced: Path | None = None
    phases: dict[str, float] | None = None
    """Seconds per phase of a SQLite backup: ``copy`` (the backup API), ``sync`` (the copy's
    last write-back to disk), ``check``."""
    copied_by: str | None = None
    """How a SQLite backup was copied: ``file`` (``copy_sqlite_file``) or ``api``."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "file": str(self.file),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "checks": self.checks,
            "removed": [str(p) for p in self.removed or []],
            "replaced": str(self.replaced) if self.replaced else None,
            "phases": {k: round(v, 3) for k, v in (self.phases or {}).items()},
            "copied_by": self.copied_by,
        }


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _is_sqlite(url: str) -> bool:
    return normalize_url(url).get_backend_name() == "sqlite"


def _sqlite_file(url: str) -> Path:
    database = normalize_url(url).database
    if not database or database == ":memory:":
        raise UsageError("an in-memory database has nothing to back up", hint="set a file URL")
    return Path(database).expanduser()


# --- checks ----------------------------------------------------------------------------------


def check_sqlite(path: Path, *, quick: bool = False) -> dict[str, Any]:
    """Integrity, foreign keys and schema revision of a SQLite file; raises when one fails.

    ``quick``: ``PRAGMA quick_check`` (pages, records, NOT NULL and CHECK constraints in one
    pass) instead of ``integrity_check``, which also matches every index against its table and
    costs about 14x the CPU (1 GB: 1.5 s against 21 s)."""
    if not path.is_file():
        raise NotFound(f"no file at {path}", hint="give the path of a backup or database")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:  # pragma: no cover - connect is lazy
        raise DataCheckFailed(f"{path}: {exc}") from None
    try:
        try:
            pragma = "quick_check" if quick else "integrity_check"
            integrity = [r[0] for r in conn.execute(f"PRAGMA {pragma}")]
            fk = conn.execute("PRAGMA foreign_key_check").fetchall()
            has_version = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
            ).fetchone()
            rev = (
                conn.execute("SELECT version_num FROM alembic_version").fetchone()
                if has_version
                else None
            )
        except sqlite3.DatabaseError as exc:
            raise DataCheckFailed(
                f"{path} is not a readable SQLite database: {exc}",
                hint="the file is damaged or not a database; use another backup",
            ) from None
    finally:
        conn.close()
    if integrity != ["ok"]:
        raise DataCheckFailed(
            f"{path} fails its integrity check: {'; '.join(integrity[:3])}",
            hint="use another backup",
        )
    if fk:
        raise DataCheckFailed(
            f"{path} has {len(fk)} row(s) whose foreign key points nowhere (first: table {fk[0][0]})",
            hint="use another backup",
        )
    if rev is None:
        raise DataCheckFailed(f"{path} is not an llmgw database (no schema revision)")
    return {
        "integrity": "ok",
        "check": "quick" if quick else "full",
        "foreign_keys": "ok",
        "revision": rev[0],
    }


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Unavailable(
            f"{name} is not installed; PostgreSQL backups and restores run through it",
            hint="install the PostgreSQL client tools (Debian: apt-get install postgresql-client)",
        )
    return found


def _libpq(url: str) -> str:
    return normalize_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_target(url: str, tcp_timeout: float) -> tuple[str, dict[str, str]]:
    """``--dbname`` for a PostgreSQL tool (the URL without its password, with ``tcp_checks``)
    and the tool's environment (the password in ``PGPASSWORD``)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(_libpq(url))
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return with_tcp_checks(make_conninfo("", **params), tcp_timeout), env


def _run(
    argv: list[str], what: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1][:300]
        raise DataCheckFailed(f"{what}: {redact_url(reason) if '://' in reason else reason}")
    return done


def check_dump(path: Path) -> dict[str, Any]:
    """A ``pg_dump`` archive lists its contents (``pg_restore --list``) and has llmgw's tables."""
    if not path.is_file():
        raise NotFound(f"no file at {path}", hint="give the path of a backup")
    listing = _run(
        [_pg_tool("pg_restore"), "--list", str(path)], f"{path} is not a readable archive"
    )
    entries = [line for line in listing.stdout.splitlines() if line and not line.startswith(";")]
    if not any(" TABLE DATA " in e and " alembic_version " in e for e in entries):
        raise DataCheckFailed(f"{path} is not an llmgw database dump (no alembic_version data)")
    return {"archive": "ok", "entries": len(entries)}


def verify_file(path: Path) -> dict[str, Any]:
    """Check a SQLite file or a ``pg_dump`` archive, by its first bytes."""
    if not path.is_file():
        raise NotFound(f"no file at {path}", hint="give the path of a backup or database")
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"PGDMP"):
        return check_dump(path)
    return check_sqlite(path)


def verify_database(url: str, *, tcp_timeout: float = DEAD_CONNECTION_TIMEOUT) -> dict[str, Any]:
    """Check the configured database: a SQLite file in full; PostgreSQL's schema revision."""
    if _is_sqlite(url):
        return check_sqlite(_sqlite_file(url))
    import psycopg

    with psycopg.connect(with_tcp_checks(_libpq(url), tcp_timeout), connect_timeout=5) as conn:
        rev = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        bad = conn.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE NOT convalidated"
        ).fetchall()
    if bad:
        raise DataCheckFailed(f"constraints not validated on {', '.join(r[0] for r in bad)}")
    return {"revision": rev[0] if rev else None, "constraints": "ok"}


# --- backup ----------------------------------------------------------------------------------


def rotate(folder: Path, keep: int, suffix: str) -> list[Path]:
    """Delete all but the ``keep`` newest backups named ``llmgw-*{suffix}`` in ``folder``."""
    backups = sorted(folder.glob(f"{_PREFIX}*{suffix}"))
    old = backups[:-keep] if keep > 0 else []
    for path in old:
        path.unlink(missing_ok=True)
    return old


def backup(
    url: str,
    folder: Path,
    *,
    keep: int,
    pace: float | None = None,
    quick: bool = False,
    method: str = "api",
    tcp_timeout: float = DEAD_CONNECTION_TIMEOUT,
) -> BackupResult:
    """Back up the database at ``url`` into ``folder``, check the copy, keep ``keep`` newest
    (``pace``: MB/s for a SQLite copy, see ``copy_sqlite``; ``quick``: the lighter check of
    ``check_sqlite``; ``method``: ``"file"`` copies a SQLite database in WAL mode as files,
    ``copy_sqlite_file``, else through the backup API; ``tcp_timeout``:
    ``database.dead_connection_timeout`` for ``pg_dump``)."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if _is_sqlite(url):
        source = _sqlite_file(url)
        if not source.is_file():
            raise NotFound(f"no database at {source}", hint="check [database] url / LLMGW_HOME")
        final = folder / f"{_PREFIX}{_stamp()}.db"
        partial = final.with_name(final.name + ".partial")
        copied_by = "file"
        try:
            phases = copy_sqlite_file(source, partial, pace=pace) if method == "file" else None
            if phases is None:
                copied_by = "api"
                phases = copy_sqlite(source, partial, pace=pace)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        checked = time.monotonic()
        try:
            checks = check_sqlite(partial, quick=quick)
        except DataCheckFailed:
            partial.unlink(missing_ok=True)
            raise
        phases["check"] = time.monotonic() - checked
        partial.rename(final)
        removed = rotate(folder, keep, ".db")
    else:
        phases, copied_by = {}, None
        final = folder / f"{_PREFIX}{_stamp()}.dump"
        partial = final.with_name(final.name + ".partial")
        dbname, env = _pg_target(url, tcp_timeout)
        try:
            _run(
                [
                    _pg_tool("pg_dump"),
                    "--format=custom",
                    "--file",
                    str(partial),
                    "--dbname",
                    dbname,
                ],
                f"pg_dump of {redact_url(url)} failed",
                env,
            )
            checks = check_dump(partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.rename(final)
        removed = rotate(folder, keep, ".dump")
    return BackupResult(
        final,
        final.stat().st_size,
        time.monotonic() - started,
        checks,
        removed,
        phases=phases,
        copied_by=copied_by,
    )


_STEP_PAGES = 256
_SYNC_BYTES = 16 * 1024 * 1024
"""A paced copy hands what it wrote to the disk (``fdatasync``) every this many bytes."""


def copy_sqlite(source: Path, dest: Path, *, pace: float | None = None) -> dict[str, float]:
    """``source`` into the new file ``dest`` through the backup API, one consistent snapshot;
    seconds spent copying (``copy``) and in the final write-back to disk (``sync``).

    ``pace`` (MB/s) copies in small steps at that rate (``llmgw serve``'s scheduled backups);
    the source connection holds one read transaction across the steps, so the copy is still one
    snapshot and a writer does not make the backup start over. Every ``_SYNC_BYTES`` the copy
    is written back to disk, so the disk takes it at the pace rather than the whole database's
    dirty pages in one burst at the end (the kernel keeps up to a tenth of the memory dirty
    before writing back on its own). The copy is a ``.partial`` file, removed when anything
    fails, so it is written without a rollback journal or per-step syncs of its own. Without
    ``pace``: one step."""
    started = time.monotonic()
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    fd: int | None = None
    try:
        src.execute("PRAGMA busy_timeout=10000")
        dst = sqlite3.connect(dest)
        try:
            if pace:
                dst.execute("PRAGMA journal_mode=OFF")
                dst.execute("PRAGMA synchronous=OFF")
                src.execute("BEGIN")
                src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot
                page = src.execute("PRAGMA page_size").fetchone()[0]
                step_s = _STEP_PAGES * page / (pace * 1e6)
                sync_every = max(1, _SYNC_BYTES // (_STEP_PAGES * page))
                done = [0]

                def throttle(_status: int, _remaining: int, _total: int) -> None:
                    nonlocal fd
                    done[0] += 1
                    if done[0] % sync_every == 0:
                        if fd is None:
                            fd = os.open(dest, os.O_RDONLY)
                        os.fdatasync(fd)
                    ahead = started + done[0] * step_s - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)

                src.backup(dst, pages=_STEP_PAGES, progress=throttle)
                src.execute("COMMIT")
            else:
                src.backup(dst, pages=-1)
            # One self-contained file (no -wal/-shm beside it); the gateway turns WAL back on.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()
        if fd is not None:
            os.close(fd)
    copied = time.monotonic()
    with dest.open("rb") as f:  # on disk before it gets its final name
        os.fsync(f.fileno())
    return {"copy": copied - started, "sync": time.monotonic() - copied}


_WAL_HEADER = 32
_FRAME_HEADER = 24
_WAL_INDEX = 136
"""Bytes of ``-shm`` read: the wal-index header twice (48 bytes each), then the checkpoint info."""
_COPY_CHUNK = 1 << 20
_SNAPSHOT_TRIES = 200


def _wal_snapshot(src: sqlite3.Connection, shm: int) -> tuple[int, int, int, bool] | None:
    """Begin a read transaction on ``src`` (the newest commit) and learn which WAL frames it
    sees, without taking any lock a writer waits for: (page size, the snapshot's WAL frames,
    the database's pages then, whether some of those frames are not yet in the main file).
    None when the database is not in WAL mode or the wal-index header never held still (the
    caller then uses the backup API).

    The wal-index header (``-shm``) is read before and after the transaction begins; when both
    reads are the same (the header carries a checksum over the last frame and the WAL's salts,
    so a commit in between, or a WAL that started over, changes it), the transaction saw that
    header (``shm``: a descriptor of ``-shm``). While ``src`` stays in it, SQLite keeps the main file and those frames as the
    snapshot needs them: a checkpoint writes into the main file only frames the snapshot has
    (the newest copy of each page is applied over the main file afterwards), and the WAL does
    not start over while a reader still uses it."""
    for _ in range(_SNAPSHOT_TRIES):
        before = os.pread(shm, _WAL_INDEX, 0)
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        after = os.pread(shm, _WAL_INDEX, 0)
        header = after[:48]
        if len(after) == _WAL_INDEX and before[:48] == header == after[48:96] == before[48:96]:
            version, _, _, is_init, _, size_field, frames, pages = struct.unpack_from(
                "=IIIBBHII", after
            )
            (backfilled,) = struct.unpack_from("=I", after, 96)
            if version == 3007000 and is_init:
                page = 65536 if size_field == 1 else size_field
                return page, frames, pages, backfilled < frames
        src.execute("ROLLBACK")
        time.sleep(0.001)
    return None


def _copy_bytes(src_fd: int, dst_fd: int, pace: float | None, started: float) -> None:
    """The whole file ``src_fd`` into ``dst_fd`` by the kernel (``copy_file_range``; read and
    write where the file system refuses it), at ``pace`` MB/s, written back to disk every
    ``_SYNC_BYTES`` when paced."""
    step_s = _COPY_CHUNK / (pace * 1e6) if pace else 0.0
    sync_every = max(1, _SYNC_BYTES // _COPY_CHUNK)
    done = 0
    kernel = True
    while True:
        if kernel:
            try:
                n = os.copy_file_range(src_fd, dst_fd, _COPY_CHUNK)
            except OSError:
                kernel = False
                continue
        else:
            data = os.read(src_fd, _COPY_CHUNK)
            n = os.write(dst_fd, data) if data else 0
        if n == 0:
            return
        done += 1
        if step_s:
            if done % sync_every == 0:
                os.fdatasync(dst_fd)
            ahead = started + done * step_s - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def _apply_wal(wal: int, dst_fd: int, page: int, frames: int) -> int:
    """The newest copy, among the WAL's (``wal``, a descriptor) first ``frames`` frames, of
    every page they hold, written over the copied main file; how many pages."""
    newest: dict[int, int] = {}
    head = os.pread(wal, _WAL_HEADER, 0)
    (wal_page,) = struct.unpack_from(">I", head, 8)
    if wal_page != page:
        raise DataCheckFailed(f"the WAL's page size is {wal_page}, the wal-index says {page}")
    salts = head[16:24]
    for i in range(frames):
        frame = os.pread(wal, _FRAME_HEADER, _WAL_HEADER + i * (_FRAME_HEADER + page))
        if frame[8:16] != salts:
            raise DataCheckFailed(f"WAL frame {i + 1} is not of the snapshot's generation")
        newest[struct.unpack_from(">I", frame)[0]] = i
    for number, i in newest.items():
        offset = _WAL_HEADER + i * (_FRAME_HEADER + page) + _FRAME_HEADER
        os.pwrite(dst_fd, os.pread(wal, page, offset), (number - 1) * page)
    return len(newest)


def copy_sqlite_file(
    source: Path, dest: Path, *, pace: float | None = None
) -> dict[str, float] | None:
    """``source`` (in WAL mode) into the new file ``dest`` as files: one consistent snapshot
    with every transaction committed before the call, like ``copy_sqlite``, at a fraction of
    its CPU (the kernel copies the main file; the WAL's frames of the snapshot are applied over
    it). None, with nothing written, when ``source`` is not in WAL mode (``copy_sqlite`` then).

    The snapshot: a read transaction whose WAL frames the wal-index header tells
    (``_wal_snapshot``); no writer waits for it. ``dest`` is left in rollback-journal mode, a single
    file; ``pace`` as for ``copy_sqlite``. Call it in a process with no other connection to
    ``source`` (the backup's own): POSIX drops a process's locks on a file when any of its
    descriptors of that file closes, and this one opens and closes the database's files."""
    started = time.monotonic()
    fds: list[int] = []  # closed only after src: see below
    src = sqlite3.connect(source, isolation_level=None)
    try:
        src.execute("PRAGMA busy_timeout=10000")
        if str(src.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            return None
        for name in (f"{source}-shm", str(source), f"{source}-wal"):
            fds.append(os.open(name, os.O_RDONLY))
        shm, main, wal = fds
        snap = _wal_snapshot(src, shm)
        if snap is None:
            return None
        page, frames, pages, in_wal = snap
        fds.append(os.open(dest, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644))
        out = fds[-1]
        _copy_bytes(main, out, pace, time.monotonic())
        if in_wal:
            _apply_wal(wal, out, page, frames)
        if pages:
            os.ftruncate(out, pages * page)
        os.pwrite(out, b"\x01\x01", 18)  # file format versions 1: rollback journal, not WAL
        src.execute("COMMIT")
    finally:
        src.close()
        # POSIX: closing any descriptor of a file drops every lock this process holds on it,
        # SQLite's read lock of the snapshot included; so these close after the connection.
        for fd in fds:
            os.close(fd)
    copied = time.monotonic()
    with dest.open("rb") as f:  # on disk before it gets its final name
        os.fsync(f.fileno())
    return {"copy": copied - started, "sync": time.monotonic() - copied}


# --- restore ---------------------------------------------------------------------------------


def restore(
    url: str,
    file: Path,
    *,
    confirm: Callable[[str, str], None] | None = None,
    tcp_timeout: float = DEAD_CONNECTION_TIMEOUT,
) -> BackupResult:
    """Replace the database at ``url`` with the backup ``file``; the replaced data is kept.

    Checks the backup first and refuses while another process uses the database; ``confirm``
    (action, consequence) is called before anything changes and raises to decline.
    """
    started = time.monotonic()
    checks = verify_file(file)
    if _is_sqlite(url):
        if "revision" not in checks:
            raise UsageError(f"{file} is a PostgreSQL dump; the database is SQLite")
        target = _sqlite_file(url)
        pids = holders(target) if target.exists() else []
        if pids:
            raise Conflict(
                f"{target} is in use by process {pids[0]} (a running llmgw serve?)",
                hint="stop the gateway, then restore",
            )
        if confirm is not None and target.exists():
            confirm(
                f"replace {target} with {file}",
                f"the current file is kept as {target.name}.replaced-TIME",
            )
        replaced = _set_aside(target) if target.exists() else None
        partial = target.with_name(target.name + ".restoring")
        copy_sqlite(file, partial)
        partial.rename(target)
        checks = check_sqlite(target)
        return BackupResult(
            target, target.stat().st_size, time.monotonic() - started, checks, replaced=replaced
        )
    if "archive" not in checks:
        raise UsageError(f"{file} is a SQLite file; the database is PostgreSQL")
    import psycopg

    with psycopg.connect(with_tcp_checks(_libpq(url), tcp_timeout), connect_timeout=5) as conn:
        others = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchone()
    if others and others[0]:
        raise Conflict(
            f"{redact_url(url)} has {others[0]} other connection(s) (a running llmgw serve?)",
            hint="stop the gateway, then restore",
        )
    aside = file.parent / f"{_PREFIX}replaced-{_stamp()}.dump"
    if confirm is not None:
        confirm(
            f"replace the data of {redact_url(url)} with {file}", f"a dump of it is kept as {aside}"
        )
    dbname, env = _pg_target(url, tcp_timeout)
    _run([_pg_tool("pg_dump"), "--format=custom", "--file", str(aside), "--dbname", dbname],
         "could not keep a dump of the current database", env)  # fmt: skip
    _run(
        [_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
         "--dbname", dbname, str(file)],
        f"pg_restore into {redact_url(url)} failed (nothing was changed)",
        env,
    )  # fmt: skip
    return BackupResult(
        file, file.stat().st_size, time.monotonic() - started, checks, replaced=aside
    )


def _set_aside(target: Path) -> Path:
    """Fold the WAL into ``target`` and move it (and its sidecars) aside; returns the new name."""
    conn = sqlite3.connect(target)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    aside = target.with_name(f"{target.name}.replaced-{_stamp()}")
    target.rename(aside)
    for side in ("-wal", "-shm"):
        Path(f"{target}{side}").unlink(missing_ok=True)
    return aside
