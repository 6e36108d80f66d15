"""The usage spool: fsynced JSON-lines segments holding records that could not reach the database.

Layout: ``<spool_dir>/usage-<time_ns>-<pid>-<rand>.jsonl``, one record per line. A process
holds an exclusive ``flock`` on the segment it is appending to, so another process (or the
same one through a second descriptor) never replays a segment that is still being written.
The lock goes away when the process dies, even on ``kill -9``, which makes the segments of a
dead process replayable. A segment is deleted only after all its rows are committed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson

__all__ = [
    "JOURNAL_GLOB",
    "SEGMENT_GLOB",
    "Spool",
    "SpoolSegment",
    "row_from_json",
    "row_to_json",
]

SEGMENT_GLOB = "usage-*.jsonl"
JOURNAL_GLOB = "journal-*.jsonl"  # written by llmgw.usage.journal; replayed here once unlocked
REJECTED_NAME = "rejected.jsonl"
_FORMAT = 1
SEGMENT_MAX_BYTES = 16 * 1024 * 1024


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return format(obj, "f")
    if isinstance(obj, uuid.UUID):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def row_to_json(row: dict[str, Any]) -> bytes:
    """One usage row (column name -> value) as a JSON line, newline included."""
    return orjson.dumps({"v": _FORMAT, **row}, default=_default) + b"\n"


def row_from_json(line: bytes) -> dict[str, Any]:
    """Parse a spooled line back into a row with typed values (UUID, datetime, Decimal)."""
    data: dict[str, Any] = orjson.loads(line)
    data.pop("v", None)
    return typed_row(data)


def typed_row(data: dict[str, Any]) -> dict[str, Any]:
    """A row decoded from JSON with its typed values restored (UUID, datetime, Decimal)."""
    for k in ("key_id", "user_id"):
        if data.get(k) is not None:
            data[k] = uuid.UUID(data[k])
    data.setdefault("token_id", None)  # records written before migration 0008 have none
    data.setdefault("finish_reason", None)  # nor before 0013
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    data["cost"] = Decimal(str(data.get("cost", "0")))
    if not isinstance(data.get("request_id"), str) or not data["request_id"]:
        raise ValueError("spooled record without request_id")
    return data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolSegment:
    """A claimed (locked) segment, parsed while it is replayed: ``batches`` reads it line by
    line, so memory stays bounded by the batch size (and the streams in flight, see there)
    whatever the segment's size."""

    def __init__(self, path: Path, file: IO[bytes]) -> None:
        self.path = path
        self._file = file
        self.bad_lines = 0
        """Unreadable lines met so far (a torn last line after a crash, a damaged record)."""

    def batches(self, size: int) -> Iterator[tuple[list[dict[str, Any]], set[str]]]:
        """The segment's rows, ``size`` at a time, each with the request ids of the provisional
        stream records among them.

        Spool lines are objects; journal lines are arrays after a header line naming their
        columns, a trailing ``"partial"`` marking a stream's provisional record. A provisional
        record is held back until its final record shows up (which replaces it) or the segment
        ends (then it comes in the last batch): only the streams still running when the segment
        was written are held, never the whole segment. A later record of a request id replaces
        an earlier one of the same batch.
        """
        columns: list[str] | None = None
        batch: dict[str, dict[str, Any]] = {}
        held: dict[str, dict[str, Any]] = {}  # provisional records waiting for their final one
        for line in self._file:
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
                if isinstance(item, dict) and "journal" in item:
                    columns = [str(c) for c in item["columns"]]
                    continue
                if isinstance(item, list):
                    if columns is None:
                        raise ValueError("journal record before its header")
                    partial = len(item) == len(columns) + 1 and item[-1] == "partial"
                    if len(item) != len(columns) + partial:
                        raise ValueError("journal record of the wrong length")
                    row = typed_row(dict(zip(columns, item, strict=False)))
                else:
                    partial = False
                    row = row_from_json(line)
            except (ValueError, KeyError, TypeError):
                self.bad_lines += 1
                continue
            rid = row["request_id"]
            if partial:
                if rid not in batch:  # else the final record came first (never, but harmless)
                    held.setdefault(rid, row)
                continue
            held.pop(rid, None)  # the final record replaces the provisional one
            batch[rid] = row
            if len(batch) >= size:
                yield list(batch.values()), set()
                batch = {}
        if batch or held:
            yield [*batch.values(), *held.values()], set(held)


class Spool:
    """Append-only spool segments in one directory; thread-safe appends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._path: Path | None = None

    # --- writing -------------------------------------------------------------------------
    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append ``rows`` to this process's open segment and fsync before returning."""
        if not rows:
            return
        data = b"".join(row_to_json(r) for r in rows)
        with self._lock:
            f = self._open_locked()
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            if f.tell() >= SEGMENT_MAX_BYTES:  # rotate: a finished segment can be replayed
                self._file = None
                self._path = None
                f.close()

    def _open_locked(self) -> IO[bytes]:
        if self._file is not None:
            return self._file
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"usage-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        path = self.directory / name
        f = open(path, "ab")  # noqa: SIM115 - kept open across appends, closed in rotate()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise
        _fsync_dir(self.directory)
        self._file, self._path = f, path
        return f

    def rotate(self) -> None:
        """Close the open segment (releasing its lock) so that it can be replayed."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
                self._path = None

    close = rotate

    # --- reading -------------------------------------------------------------------------
    def segments(self) -> list[Path]:
        """Every segment in the directory, oldest first (names start with a timestamp)."""
        try:
            found = [*self.directory.glob(SEGMENT_GLOB), *self.directory.glob(JOURNAL_GLOB)]
        except OSError:
            return []
        return sorted(found, key=lambda p: p.name.split("-", 1)[1])

    def count_records(self) -> int:
        """Records waiting on disk (for statistics; reads the files): spool segments, and the
        journals of other (dead or live) processes; this process's own journal is not counted."""
        total = 0
        mine = f"-{os.getpid()}-"
        for p in self.segments():
            if p.name.startswith("journal-") and mine in p.name:
                continue
            with contextlib.suppress(OSError), open(p, "rb") as f:
                total += sum(1 for line in f if line.endswith(b"\n") and line[:3] != b'{"j')
        return total

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[SpoolSegment | None]:
        """Lock ``path`` and yield it for reading; yield ``None`` if another writer holds it or
        it is gone. The rows are read from the file as ``SpoolSegment.batches`` goes."""
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed in the finally below
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield None
                return
            if not path.exists():  # replayed and deleted by someone else meanwhile
                yield None
                return
            yield SpoolSegment(path, f)
        finally:
            f.close()

    def remove(self, path: Path) -> None:
        """Delete a fully committed segment (and make the deletion durable)."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):
            _fsync_dir(self.directory)

    def reject(self, rows: Sequence[dict[str, Any]], reason: str) -> None:
        """Keep rows the database refuses for good (bad data) in ``rejected.jsonl``, fsynced."""
        if not rows:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        data = b"".join(
            orjson.dumps({"reason": reason[:200], "row": r}, default=_default) + b"\n" for r in rows
        )
        with self._lock, open(self.directory / REJECTED_NAME, "ab") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # `llmgw usage rejected --replay` rewrites it
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
