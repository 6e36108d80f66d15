"""``[backup] interval``: ``llmgw serve`` takes online backups itself, in a thread, while it
serves (issue 12), with a metric and a log line per backup, rotated to ``[backup] keep``."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest


def _request_ids(path: Path) -> set[str]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT request_id FROM usage")}
    finally:
        conn.close()


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


def test_serve_backs_up_on_its_own_while_serving(
    home: Path,
    tmp_path: Path,
    emulator: Any,
    auth: dict[str, str],
    serve_process: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "backups"
    monkeypatch.setenv("LLMGW_BACKUP__INTERVAL", "1")
    monkeypatch.setenv("LLMGW_BACKUP__KEEP", "2")
    monkeypatch.setenv("LLMGW_BACKUP__DIR", str(folder))
    monkeypatch.setenv("LLMGW_USAGE__FLUSH_INTERVAL", "0.05")
    proc, base = serve_process(emulator.url)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=base, timeout=10) as client:
        ids = []
        for _ in range(5):  # requests are answered while backups run in the background
            r = client.post("/v1/chat/completions", headers=auth, json=body)
            assert r.status_code == 200
            ids.append(r.headers["x-request-id"])
        time.sleep(0.5)  # the usage rows are committed (flush_interval 0.05 s)
        committed_at = time.time()
        # each backup is a child process at nice 19: on a loaded machine it waits for the core
        deadline = time.monotonic() + 120
        while True:
            metrics = client.get("/metrics").text
            ok = _metric(metrics, 'llmgw_backups_total{result="ok"}')
            last = _metric(metrics, "llmgw_backup_last_success_timestamp_seconds")
            if ok >= 3 and last > committed_at + 1:  # one backup began after the rows
                break
            assert time.monotonic() < deadline, metrics
            assert client.post("/v1/chat/completions", headers=auth, json=body).status_code == 200
            time.sleep(0.3)
        assert _metric(metrics, 'llmgw_backups_total{result="failed"}') == 0
        assert _metric(metrics, "llmgw_backup_last_size_bytes") > 0
    files = sorted(folder.glob("llmgw-*.db"))
    assert len(files) == 2  # keep = 2: the older ones were rotated away
    assert set(ids) <= _request_ids(files[-1])  # the newest holds every request served before
    assert not list(folder.glob("*.partial"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    log = (tmp_path / "serve.log").read_text()
    assert log.count("scheduled backup written: ") >= 3 and str(folder) in log
    assert "quick check" in log  # [backup] check defaults to quick_check (docs/migration.md)
    assert "quick check, api copy" in log  # [backup] method defaults to the backup API


def test_a_failed_backup_in_the_child_process_is_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from llmgw.storage.backup_schedule import BackupScheduler

    missing = tmp_path / "gone.db"
    sched = BackupScheduler(f"sqlite:///{missing}", tmp_path / "b", keep=2, interval=3600)
    with caplog.at_level("ERROR", logger="llmgw.backup"):
        sched.run_once()
    assert sched.stats.results == {"ok": 0, "failed": 1} and not sched.stats.running
    assert f"no database at {missing}" in caplog.text  # the child's reason reaches the log
    assert not list((tmp_path / "b").glob("*"))


def _database(path: Path, rows: int = 2_000) -> Path:
    from tests.migrate_data import generate, migrated_sqlite

    migrated_sqlite(path)
    generate(path, usage=rows)
    return path


@pytest.mark.parametrize("check", ["quick", "full"])
def test_a_scheduled_backup_checks_its_copy_as_backup_check_says(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, check: str
) -> None:
    from llmgw.storage.backup_schedule import BackupScheduler

    db = _database(tmp_path / "llmgw.db")
    folder = tmp_path / "b"
    sched = BackupScheduler(f"sqlite:///{db}", folder, keep=2, interval=3600, check=check)
    with caplog.at_level("INFO", logger="llmgw.backup"):
        sched.run_once()
    assert sched.stats.results == {"ok": 1, "failed": 0}
    assert f"{check} check" in caplog.text
    assert re.search(r"s: copy [\d.]+ s, sync [\d.]+ s, check [\d.]+ s", caplog.text)
    (copy,) = folder.glob("llmgw-*.db")
    assert _request_ids(copy) == _request_ids(db)


@pytest.mark.parametrize("method", ["file", "api"])
def test_a_scheduled_backup_copies_as_backup_copy_says(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    """``[backup] method``: the backup API (the default) and the file-level copy give the same
    rows; the log line says which one ran."""
    from llmgw.storage.backup_schedule import BackupScheduler

    db = _database(tmp_path / "llmgw.db")
    folder = tmp_path / "b"
    sched = BackupScheduler(f"sqlite:///{db}", folder, keep=2, interval=3600, method=method)
    with caplog.at_level("INFO", logger="llmgw.backup"):
        sched.run_once()
    assert sched.stats.results == {"ok": 1, "failed": 0}, caplog.text
    assert f"quick check, {method} copy" in caplog.text
    (made,) = folder.glob("llmgw-*.db")
    assert _request_ids(made) == _request_ids(db)


def test_the_quick_check_still_refuses_a_damaged_copy_and_keeps_the_older_backups(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from llmgw.storage.backup_schedule import BackupScheduler

    db = _database(tmp_path / "llmgw.db", rows=20_000)
    folder = tmp_path / "b"
    sched = BackupScheduler(f"sqlite:///{db}", folder, keep=1, interval=3600)  # check: quick
    sched.run_once()
    (good,) = folder.glob("llmgw-*.db")
    data = bytearray(db.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\xa5" * 4096  # a page of garbage
    db.write_bytes(bytes(data))
    with caplog.at_level("ERROR", logger="llmgw.backup"):
        sched.run_once()
    assert sched.stats.results == {"ok": 1, "failed": 1}
    assert "fails its integrity check" in caplog.text or "not a readable" in caplog.text
    assert list(folder.glob("llmgw-*")) == [good]  # no damaged copy; keep = 1 did not rotate


_GROUP = """
import os
from pathlib import Path
from llmgw.storage.backup_schedule import _lowest_group_weight
took = _lowest_group_weight()
group = Path("/proc/self/autogroup").read_text().split()  # empty outside any autogroup
print(took, group[-1] if group else "-", os.getsid(0) == os.getpid())
"""


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroups (Linux)")
def test_the_backup_process_gets_its_own_scheduling_group_at_the_lowest_weight() -> None:
    """The scheduled backup's child leads a new session, so its CPU time is charged to a
    scheduling group of its own at nice 19, not to the gateway's; a process that does not lead
    its session leaves its (shared) group alone."""
    import subprocess
    import sys

    before = Path("/proc/self/autogroup").read_text()
    led = subprocess.run(
        [sys.executable, "-c", _GROUP], start_new_session=True, capture_output=True, text=True
    )
    assert led.returncode == 0, led.stderr
    took, nice, leader = led.stdout.split()
    assert leader == "True"
    if took == "False":  # pragma: no cover - a kernel that refuses the setting
        pytest.skip("no autogroup applies here (a cgroup of its own), or the kernel refused it")
    assert nice == "19"
    shared = subprocess.run([sys.executable, "-c", _GROUP], capture_output=True, text=True)
    assert shared.returncode == 0, shared.stderr
    assert shared.stdout.split()[0] == "False", shared.stdout
    assert Path("/proc/self/autogroup").read_text() == before  # the caller's group untouched


def _backup_child(pid: int, deadline: float) -> int:
    """The pid of ``pid``'s backup process, once one runs (found in /proc as a user would)."""
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in kids:
                try:
                    if b"child_main" in Path(f"/proc/{kid}/cmdline").read_bytes():
                        return int(kid)
                except OSError:
                    continue
        time.sleep(0.05)
    raise AssertionError("no backup process started")


def _allowed(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M)
    assert found, status
    return found.group(1)


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
    reason="CPU affinity (Linux, 2+ CPUs)",
)
@pytest.mark.parametrize(
    ("pinned", "setting", "expected"),
    [
        (True, None, "the others"),  # [backup] cpus = "auto" (the default)
        (True, "same", "the gateway's"),  # the worst case, asked for by number
        (False, None, "the gateway's"),  # an unpinned gateway: the kernel places the backup
    ],
)
def test_the_backup_process_runs_off_a_pinned_gateways_cpus(
    home: Path,
    tmp_path: Path,
    emulator: Any,
    serve_process: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    pinned: bool,
    setting: str | None,
    expected: str,
) -> None:
    """``taskset -c N llmgw serve``: the scheduled backup process runs on the machine's other
    CPUs (``[backup] cpus = "auto"``) or where ``LLMGW_BACKUP__CPUS`` says, at nice 19; /proc
    shows both."""
    from llmgw.storage.backup_schedule import machine_cpus

    machine = machine_cpus()
    everything = os.sched_getaffinity(0)
    if not machine - {max(everything)} or max(everything) not in machine:
        pytest.skip("no CPU besides the gateway's to run the backup on")
    gateway = {max(everything)} if pinned else everything
    monkeypatch.setenv("LLMGW_BACKUP__INTERVAL", "0.5")
    monkeypatch.setenv("LLMGW_BACKUP__PACE", "0.2")  # the first 1 MB step, then ~5 s asleep
    monkeypatch.setenv("LLMGW_BACKUP__DIR", str(tmp_path / "backups"))
    if setting == "same":
        monkeypatch.setenv("LLMGW_BACKUP__CPUS", str(max(everything)))
    os.sched_setaffinity(0, gateway)  # the gateway is born pinned, as under taskset
    try:
        proc, _ = serve_process(emulator.url)
    finally:
        os.sched_setaffinity(0, everything)
    from llmgw.config import parse_cpu_list

    want = (machine - gateway) if expected == "the others" else gateway
    kid = _backup_child(proc.pid, time.monotonic() + 60)
    settled = time.monotonic() + 10  # the child lowers its priority as its interpreter starts
    while os.getpriority(os.PRIO_PROCESS, kid) != 19 and time.monotonic() < settled:
        time.sleep(0.02)
    assert os.getpriority(os.PRIO_PROCESS, kid) == 19
    assert parse_cpu_list(_allowed(kid)) == want
    assert parse_cpu_list(_allowed(proc.pid)) == gateway  # the gateway itself stays where it was
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    log = (tmp_path / "serve.log").read_text()
    assert f"on CPUs {','.join(map(str, sorted(want)))}" in log


def test_backup_cpus_names_cpus_of_this_machine_or_says_which_there_are() -> None:
    from llmgw.config import BackupSettings
    from llmgw.errors import ConfigError
    from llmgw.storage.backup_schedule import backup_cpus, machine_cpus

    machine = machine_cpus()
    assert BackupSettings(cpus=" 3-4, 0 ").cpus == "0,3,4"
    with pytest.raises(ValueError, match='not "auto", "any" or a CPU list'):
        BackupSettings(cpus="core1")
    assert backup_cpus("any") == machine
    assert backup_cpus("auto", gateway=set(machine)) is None  # not pinned: left to the kernel
    one = min(machine)
    assert backup_cpus("auto", gateway={one}) == (machine - {one} or None)
    assert backup_cpus(str(one)) == {one}
    with pytest.raises(ConfigError, match=r"no such CPU here \(this machine's: "):
        backup_cpus("4096")
