"""Backups taken by ``llmgw serve`` itself every ``[backup] interval`` seconds.

A daemon thread sleeps on an event, then runs ``backup.backup`` (the same online backup, check
and rotation as ``llmgw db backup``). The thread runs at the lowest CPU priority its process may
set (``nice`` 19 for this thread only, on Linux) and the SQLite backup API releases the GIL while
it copies, so requests keep their CPU; the copy reads one snapshot and never blocks a writer.
One log line per backup (``llmgw.backup``), and the counters ``stats`` exports as metrics.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmgw.errors import LlmgwError

__all__ = ["BackupScheduler", "BackupStats"]

log = logging.getLogger("llmgw.backup")


@dataclass
class BackupStats:
    """What the scheduled backups did so far (read by the metrics at scrape time)."""

    results: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    last_success: float = 0.0
    """Unix time of the last good backup (0: none yet)."""
    last_seconds: float = 0.0
    last_bytes: int = 0
    running: bool = False


class BackupScheduler:
    """Back up ``url`` into ``folder`` every ``interval`` seconds, keeping ``keep``."""

    def __init__(
        self, url: str, folder: Path, *, keep: int, interval: float, pace: float = 0.0
    ) -> None:
        self.url = url
        self.pace = pace or None
        self.folder = folder
        self.keep = keep
        self.interval = interval
        self.stats = BackupStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (the first backup comes one interval later)."""
        self._thread = threading.Thread(target=self._run, name="llmgw-backup", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the thread to end and wait for a backup under way to finish (up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        # this thread only (Linux): the gateway's threads keep their priority
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while not self._stop.wait(self.interval):
            self.run_once()

    def run_once(self) -> None:
        """Take one backup now; log and count the result (never raises)."""
        from llmgw.storage.backup import backup

        self.stats.running = True
        started = time.monotonic()
        try:
            result = backup(self.url, self.folder, keep=self.keep, pace=self.pace)
        except LlmgwError as exc:
            self.stats.results["failed"] += 1
            log.error("scheduled backup failed after %.1f s: %s", time.monotonic() - started, exc)
            return
        except Exception as exc:  # a full disk, a vanished folder: logged, retried next time
            self.stats.results["failed"] += 1
            log.error("scheduled backup failed: %s: %s", type(exc).__name__, exc)
            return
        finally:
            self.stats.running = False
        self.stats.results["ok"] += 1
        self.stats.last_success = time.time()
        self.stats.last_seconds = result.seconds
        self.stats.last_bytes = result.bytes
        log.info(
            "scheduled backup written: %s (%d bytes, %.1f s, %d older removed)",
            result.file,
            result.bytes,
            result.seconds,
            len(result.removed or []),
        )
