"""``llmgw dash`` as a person sees it: time to the first screen with data, memory, and what one
dashboard polling every second costs the server (issue 10 targets).

    python tests/perf/bench_dash.py            # 1,000,000 usage rows, 5 starts per mode; writes docs
    python tests/perf/bench_dash.py --quick    # 100,000 rows, 2 starts, 5 s windows; prints only
    python tests/perf/bench_dash.py --before REV   # also REV's dashboard, interleaved, same run

Setup: a temporary ``LLMGW_HOME`` whose SQLite database holds N usage rows (``usagedata.py``:
one ``executemany`` in one transaction, 30 days, 20 keys) folded into the rollups, and an admin
key. Every process under test is pinned: the dashboard to core ``--cpu`` (default 1), the server
to the other core. There is no config file, so ``llmgw dash`` takes the CLI's fast path
(``cli/fast.py``: no Typer, and before the first frame no pydantic and, locally, no SQLAlchemy);
a config that sets more than ``home`` and ``database.url`` takes the Typer app instead.

First paint: the dashboard runs in a private tmux server (``tmux -L``, 160x48). The clock starts
right before ``respawn-pane`` starts ``llmgw dash`` and stops when ``capture-pane`` (polled every
10 ms) first shows the status line ``updated hh:mm``: the first poll's data is on the screen (the
status line is written in the same UI step that shows the data). That is process start, Python,
imports, the database or ``whoami``, the first fetch and the paint: what a person waits for.
Then ``3`` switches to Usage (24h by hour and by model, the heaviest screen) and the clock runs
until its status line says ``last 24h by model; updated``. Local: the SQLite database directly;
remote: ``--url`` on a real ``llmgw serve`` on the same database.

RSS: ``VmRSS`` of the dashboard after first paint, and ``VmHWM`` (peak) after visiting every
screen and polling for a while.

Server cost: CPU time of the ``llmgw serve`` process (user + system from ``/proc``) over a fixed
window, idle (no dashboard) and with one dashboard at ``--interval 1`` on Providers (its start
screen) and on Usage, in the same run; the cost is the difference, as a share of one core.

Baseline (``--before REV``): a ``git archive`` snapshot of REV (``PYTHONPATH`` puts it first) runs
the same starts, alternating with this revision's, and its own Usage window against the same
server (the dashboard decides how often it asks; the server is this revision's). Local starts of
REV need a database at REV's schema: they run only when REV has the same migrations.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import usagedata
from benchlib import (
    CLK_TCK,
    REPO,
    free_port,
    git_rev,
    machine_facts,
    snapshot,
    start,
    wait_ready,
    write_block,
)

DOC = REPO / "docs" / "performance.md"
LLMGW = str(Path(sys.executable).parent / "llmgw")
PAINTED = re.compile(r"updated \d\d:\d\d")
USAGE_PAINTED = re.compile(r"last 24h by model; updated \d\d:\d\d")
TARGETS = {"first_paint_s": 1.0, "rss_mb": 120.0, "server_cpu_pct": 1.0}


class Tmux:
    """A private tmux server with one 160x48 pane."""

    def __init__(self, env: dict[str, str]) -> None:
        self.sock = f"llmgw-bench-dash-{os.getpid()}"
        # the server copies its environment into the pane; COLUMNS/LINES would override its size
        self.env = {k: v for k, v in env.items() if k not in {"COLUMNS", "LINES"}}
        self.run("new-session", "-d", "-s", "b", "-x", "160", "-y", "48", "cat")
        self.run("set-option", "-g", "remain-on-exit", "on")  # respawn after the dashboard quits

    def run(self, *args: str) -> str:
        argv = ["tmux", "-L", self.sock, "-f", "/dev/null", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=True, env=self.env).stdout

    def capture(self) -> str:
        return self.run("capture-pane", "-p", "-t", "b")

    def pid(self) -> int:
        return int(self.run("display-message", "-p", "-t", "b", "#{pane_pid}").strip())

    def start(self, cmd: str) -> float:
        t0 = time.perf_counter()
        self.run("respawn-pane", "-k", "-t", "b", cmd)
        return t0

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "b", *keys)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if pattern.search(self.capture()):
                return time.perf_counter()
            time.sleep(0.01)
        raise RuntimeError(f"no {pattern.pattern!r} on screen after {timeout} s:\n{self.capture()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, check=False)


def _status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def dash_run(tmux: Tmux, cmd: str, *, tour: bool) -> dict[str, float]:
    """One dashboard start: first paint, Usage paint, RSS; ``q`` at the end."""
    t0 = tmux.start(cmd)
    t1 = tmux.wait_for(PAINTED)
    pid = tmux.pid()
    out = {
        "first_paint_s": t1 - t0,
        "rss_first_mb": _status(pid, "VmRSS"),
        "cpu_first_s": _cpu(pid),
    }
    t2 = time.perf_counter()
    tmux.keys("3")
    out["usage_paint_s"] = tmux.wait_for(USAGE_PAINTED) - t2
    if tour:  # every screen, then a few polls on each of the heavy ones
        for key in ("2", "4", "5", "6", "3", "1"):
            tmux.keys(key)
            time.sleep(1.5)
    out["rss_peak_mb"] = _status(pid, "VmHWM")
    out["rss_end_mb"] = _status(pid, "VmRSS")
    tmux.keys("q")
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--starts", type=int, default=5, help="dashboard starts per mode")
    ap.add_argument("--window", type=float, default=20.0, help="seconds per server-CPU window")
    ap.add_argument(
        "--cpu", type=int, default=1, help="the dashboard's core (the server gets the other)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="100,000 rows, 2 starts, 5 s windows, no docs"
    )
    ap.add_argument("--before", metavar="REV", help="also measure REV's dashboard in the same run")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.starts, args.window, args.no_write = 100_000, 2, 5.0, True
    if shutil.which("tmux") is None:
        sys.exit("tmux is needed (apt-get install -y tmux)")
    server_cpu = 1 - args.cpu
    tmp = Path(tempfile.mkdtemp(prefix="llmgw-bench-dash-"))
    home = tmp / "home"
    home.mkdir()
    # no PYTHON* (PYTHONDONTWRITEBYTECODE would compile a snapshot at every start)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMGW_", "PYTHON"))}
    env.update(LLMGW_HOME=str(home), TERM="xterm-256color", COLORTERM="truecolor")
    os.environ["LLMGW_HOME"] = str(home)
    from llmgw.admin.local import LocalAdmin
    from llmgw.admin.ops import Actor
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade
    from llmgw.usage import rollup

    load0 = os.getloadavg()
    engine = make_engine(f"sqlite:///{home / 'llmgw.db'}")
    upgrade(engine)
    filled = usagedata.fill(engine, args.rows)
    t = time.perf_counter()
    rollup.refresh(engine)
    fold_s = time.perf_counter() - t
    admin = LocalAdmin(engine, Actor.local(), source="cli")
    admin.users_create("admin@bench.example", role="admin")
    token = admin.keys_create("dash", user="admin@bench.example")["key"]
    engine.dispose()
    print(
        f"{args.rows:,} rows in {filled['seconds']:.1f} s, folded in {fold_s:.1f} s",
        file=sys.stderr,
    )
    prefix: dict[str, str] = {"now": ""}
    before = ""
    same_schema = True
    if args.before:
        src, before = snapshot(tmp, args.before)
        prefix["before"] = f"env PYTHONPATH={src} "
        same_schema = sorted(
            p.name for p in (src.parent / "migrations" / "versions").glob("0*.py")
        ) == sorted(p.name for p in (REPO / "migrations" / "versions").glob("0*.py"))
    tmux = Tmux(env)
    server = None
    results: dict[str, list[dict[str, float]]] = {}
    cpu: dict[str, float] = {}
    try:

        def starts(mode: str, args_: str, versions: list[str]) -> None:
            for v in versions:  # warm-up (not counted): .pyc files, page cache
                dash_run(tmux, f"{prefix[v]}taskset -c {args.cpu} {LLMGW} dash {args_}", tour=False)
            for i in range(args.starts):
                for v in versions if i % 2 == 0 else versions[::-1]:
                    cmd = f"{prefix[v]}taskset -c {args.cpu} {LLMGW} dash {args_}"
                    run = dash_run(tmux, cmd, tour=i == 0)
                    results.setdefault(f"{mode} ({v})", []).append(run)
                    print(mode, v, run, file=sys.stderr)

        local_versions = [v for v in prefix if v == "now" or same_schema]
        starts("local", "--interval 1", local_versions)
        port = free_port()
        server = start(
            "llmgw",
            [LLMGW, "serve", "--port", str(port)],
            port=port,
            cpu=server_cpu,
            log=tmp / "serve.log",
            env={**env, "LLMGW_LOG_LEVEL": "warning"},
        )
        wait_ready(server, "/readyz")
        remote_args = f"--interval 1 --url {server.url} --token {token}"
        starts("remote", remote_args, list(prefix))
        server.wait_idle()

        def window() -> float:
            assert server is not None
            c0 = server.cpu_ticks()
            time.sleep(args.window)
            return float((server.cpu_ticks() - c0) / CLK_TCK / args.window * 100)

        cpu["idle"] = window()
        for v in prefix:
            tmux.start(f"{prefix[v]}taskset -c {args.cpu} {LLMGW} dash {remote_args}")
            tmux.wait_for(PAINTED)
            time.sleep(2)
            if v == "now":
                cpu["providers"] = window()
            tmux.keys("3")
            tmux.wait_for(USAGE_PAINTED)
            time.sleep(2)
            cpu[f"usage ({v})"] = window()
            if v == "now":
                tmux.keys("2")
                time.sleep(2)
                cpu["requests"] = window()
            tmux.keys("q")
            time.sleep(1)
        cpu["idle_after"] = window()
        print("server cpu %", cpu, file=sys.stderr)
    finally:
        tmux.close()
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()
    report(args, results, cpu, filled["seconds"], fold_s, load0, load1, before, same_schema)


def report(
    args: Any,
    results: dict[str, list[dict[str, float]]],
    cpu: dict[str, float],
    fill_s: float,
    fold_s: float,
    load0: tuple[float, float, float],
    load1: tuple[float, float, float],
    before: str = "",
    same_schema: bool = True,
) -> None:
    facts = machine_facts()
    busy = max(load0[0], load1[0]) > 1.5
    command = "python tests/perf/bench_dash.py" + (" --quick" if args.quick else "")
    if args.before:
        command += f" --before {args.before}"
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at `{git_rev()}`, {facts['cpu']}, {facts['cores']} cores, "
        f"Python {facts['python']}; dashboard on core {args.cpu}, server on core {1 - args.cpu}; load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end"
        + (" (**machine busy: provisional figures**)" if busy else "")
        + f". Command: `{command}`.",
        "",
        f"SQLite database with {args.rows:,} usage rows (filled in {fill_s:.1f} s by one `executemany`, folded into "
        f"the rollups in {fold_s:.1f} s). {args.starts} starts per mode and version, alternating, after one "
        'warm-up start each; medians (min-max). "CPU" is the dashboard\'s own CPU time at first paint '
        "(user + system), which other load inflates far less than wall time.",
    ]
    if before:
        lines += [
            "",
            f"Before: `{before}`, a `git archive` snapshot run in the same rounds"
            + (
                ""
                if same_schema
                else " (remote only: its migrations differ, so it cannot open this database)"
            )
            + ".",
        ]
    lines += [
        "",
        "| mode (version) | first paint with data | its CPU time | then Usage (24h) painted | RSS at first paint | RSS peak (every screen) | targets |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for mode, runs in results.items():
        fp = [r["first_paint_s"] for r in runs]
        up = [r["usage_paint_s"] for r in runs]
        rss = [r["rss_first_mb"] for r in runs]
        cpu_first = statistics.median(r["cpu_first_s"] for r in runs)
        peak = max(r["rss_peak_mb"] for r in runs)
        ok_fp = statistics.median(fp) <= TARGETS["first_paint_s"]
        ok_rss = peak <= TARGETS["rss_mb"]
        lines.append(
            f"| {mode} | {statistics.median(fp):.2f} s ({min(fp):.2f}-{max(fp):.2f}) | {cpu_first:.2f} s | "
            f"{statistics.median(up):.2f} s ({min(up):.2f}-{max(up):.2f}) | {statistics.median(rss):.0f} MiB | "
            f"{peak:.0f} MiB | first paint <= 1 s {'met' if ok_fp else '**missed**'}; "
            f"RSS <= 120 MB {'met' if ok_rss else '**missed**'} |"
        )
    idle = cpu["idle"]
    lines += [
        "",
        f"`llmgw serve` CPU over {args.window:.0f} s windows, one dashboard at `--interval 1` (remote, SQLite with the same rows):",
        "",
        "| server | CPU, % of one core | cost of the dashboard | target <= 1% |",
        "|---|---:|---:|---|",
        f"| idle, before | {idle:.2f}% | - | - |",
    ]
    for name in ("providers", "usage (now)", "usage (before)", "requests"):
        if name not in cpu:
            continue
        cost = cpu[name] - idle
        verdict = "met" if cost <= TARGETS["server_cpu_pct"] else "**missed**"
        label = (
            name.replace("(now)", "").replace("(before)", "(before: " + before.split()[0] + ")")
            if before
            else name.replace(" (now)", "")
        )
        lines.append(
            f"| dashboard on {label.strip().capitalize()} | {cpu[name]:.2f}% | {cost:+.2f}% | {verdict} |"
        )
    lines.append(f"| idle, after | {cpu['idle_after']:.2f}% | - | - |")
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block(DOC, "bench_dash", block, section="## Admin dashboard")


if __name__ == "__main__":
    main()
