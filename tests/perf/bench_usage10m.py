"""Issue 13's targets over 10M usage rows: ``llmgw usage stats --since 30d --by model`` <= 1 s on
PostgreSQL and <= 3 s on SQLite, the monthly HTML report <= 3 s.

    python tests/perf/bench_usage10m.py --db postgresql       # 10,000,000 rows (default)
    python tests/perf/bench_usage10m.py --db sqlite --rows 2000000

A fresh database (PostgreSQL ``llmgw_bench10m_<random>``, dropped at the end; SQLite in a temp
dir) is migrated, filled by ``usagedata.py`` (PostgreSQL: one ``COPY``; SQLite: one
``executemany``; 30 days, 20 keys, 9 model versions) and the rollups are folded in
(``rollup.refresh``: what ``llmgw serve`` does every minute, timed). Then each measured command
runs as a real ``llmgw`` process (``--runs`` times): the median wall time and the process's CPU
time (user + sys of the child), and the same through ``usage_stats`` in process (the query
alone). Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import usagedata

LLMGW = str(Path(sys.executable).with_name("llmgw"))
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _child(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one ``llmgw`` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([LLMGW, *args], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"llmgw {' '.join(args)} failed: {proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    import psycopg

    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade
    from llmgw.usage.reports import usage_stats
    from llmgw.usage.rollup import refresh

    tmp = Path(tempfile.mkdtemp(prefix="llmgw-bench10m-"))
    name = f"llmgw_bench10m_{uuid.uuid4().hex[:8]}"
    if args.db == "postgresql":
        with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        end = datetime.now(UTC)
        filled = usagedata.fill(engine, args.rows, end=end, days=30.0)
        print(f"filled {args.rows:,} rows in {filled['seconds']:.0f} s", file=sys.stderr)
        t0 = time.perf_counter()
        folded = refresh(engine)
        fold_s = time.perf_counter() - t0
        print(f"folded {folded:,} ids in {fold_s:.0f} s", file=sys.stderr)
        env = {**os.environ, "LLMGW_HOME": str(tmp), "LLMGW_DATABASE_URL": url}
        month = (end - timedelta(days=15)).date().isoformat()
        commands = {
            "usage stats --since 30d --by model": ["usage", "stats", "--since", "30d", "--by", "model"],
            "report monthly --format html": [
                "report", "monthly", "--date", month, "--format", "html", "--out", str(tmp / "m.html"),
            ],
            "--help (process start, baseline)": ["--help"],
        }  # fmt: skip
        results = []
        for label, cmd in commands.items():
            _child(cmd, env)  # warm: page cache, plans
            runs = [_child(cmd, env) for _ in range(args.runs)]
            results.append(
                (
                    label,
                    statistics.median(w for w, _ in runs),
                    statistics.median(c for _, c in runs),
                )
            )
        q = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            usage_stats(engine, since=end - timedelta(days=30), by="model")
            q.append(time.perf_counter() - t0)
        load = os.getloadavg()
        print(f"\n{args.db}, {args.rows:,} rows, fold {fold_s:.0f} s, load {load[0]:.1f}\n")
        print("| command | median wall | median CPU of the llmgw process |")
        print("|---|---|---|")
        for label, wall, cpu in results:
            print(f"| `llmgw {label}` | {wall:.2f} s | {cpu:.2f} s |")
        print(
            f"| `usage_stats(by='model', 30 days)` in process (the query) | {statistics.median(q) * 1000:.0f} ms | |"
        )
    finally:
        engine.dispose()
        if args.db == "postgresql":
            with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
