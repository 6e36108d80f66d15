"""CLI start-up benchmark: how long ``llmgw --help`` and ``llmgw keys list`` take, next to ``python -c pass``.

    .venv/bin/python tests/perf/bench_cli.py                    # 15 rounds, rewrites docs/performance.md
    .venv/bin/python tests/perf/bench_cli.py --before main~5    # also a git revision, in the same run
    .venv/bin/python tests/perf/bench_cli.py --runs 5 --no-write

Every process runs on one pinned core (``--cpu``, default 1). A round runs each case once, in a
rotating order, so a burst of load from elsewhere hits every case alike; the report gives the
median wall time of the rounds and the median CPU time (user + system, from ``wait4``), which
other load inflates less. ``python -c pass`` is the floor any Python program pays;
``python -c "import typer"`` is the floor of a Typer CLI. ``keys list`` reads ten keys from SQLite
under a temporary ``LLMGW_HOME`` whose schema is current (the fast path of ``cli/fast.py``);
``llmgw -c server.toml keys list`` reads the same keys with a config that sets a server port, which
the fast path leaves to the Typer app and the pydantic settings. ``--before REV`` runs a ``git archive``
snapshot of REV through the same console script (``PYTHONPATH`` puts it first), so the gain is
measured on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import REPO, git_rev, machine_facts, snapshot, write_block

DOC = REPO / "docs" / "performance.md"
LLMGW = str(Path(sys.executable).parent / "llmgw")
TARGETS = {"llmgw --help": 0.15, "llmgw keys list": 0.25}
"""Wall-time targets in seconds (issue 9 item 10), for a machine that is otherwise idle."""
CASES: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import typer"': [sys.executable, "-c", "import typer"],
    "llmgw --help": [LLMGW, "--help"],
    "llmgw keys list": [LLMGW, "keys", "list"],
}
BASELINES = ("python -c pass", 'python -c "import typer"')
FULL_PATH = "llmgw -c server.toml keys list"
"""``keys list`` with a config that sets more than the database: the fast path (``cli/fast.py``)
declines it, so this is the Typer app with the pydantic settings (no target; for comparison)."""


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; stdout is discarded, a failure stops the benchmark."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(
    runs: int, versions: dict[str, dict[str, str]]
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """``runs`` interleaved rounds of every (version, case); one warm-up run each first."""
    jobs = [(v, c) for v in versions for c in CASES if v == "now" or c.startswith("llmgw")]
    for v, c in jobs:  # warm-up: compiles the snapshot's .pyc files, fills the page cache
        run_once(CASES[c], versions[v])
    out: dict[tuple[str, str], list[tuple[float, float]]] = {job: [] for job in jobs}
    for i in range(runs):
        k = i % len(jobs)
        for v, c in jobs[k:] + jobs[:k]:
            out[v, c].append(run_once(CASES[c], versions[v]))
    return out


def summarise(samples: dict[tuple[str, str], list[tuple[float, float]]]) -> list[dict[str, Any]]:
    """One row per (version, case): medians, the margin over ``python -c pass``, the target."""
    base = statistics.median(w for w, _ in samples["now", "python -c pass"])
    rows = []
    for (version, case), values in samples.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        target = TARGETS.get(case) if version == "now" else None
        rows.append(
            {
                "version": version,
                "case": case,
                "wall_s": round(wall, 4),
                "cpu_s": round(cpu, 4),
                "over_pass_s": round(wall - base, 4),
                "target_s": target,
                "met": None if target is None else wall <= target,
            }
        )
    return rows


def render(rows: list[dict[str, Any]], facts: dict[str, str], meta: dict[str, str]) -> str:
    """The markdown block for docs/performance.md."""
    before = {r["case"]: r for r in rows if r["version"] != "now"}
    lines = [
        f"Measured {meta['date']} at `{meta['rev'].split()[0]}` ({meta['runs']} rounds, core "
        f"{meta['cpu']}; load average {meta['load']} at the start; {facts.get('cpu', '?')}, "
        f"Python {facts['python']}).",
        "",
        "| command | wall (median) | CPU (median) | wall over `python -c pass` | target |"
        + (" before: wall, CPU | CPU after / before |" if before else ""),
        "|---|---:|---:|---:|---|" + ("---|---:|" if before else ""),
    ]
    for r in rows:
        if r["version"] != "now":
            continue
        target = "-" if r["target_s"] is None else f"<= {r['target_s']:.2f} s"
        if r["met"] is not None:
            target += " met" if r["met"] else " **missed**"
        b = before.get(r["case"])
        was = ""
        if b:
            was = f" {b['wall_s']:.3f} s, {b['cpu_s']:.3f} s | {r['cpu_s'] / b['cpu_s']:.0%} |"
        elif before:
            was = " - | - |"
        lines.append(
            f"| `{r['case']}` | {r['wall_s']:.3f} s | {r['cpu_s']:.3f} s | "
            f"{r['over_pass_s']:+.3f} s | {target} |{was}"
        )
    if before:
        lines += [
            "",
            f"Before: `{meta['before']}`, a `git archive` snapshot run in the same rounds.",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=15, help="interleaved rounds (default 15)")
    ap.add_argument("--cpu", type=int, default=1, help="the core every process runs on")
    ap.add_argument("--before", metavar="REV", help="also measure this git revision")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the docs alone")
    ap.add_argument("--json", metavar="FILE", help="write the raw samples and rows here")
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.cpu})  # children inherit it
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="llmgw-bench-cli-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMGW_", "PYTHON"))}
        env.update(LLMGW_HOME=str(Path(tmp) / "home"), COLUMNS="100", NO_COLOR="1")
        config = Path(tmp) / "server.toml"
        config.write_text("[server]\nport = 8080\n")
        CASES[FULL_PATH] = [LLMGW, "-c", str(config), "keys", "list"]
        versions = {"now": env}
        before = ""
        if args.before:
            src, before = snapshot(Path(tmp), args.before)
            # its own home: a database migrated by a newer revision is one it cannot open
            home = str(Path(tmp) / "home-before")
            versions["before"] = {**env, "PYTHONPATH": str(src), "LLMGW_HOME": home}
        for version_env in versions.values():
            for i in range(10):  # a current schema with ten keys, made by that version
                subprocess.run(  # noqa: S603
                    [LLMGW, "keys", "create", "--name", f"bench-{i}", "--json"],
                    env=version_env,
                    check=True,
                    capture_output=True,
                )
        samples = measure(args.runs, versions)
    rows = summarise(samples)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rev": git_rev(),
        "runs": str(args.runs),
        "cpu": str(args.cpu),
        "load": load,
        "before": before,
    }
    block = render(rows, machine_facts(), meta)
    print(block)
    if args.json:
        raw = {f"{v} | {c}": s for (v, c), s in samples.items()}
        Path(args.json).write_text(
            json.dumps({"meta": meta, "rows": rows, "samples": raw}, indent=1)
        )
    if not args.no_write:
        write_block(DOC, "bench_cli", block, section="## CLI start-up")


if __name__ == "__main__":
    main()
