"""Backups taken by ``llmgw serve`` itself every ``[backup] interval`` seconds.

A daemon thread sleeps on an event, then runs ``backup.backup`` (the same online backup, check
and rotation as ``llmgw db backup``) in a child process at the lowest CPU priority (``nice``
19, in a session and scheduling group of its own, that group at nice 19 too): the copy and its
integrity check take no turn of the gateway's GIL (a backup thread inside the gateway, even at
nice 19, made requests wait for it whenever it held the GIL between two steps), get a core only
when the gateway leaves it idle, and their CPU time does not count against the gateway's
group. ``[backup] cpus`` says where the child runs: by default, when the gateway is
pinned to some of the machine's CPUs, on the others. The copy reads one snapshot and never
blocks a writer. One log line per backup (``llmgw.backup``), and the counters ``stats``
exports as metrics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmgw.errors import ConfigError, DataCheckFailed, LlmgwError

__all__ = ["BackupScheduler", "BackupStats", "backup_cpus", "child_main", "machine_cpus"]

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


def machine_cpus() -> set[int]:
    """The CPUs this process may be given: its cgroup's cpuset (a container's or a service's),
    else the machine's online CPUs. Not the process's own affinity, which ``taskset`` or
    systemd's ``CPUAffinity=`` may have narrowed."""
    from llmgw.config import parse_cpu_list

    files = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):  # cgroup v2
                files.append(Path("/sys/fs/cgroup", line[3:].lstrip("/"), "cpuset.cpus.effective"))
    files.append(Path("/sys/devices/system/cpu/online"))
    for file in files:
        with contextlib.suppress(OSError, ValueError):
            if text := file.read_text().strip():
                return parse_cpu_list(text)
    return set(range(os.cpu_count() or 1))


def backup_cpus(setting: str, gateway: set[int] | None = None) -> set[int] | None:
    """The CPUs ``[backup] cpus`` gives the backup process, or None to leave it where it is
    born (the gateway's CPUs, the kernel choosing among them). ``gateway``: the gateway's
    affinity (default: this process's).

    ``auto``: when the gateway is pinned to a strict subset of ``machine_cpus``, the others (on
    a 2-core box with the gateway on core 1, a backup that shares its core raised its p99 by
    about 70 %; see docs/performance.md), else None. ``any``: every CPU of ``machine_cpus``. A
    CPU list: those; ``ConfigError`` when none of them is there."""
    machine = machine_cpus()
    if setting == "auto":
        mine = set(os.sched_getaffinity(0)) if gateway is None else gateway
        rest = machine - mine
        return rest if rest and mine & machine else None
    if setting == "any":
        return machine
    from llmgw.config import parse_cpu_list

    chosen = parse_cpu_list(setting) & machine
    if not chosen:
        raise ConfigError(
            f"[backup] cpus = {setting!r}: no such CPU here (this machine's: {_cpu_text(machine)})",
            hint='use "auto", "any" or CPUs of this machine',
        )
    return chosen


def _cpu_text(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


class BackupScheduler:
    """Back up ``url`` into ``folder`` every ``interval`` seconds, keeping ``keep``; the backup
    process runs on the CPUs ``backup_cpus(cpus)`` names."""

    def __init__(
        self,
        url: str,
        folder: Path,
        *,
        keep: int,
        interval: float,
        pace: float = 0.0,
        check: str = "quick",
        method: str = "api",
        cpus: str = "auto",
    ) -> None:
        self.url = url
        self.pace = pace or None
        self.check = check
        self.method = method
        self.folder = folder
        self.keep = keep
        self.interval = interval
        self.cpus = backup_cpus(cpus)
        self.stats = BackupStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the thread (the first backup comes one interval later)."""
        self._thread = threading.Thread(target=self._run, name="llmgw-backup", daemon=True)
        self._thread.start()
        log.info(
            "scheduled backups every %g s into %s, on CPUs %s",
            self.interval,
            self.folder,
            _cpu_text(self.cpus)
            if self.cpus
            else f"{_cpu_text(os.sched_getaffinity(0))} (the gateway's)",
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the thread to end and wait for a backup under way to finish (up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        child = self._child
        if child is not None and child.poll() is None:  # still copying: its .partial is dropped
            child.terminate()

    def _run(self) -> None:
        # this thread only (Linux): the gateway's threads keep their priority
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        if self.cpus:  # the child is born there: its start-up stays off the gateway's CPUs too
            with contextlib.suppress(OSError, AttributeError):
                os.sched_setaffinity(threading.get_native_id(), self.cpus)
        while not self._stop.wait(self.interval):
            self.run_once()

    def _backup_in_child(self) -> dict[str, Any]:
        """``backup.backup`` in a child process at nice 19; its result as ``as_dict`` gives it.

        The database URL (it may hold a password) goes through the child's stdin, never its
        command line."""
        request = {"url": self.url, "folder": str(self.folder), "keep": self.keep,
                   "pace": self.pace, "quick": self.check == "quick", "method": self.method,
                   "cpus": sorted(self.cpus) if self.cpus else None}  # fmt: skip
        argv = [
            sys.executable,
            "-c",
            "from llmgw.storage.backup_schedule import child_main; child_main()",
        ]
        self._child = child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own scheduling group (child_main)
        )
        try:
            out, err = child.communicate(json.dumps(request))
        finally:
            self._child = None
        lines = out.strip().splitlines()
        answer: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        if "error" in answer:
            raise DataCheckFailed(str(answer["error"]))
        if child.returncode != 0 or "file" not in answer:
            last = (err.strip().splitlines() or ["no output"])[-1][:300]
            raise RuntimeError(f"backup process exited {child.returncode}: {last}")
        return answer

    def run_once(self) -> None:
        """Take one backup now; log and count the result (never raises)."""
        self.stats.running = True
        started = time.monotonic()
        try:
            result = self._backup_in_child()
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
        self.stats.last_seconds = float(result["seconds"])
        self.stats.last_bytes = int(result["bytes"])
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in (result.get("phases") or {}).items())
        log.info(
            "scheduled backup written: %s (%d bytes, %.1f s%s, %s check%s, %d older removed)",
            result["file"],
            result["bytes"],
            result["seconds"],
            f": {phases}" if phases else "",
            result["checks"].get("check", "archive"),
            f", {result['copied_by']} copy" if result.get("copied_by") else "",
            len(result["removed"]),
        )


def _lowest_group_weight() -> bool:
    """Put this process's scheduling group (Linux autogroup: its own, as it leads a new session)
    at nice 19; whether that took.

    Within one group a nice-19 process yields to the gateway, but the group's CPU time is
    shared: with other groups busy on the core (other sessions, other services), every CPU
    second the backup used counted against the gateway's group, and the gateway waited for the
    others in turn. In its own group at the lowest weight it takes only what the others leave.
    The kernel rate-limits this setting (EAGAIN), hence the retries; without autogroups (a
    service's cgroup under systemd, or a container's: the file reads empty, ``CPUWeight=``
    there) nothing changes."""
    if os.getsid(0) != os.getpid():  # the group is the caller's session's: leave it alone
        return False
    group = Path("/proc/self/autogroup")
    try:
        if not group.read_text().strip():  # in a cgroup of its own: no autogroup applies
            return False
    except OSError:  # no autogroups in this kernel
        return False
    for _ in range(5):
        try:
            group.write_text("19")
            return True
        except BlockingIOError:  # EAGAIN: another process changed a group's nice just now
            time.sleep(0.1)
        except OSError:
            return False
    return False


def child_main() -> None:
    """The backup process: a JSON request on stdin, the result (or ``{"error": ...}``) as one
    JSON line on stdout."""
    with contextlib.suppress(OSError):
        os.nice(19)
    _lowest_group_weight()
    request = json.loads(sys.stdin.read())
    if request.get("cpus"):
        with contextlib.suppress(OSError, AttributeError):  # a CPU gone offline since: stay
            os.sched_setaffinity(0, request["cpus"])
    from llmgw.storage.backup import backup

    try:
        result = backup(
            request["url"],
            Path(request["folder"]),
            keep=request["keep"],
            pace=request["pace"],
            quick=request.get("quick", False),
            method=request.get("method", "api"),
        )
    except LlmgwError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        raise SystemExit(1) from None
    print(json.dumps(result.as_dict()), flush=True)
