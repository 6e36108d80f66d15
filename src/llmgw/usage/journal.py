"""The usage journal: every record is written to an append-only file before its response leaves.

A ``write()`` to a file survives ``kill -9`` (the data is in the kernel's page cache); only power
loss needs ``fsync``. So ``append`` does one ``os.write`` per record on the caller's thread, and
with ``durability = "power"`` a sync thread ``fdatasync``s the journal for every record written
so far (one fsync covers every request that arrived meanwhile: a grouped commit) and the caller
awaits it.

Layout: ``<spool_dir>/journal-<time_ns>-<pid>-<rand>.jsonl``. Its first line names the columns
(``{"journal": 1, "columns": [...]}``); each record is a JSON array of values in that order, with
one more element, ``"partial"``, on the provisional record of a stream that is still running.
The process holds an exclusive ``flock`` on each of its segments until it deletes them, so a
segment whose lock is free belongs to a dead process and is replayed like a spool segment.

A segment counts the records not yet in the database (or the spool); when that count reaches
zero the current segment is truncated to its header, and a segment rotated out (past
``rotate_bytes``) is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from llmgw.usage.rows import COLUMNS
from llmgw.usage.spool import JOURNAL_GLOB

__all__ = ["JOURNAL_GLOB", "PARTIAL", "Journal", "JournalSegment"]

PARTIAL = "partial"
_HEADER = orjson.dumps({"journal": 1, "columns": list(COLUMNS)}) + b"\n"
ROTATE_BYTES = 4 * 1024 * 1024


def encode(values: tuple[Any, ...], *, partial: bool = False) -> bytes:
    """One journal line for a row's values (in ``COLUMNS`` order).

    ``default=str`` (a C function, not a Python callback: 1.2 µs less per record) writes the
    cost's ``Decimal`` as its exact text, which ``typed_row`` reads back exactly.
    """
    if partial:
        values = (*values, PARTIAL)
    return orjson.dumps(values, default=str, option=orjson.OPT_APPEND_NEWLINE)


class JournalSegment:
    """One journal file: its descriptor (holding the ``flock``) and its unsettled records."""

    __slots__ = ("fd", "path", "pending", "size")

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self.pending = 0
        self.size = len(_HEADER)


class Journal:
    """This process's journal segments; ``append`` is called on the event loop, ``settle`` by the
    writer thread once records are committed (or spooled)."""

    def __init__(
        self, directory: Path, *, power: bool = False, rotate_bytes: int = ROTATE_BYTES
    ) -> None:
        self.directory = directory
        self.power = power
        self.rotate_bytes = rotate_bytes
        self.error: str | None = None
        """Why the journal cannot be written now (``None`` when it can)."""
        self.written = 0
        self._lock = threading.Lock()
        self._current: JournalSegment | None = None
        self._rotated: list[JournalSegment] = []
        self._closed = False
        # power: grouped fdatasync
        self._seq = 0  # records appended
        self._synced = 0  # records covered by a finished fdatasync
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._dirty: set[JournalSegment] = set()
        self._wake = threading.Event()
        self._sync_thread: threading.Thread | None = None

    # --- the caller's side ---------------------------------------------------------------
    def append(
        self, line: bytes, *, replaces: JournalSegment | None = None
    ) -> JournalSegment | None:
        """Write ``line``; return its segment, or ``None`` (and set ``error``) if it cannot.

        ``replaces`` is the segment of the record this one supersedes (a stream's provisional
        record): it is settled in the same step, so a crash never leaves neither on disk.
        """
        with self._lock:
            seg = self._current
            if seg is None:
                if self.error is not None or self._closed:
                    return None
                seg = self._open()
                if seg is None:
                    return None
            try:
                n = os.write(seg.fd, line)
            except OSError as exc:
                self._fail(exc)
                return None
            if n != len(line):  # disk full mid-line: the torn line is skipped on replay
                self._fail(OSError(28, "short write to the journal"))
                return None
            seg.pending += 1
            seg.size += n
            self.written += 1
            if replaces is not None:
                self._settle_one(replaces)
            if self.power:
                self._seq += 1
                self._dirty.add(seg)
            if seg.size >= self.rotate_bytes:
                self._rotated.append(seg)
                self._current = None
            return seg

    def synced(self) -> asyncio.Future[None] | None:
        """With ``power``: a future done once everything appended so far is on disk."""
        if not self.power:
            return None
        fut = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._synced >= self._seq:
                return None
            self._waiters.append((self._seq, fut))
        self._wake.set()
        return fut

    # --- the writer's side ---------------------------------------------------------------
    def settle(self, segments: Iterable[object]) -> None:
        """These records are in the database or the spool: their journal lines may go.

        Counted per segment first, so the lock (which ``append`` on the event loop needs) is
        held for one step per segment, not per record: a writer holding it through a batch made
        the loop block on it and hand the GIL back and forth.
        """
        counts: dict[JournalSegment, int] = {}
        for seg in segments:
            if isinstance(seg, JournalSegment):
                counts[seg] = counts.get(seg, 0) + 1
        if not counts:
            return
        with self._lock:
            for seg, n in counts.items():
                self._settle_one(seg, n)

    def reopen(self) -> bool:
        """After a failure: try the directory again; True when the journal is writable."""
        with self._lock:
            if self.error is None:
                return True
            self.error = None
            return self._open() is not None

    def close(self) -> None:
        """Delete the settled segments; a segment with unsettled records stays for replay."""
        with self._lock:
            self._closed = True
            segs = [*self._rotated, *([self._current] if self._current else [])]
            self._current, self._rotated = None, []
            self._dirty.clear()
            for seg in segs:
                if seg.pending <= 0:
                    with contextlib.suppress(OSError):
                        seg.path.unlink()
                os.close(seg.fd)
        self._wake.set()
        t = self._sync_thread
        if t is not None:
            t.join(5)

    def pending(self) -> int:
        """Records journaled and not yet settled."""
        with self._lock:
            segs = [*self._rotated, *([self._current] if self._current else [])]
            return sum(s.pending for s in segs)

    # --- internals (hold the lock) -------------------------------------------------------
    def _settle_one(self, seg: JournalSegment, n: int = 1) -> None:
        seg.pending -= n
        if seg.pending > 0:
            return
        if seg is self._current:
            if seg.size > len(_HEADER):
                try:
                    os.ftruncate(seg.fd, len(_HEADER))
                    seg.size = len(_HEADER)
                except OSError as exc:
                    self._fail(exc)
        elif seg in self._rotated:
            self._rotated.remove(seg)
            with contextlib.suppress(OSError):
                seg.path.unlink()
            self._dirty.discard(seg)
            os.close(seg.fd)

    def _open(self) -> JournalSegment | None:
        name = f"journal-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        path = self.directory / name
        fd = -1
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.write(fd, _HEADER) != len(_HEADER):
                raise OSError(28, "short write to the journal")
            if self.power:
                os.fsync(fd)
                dfd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
                self._start_sync_thread()
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
                with contextlib.suppress(OSError):
                    path.unlink()
            self._fail(exc)
            return None
        seg = self._current = JournalSegment(fd, path)
        return seg

    def _fail(self, exc: OSError) -> None:
        self.error = f"journal not writable: {exc.strerror or exc}"
        seg = self._current
        if seg is not None:  # keep it (its records may be unsettled); a new one on reopen
            self._rotated.append(seg)
            self._current = None

    # --- power: the sync thread ----------------------------------------------------------
    def _start_sync_thread(self) -> None:
        if self._sync_thread is None:
            self._sync_thread = threading.Thread(
                target=self._sync_loop, name="llmgw-usage-journal-sync", daemon=True
            )
            self._sync_thread.start()

    def _sync_loop(self) -> None:
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                if self._closed and not self._waiters:
                    return
                target = self._seq
                fds = [os.dup(s.fd) for s in self._dirty]
                self._dirty.clear()
            for fd in fds:  # a duplicate: the segment may be deleted meanwhile
                with contextlib.suppress(OSError):
                    os.fdatasync(fd)
                os.close(fd)
            with self._lock:
                self._synced = max(self._synced, target)
                ready = [f for s, f in self._waiters if s <= target]
                self._waiters = [(s, f) for s, f in self._waiters if s > target]
            for fut in ready:
                loop = fut.get_loop()
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
