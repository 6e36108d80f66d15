"""Replay: spool and journal segments into the database, and rejected rows back on request.

A segment is claimed (``flock``), inserted in batches with the idempotent INSERT, and deleted
only once every row of it is committed, so a record is written at least once and
``request_id`` makes it exactly once. A journal segment left by a killed process may hold a
stream's provisional record (``error_type = "interrupted"``, metadata ``partial``); its final
record, wherever it is, replaces it.

``rejected.jsonl`` holds rows the database refused for good; ``read_rejected`` lists them and
``replay_rejected`` (``llmgw usage rejected --replay``) inserts them again, keeping in the file
only those refused again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from llmgw.usage.inserts import Inserter
from llmgw.usage.spool import REJECTED_NAME, Spool, typed_row

__all__ = ["Rejected", "ReplayResult", "read_rejected", "replay_rejected", "replay_segments"]


@dataclass
class ReplayResult:
    """What one replay pass did."""

    replayed: int = 0
    """Rows inserted (or found already there)."""
    records: int = 0
    """Lines of the deleted segments (rows and unreadable lines)."""
    bad_lines: int = 0
    last_bad: str | None = None


def replay_segments(spool: Spool, inserter: Inserter, batch_size: int) -> ReplayResult:
    """Replay every unlocked segment, oldest first, reading each as it goes (memory bounded by
    ``batch_size``, not by the segment); raises on database trouble (what was committed stays
    committed, the segment being replayed stays on disk and is replayed whole next time)."""
    out = ReplayResult()
    spool.rotate()  # our own open spool segment becomes replayable
    for path in spool.segments():
        with spool.claim(path) as seg:
            if seg is None:
                continue  # a live process is still writing it, or it is gone
            rows = 0
            for batch, provisional in seg.batches(batch_size):
                inserter.insert_rows(batch)
                # A final stream record replaces a provisional one stored from another segment.
                inserter.replace_partial(
                    [r for r in batch if r.get("stream") and r["request_id"] not in provisional]
                )
                rows += len(batch)
            spool.remove(path)  # only now: every row of it is committed
            out.replayed += rows
            out.records += rows + seg.bad_lines
            if seg.bad_lines:
                out.bad_lines += seg.bad_lines
                out.last_bad = f"{seg.bad_lines} unreadable line(s) in spool {path.name}"
    return out


@dataclass
class Rejected:
    """One row of ``rejected.jsonl``: why the database refused it, and the row."""

    reason: str
    row: dict[str, Any]
    line: bytes


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Any]:
    with open(path, "r+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield f


def _parse_rejected(data: bytes) -> list[Rejected]:
    out: list[Rejected] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
            reason, row = str(item.get("reason", "")), dict(item.get("row") or {})
        except (ValueError, AttributeError, TypeError):
            reason, row = "unreadable line", {}
        out.append(Rejected(reason, row, line + b"\n"))
    return out


def read_rejected(directory: Path) -> list[Rejected]:
    """The rows in ``<spool_dir>/rejected.jsonl`` (empty when there is no such file)."""
    path = directory / REJECTED_NAME
    try:
        with _locked(path) as f:
            return _parse_rejected(f.read())
    except FileNotFoundError:
        return []


def _collect(out: list[str]) -> Callable[[dict[str, Any], str], None]:
    def collect(_row: dict[str, Any], why: str) -> None:
        out.append(why)

    return collect


def replay_rejected(directory: Path, inserter: Inserter) -> tuple[int, list[Rejected]]:
    """Insert the rejected rows again; return how many went in and those refused again (kept
    in the file, with their new reason). Raises on database trouble, leaving the file as it was."""
    path = directory / REJECTED_NAME
    if not path.exists():
        return 0, []
    with _locked(path) as f:
        kept: list[Rejected] = []
        stored = 0
        for entry in _parse_rejected(f.read()):
            try:
                row = typed_row(dict(entry.row))
            except (ValueError, KeyError, TypeError):
                kept.append(entry)  # not a row (an unreadable line): stays for a person to see
                continue
            refused: list[str] = []
            saved = inserter.on_reject
            inserter.on_reject = _collect(refused)
            try:
                stored += inserter.insert_rows([row])
            finally:
                inserter.on_reject = saved
            if refused:
                entry.reason = refused[0][:200]
                entry.line = orjson.dumps({"reason": entry.reason, "row": entry.row}) + b"\n"
                kept.append(entry)
        f.seek(0)
        f.truncate()
        f.write(b"".join(e.line for e in kept))
        f.flush()
        os.fsync(f.fileno())
        return stored, kept
