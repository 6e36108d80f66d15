"""The SQLite rollup fold on its own: CPU per row and how long it keeps a concurrent writer
waiting, two revisions in the same run.

    python tests/perf/bench_fold.py                          # 400,000 rows, HEAD against main
    python tests/perf/bench_fold.py --rows 100000 --baseline a24889a --repeat 5 --mix varied

One SQLite database is filled once (``--rows`` usage rows: ``gateway`` is what
``bench_gateway.py``'s server records, one key and model, status 200, latencies of a few ms,
within two UTC hours; ``varied`` spreads them over 20 keys, 9 models, 5 statuses and a day).
Each run copies it, then a child process importing the revision's snapshot (``git archive``,
``PYTHONPATH``) folds every row into the rollups (``rollup.refresh``, what ``llmgw serve`` runs
every ``usage.rollup_interval``) while a writer thread inserts one usage row every 2 ms, each
in its own transaction, as the usage writer does. Reported per revision, median of
``--repeat`` runs (alternating): the fold thread's CPU per row, its wall time, and the longest
a writer's insert waited during it (the database's one write lock). Runs on core 1 when there
are two. Prints a Markdown table; ``--json`` writes the raw numbers; nothing goes into the docs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib as bl

COLUMNS = (
    "request_id", "created_at", "user_id", "key_id", "endpoint", "provider", "model",
    "model_version", "stream", "prompt_tokens", "completion_tokens", "total_tokens", "cost",
    "latency_ms", "ttft_ms", "status", "error_type", "finish_reason",
)  # fmt: skip
START = datetime(2026, 12, 4, 12, 59, 30)

CHILD = r"""
import json, os, resource, sqlite3, sys, threading, time
from llmgw.storage.db import make_engine
from llmgw.usage import rollup

db, cols, row = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
engine = make_engine(f"sqlite:///{db}")
with engine.connect() as c:  # connect and import everything before the clock starts
    rollup.tail(c)
stop = threading.Event()
waits = []

def writer():
    con = sqlite3.connect(db, timeout=10, isolation_level=None)
    marks = ",".join("?" * len(row))
    i = 0
    while not stop.is_set():
        i += 1
        t = time.perf_counter()
        con.execute("BEGIN")
        con.execute(f"INSERT INTO usage ({cols}) VALUES ({marks})", [f"w-{i}", *row[1:]])
        con.execute("COMMIT")
        waits.append((t, time.perf_counter() - t))
        time.sleep(0.002)
    con.close()

w = threading.Thread(target=writer)
w.start()
time.sleep(0.2)
c0, t0 = time.thread_time(), time.perf_counter()
n = rollup.refresh(engine)
c1, t1 = time.thread_time(), time.perf_counter()
time.sleep(0.1)
stop.set()
w.join()
during = [wait for start, wait in waits if t0 <= start + wait and start <= t1]
print(json.dumps({
    "rows": n, "cpu_s": c1 - c0, "wall_s": t1 - t0,
    "writes": len(during), "write_wait_max_ms": max(during, default=0) * 1000,
    "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=400_000, help="usage rows to fold (400,000)")
    p.add_argument("--rev", default="HEAD", help="revision to measure (HEAD)")
    p.add_argument("--baseline", default="main", help="revision to compare with (main)")
    p.add_argument("--repeat", type=int, default=3, help="runs per revision (3)")
    p.add_argument("--mix", choices=("gateway", "varied"), default="gateway")
    p.add_argument("--json", metavar="FILE", help="write the raw numbers here")
    return p.parse_args(argv)


def rows(n: int, mix: str) -> Any:
    """``n`` usage rows as tuples in ``COLUMNS`` order, ids in time order."""
    rnd = random.Random(1)
    keys = [(uuid.UUID(int=rnd.getrandbits(128)).hex, uuid.UUID(int=k).hex) for k in range(20)]
    models = [(f"p{m % 3}", f"model-{m}", None if m % 4 == 0 else f"v{m}") for m in range(9)]
    span = 2 * n / 6400 if mix == "gateway" else 86400.0  # 6,400 rows/s as bench_rollup folds
    for i in range(n):
        t = START + timedelta(seconds=i / n * span)
        if mix == "gateway":
            key, user = keys[0]
            provider, model, version = ("bench", "gpt-4o-mini", None)
            status = 200
            latency = rnd.lognormvariate(1.0, 0.5)
        else:
            key, user = keys[rnd.randrange(20)]
            provider, model, version = models[rnd.randrange(9)]
            status = rnd.choices((200, 429, 502, 499, 400), (960, 20, 10, 5, 5))[0]
            latency = rnd.lognormvariate(6.0, 0.9)
        ok = status == 200
        prompt, completion = rnd.randint(5, 2000), rnd.randint(1, 800) if ok else 0
        yield (
            f"req-{i}", t.isoformat(sep=" ", timespec="microseconds"), user, key, "chat",
            provider, model, version, int(ok and rnd.random() < 0.3), prompt, completion,
            prompt + completion, f"{(prompt * 15 + completion * 60) / 1e8:.10f}" if ok else "0",
            round(latency, 3), None, status, None if ok else "upstream_error",
            ("length" if rnd.random() < 0.05 else "stop") if ok else None,
        )  # fmt: skip


def make_db(path: Path, n: int, mix: str) -> None:
    """A migrated database (this checkout's schema) with ``n`` usage rows, none folded."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    con = sqlite3.connect(path)
    marks = ",".join("?" * len(COLUMNS))
    con.executemany(f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({marks})", rows(n, mix))
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def one_run(src: Path, template: Path, work: Path) -> dict[str, Any]:
    """Fold a fresh copy of ``template`` with the code in ``src``; the child's numbers."""
    db = work / "fold.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(template, db)
    row = next(rows(1, "gateway"))
    env = {**os.environ, "PYTHONPATH": str(src)}
    argv = [bl.PYTHON, "-c", CHILD, str(db), ", ".join(COLUMNS), json.dumps(row)]
    if (os.cpu_count() or 1) > 1:
        argv = ["taskset", "-c", str(bl.SERVER_CPU), *argv]
    p = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(p.stdout.strip().splitlines()[-1]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the database, run both revisions in turn, summarise."""
    tmp = Path(tempfile.mkdtemp(prefix="llmgw-bench-fold-"))
    try:
        out: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
            "rows": args.rows,
            "mix": args.mix,
        }
        srcs: dict[str, Path] = {}
        for label, rev in (("rev", args.rev), ("baseline", args.baseline)):
            src, desc = bl.snapshot(tmp, rev, name=label)
            srcs[label] = src
            out[f"{label}_commit"] = desc
        template = tmp / "template.db"
        t0 = time.perf_counter()
        make_db(template, args.rows, args.mix)
        print(f"filled {args.rows:,} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        runs: dict[str, list[dict[str, Any]]] = {"rev": [], "baseline": []}
        for i in range(args.repeat):
            for label in ("baseline", "rev") if i % 2 == 0 else ("rev", "baseline"):
                r = one_run(srcs[label], template, tmp)
                runs[label].append(r)
                print(
                    f"{label}: {r['cpu_s'] / r['rows'] * 1e6:.2f} µs/row, wall {r['wall_s']:.2f} s,"
                    f" longest write wait {r['write_wait_max_ms']:.0f} ms",
                    file=sys.stderr,
                )
        out["runs"] = runs
        for label, rs in runs.items():
            out[label] = {
                "cpu_us_per_row": statistics.median(r["cpu_s"] / r["rows"] * 1e6 for r in rs),
                "wall_s": statistics.median(r["wall_s"] for r in rs),
                "write_wait_max_ms": statistics.median(r["write_wait_max_ms"] for r in rs),
                "writes": statistics.median(r["writes"] for r in rs),
                "maxrss_mb": statistics.median(r["maxrss_mb"] for r in rs),
            }
        out["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict[str, Any]) -> str:
    """The Markdown table."""
    a, b = r["rev"], r["baseline"]
    return "\n".join(
        [
            f"{r['rows']:,} rows ({r['mix']}), {r['started']}, load average "
            f"{' '.join(r['loadavg_before'])} before, {' '.join(r['loadavg_after'])} after; "
            f"median of {len(r['runs']['rev'])} runs each",
            "",
            f"| | `{r['rev_commit'].split()[0]}` | `{r['baseline_commit'].split()[0]}` | ratio |",
            "|---|---:|---:|---:|",
            f"| fold CPU µs per row | {a['cpu_us_per_row']:.2f} | {b['cpu_us_per_row']:.2f} | "
            f"{a['cpu_us_per_row'] / b['cpu_us_per_row']:.3f} |",
            f"| fold wall s | {a['wall_s']:.2f} | {b['wall_s']:.2f} | |",
            f"| longest insert wait during the fold, ms | {a['write_wait_max_ms']:.0f} | "
            f"{b['write_wait_max_ms']:.0f} | |",
            f"| inserts during the fold | {a['writes']:.0f} | {b['writes']:.0f} | |",
            f"| child max RSS MiB | {a['maxrss_mb']:.1f} | {b['maxrss_mb']:.1f} | |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write --json."""
    return bl.report_main(argv, parse_args, run, report)


if __name__ == "__main__":
    sys.exit(main())
