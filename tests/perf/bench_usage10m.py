"""Issue 13's targets over 10M usage rows: ``llmgw usage stats --since 30d --by model`` <= 1 s on
PostgreSQL and <= 3 s on SQLite, the monthly HTML report <= 3 s.

    python tests/perf/bench_usage10m.py --db postgresql       # 10,000,000 rows (default)
    python tests/perf/bench_usage10m.py --db sqlite --rows 2000000

A fresh database (PostgreSQL ``llmgw_bench10m_<random>``, dropped at the end; SQLite in a temp
dir) is migrated, filled by ``usagedata.fill_sql`` (the rows drawn inside the database,
``INSERT ... SELECT`` over ``generate_series`` or a recursive CTE, 1M rows a statement, the
indexes made after; 30 days, 20 keys, 9 model versions, the statuses and laws of
``usagedata.rows``) and the rollups are folded in
(``rollup.refresh``: what ``llmgw serve`` does every minute, timed). Then each measured command
runs as a real ``llmgw`` process (``--runs`` times): the median wall time and the process's CPU
time (user + sys of the child), and the same through ``usage_stats`` in process (the query
alone). Prints a Markdown table for docs/performance.md.

    python tests/perf/bench_usage10m.py --url sqlite:////tmp/big.db --baseline dc22ab7 --cpu 1

``--url`` measures a database filled before (by a run with ``--keep``: no fill, no drop);
``--baseline REV`` runs the same commands from a ``git archive`` snapshot of REV in the same
rounds, alternating with HEAD (``PYTHONPATH`` puts the snapshot first), so the two are compared
under the same load; ``--cpu N`` pins every ``llmgw`` process to core N (``taskset``).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
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


def _child(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one ``llmgw`` run (``argv`` names the program)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _commands(tmp: Path, month: str) -> dict[str, list[str]]:
    return {
        "usage stats --since 30d --by model": ["usage", "stats", "--since", "30d", "--by", "model"],
        "report monthly --format html": [
            "report", "monthly", "--date", month, "--format", "html", "--out", str(tmp / "m.html"),
        ],
        "--help (process start, baseline)": ["--help"],
    }  # fmt: skip


def _measure(
    versions: dict[str, dict[str, str]], commands: dict[str, list[str]], runs: int, cpu: int | None
) -> list[tuple[str, str, float, float]]:
    """(command, version, median wall, median CPU): the versions alternate within each round."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    out = []
    for label, cmd in commands.items():
        got: dict[str, list[tuple[float, float]]] = {v: [] for v in versions}
        for env in versions.values():
            _child([*pin, LLMGW, *cmd], env)  # warm: page cache, plans, .pyc files
        for _ in range(runs):
            for v, env in versions.items():
                got[v].append(_child([*pin, LLMGW, *cmd], env))
        for v, runs_v in got.items():
            wall = statistics.median(w for w, _ in runs_v)
            out.append((label, v, wall, statistics.median(c for _, c in runs_v)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--url", help="an already filled database (nothing filled or dropped)")
    ap.add_argument("--keep", action="store_true", help="keep the database made (print its URL)")
    ap.add_argument("--fill-only", action="store_true", help="fill and fold, keep, measure nothing")
    ap.add_argument("--file", type=Path, help="the SQLite file to make (default: a temp dir)")
    ap.add_argument("--baseline", help="also run a git revision's llmgw in the same rounds")
    ap.add_argument("--cpu", type=int, help="pin the llmgw processes to this core")
    args = ap.parse_args()
    import psycopg

    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade
    from llmgw.usage.reports import usage_stats
    from llmgw.usage.rollup import refresh

    tmp = Path(tempfile.mkdtemp(prefix="llmgw-bench10m-"))
    name = f"llmgw_bench10m_{uuid.uuid4().hex[:8]}"
    made = args.url is None
    if args.url is not None:
        url = args.url
    elif args.db == "postgresql":
        with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    else:
        url = f"sqlite:///{args.file or tmp / 'bench.db'}"
    engine = make_engine(url)
    fold_s = 0.0
    try:
        end = datetime.now(UTC)
        if made:
            upgrade(engine)
            filled = usagedata.fill_sql(
                engine,
                args.rows,
                end=end,
                days=30.0,
                progress=lambda k, s: print(f"  {k:,} rows, {s:.0f} s", file=sys.stderr),
            )
            print(f"filled {args.rows:,} rows in {filled['seconds']:.0f} s", file=sys.stderr)
        t0 = time.perf_counter()
        folded = refresh(engine)
        fold_s = time.perf_counter() - t0
        print(f"folded {folded:,} ids in {fold_s:.0f} s", file=sys.stderr)
        if engine.dialect.name == "postgresql":
            # Planner statistics for the rollups as autovacuum would soon gather them: analysed
            # while empty (at migration), PostgreSQL expects 90 rows of usage_daily for a month
            # instead of 25,000 and sorts them on disk (2x the statement's time).
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE usage_daily, usage_hourly, usage_hourly_models")
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT count(*) FROM usage").scalar_one()
        if args.fill_only:
            args.keep = True
            print(f"{rows:,} rows, ending {end:%Y-%m-%d %H:%M} UTC", file=sys.stderr)
            return
        env = {**os.environ, "LLMGW_HOME": str(tmp), "LLMGW_DATABASE_URL": url}
        versions = {"HEAD": env}
        if args.baseline:
            from benchlib import snapshot

            src, rev = snapshot(tmp, args.baseline)
            # A database that HEAD migrated has revisions the baseline does not know: give the
            # snapshot HEAD's newer migration files (they add tables the baseline never reads).
            theirs = src / "llmgw" / "migrations" / "versions"
            for f in (Path(__file__).parents[2] / "migrations" / "versions").glob("0*.py"):
                if not (theirs / f.name).exists():
                    shutil.copy(f, theirs / f.name)
            print(f"baseline: {rev}", file=sys.stderr)
            versions = {"baseline": {**env, "PYTHONPATH": str(src)}, "HEAD": env}
        month = (end - timedelta(days=15)).date().isoformat()
        results = _measure(versions, _commands(tmp, month), args.runs, args.cpu)
        q = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            usage_stats(engine, since=end - timedelta(days=30), by="model")
            q.append(time.perf_counter() - t0)
        load = os.getloadavg()
        print(f"\n{engine.dialect.name}, {rows:,} rows, fold {fold_s:.0f} s, load {load[0]:.1f}\n")
        print("| command | llmgw | median wall | median CPU of the llmgw process |")
        print("|---|---|---|---|")
        for label, v, wall, cpu in results:
            print(f"| `llmgw {label}` | {v} | {wall:.2f} s | {cpu:.2f} s |")
        print(
            f"| `usage_stats(by='model', 30 days)` in process (the query) | HEAD | "
            f"{statistics.median(q) * 1000:.0f} ms | |"
        )
    finally:
        engine.dispose()
        if made and args.keep:
            print(f"kept: {url}", file=sys.stderr)
        elif made and args.db == "postgresql":
            with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
