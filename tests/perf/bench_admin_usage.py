"""Admin usage queries over a million usage rows on PostgreSQL (issue 10: each <= 200 ms).

    python tests/perf/bench_admin_usage.py            # 1,000,000 rows, 7 runs per query; writes docs
    python tests/perf/bench_admin_usage.py --quick    # 200,000 rows, 3 runs; prints only

A fresh database (``llmgw_bench_<random>``, dropped at the end) is migrated to head, filled by
``usagedata.py`` (one ``COPY``: 30 days, 20 keys of 10 users, 9 model versions), and the rollups
are folded in (``rollup.refresh``, timed: what migration 0005 does to an existing table). Then
every query the dashboard's Usage screen and ``/admin/v1/usage/stats`` make runs through
``usage_stats`` (the code ``LocalAdmin`` and the admin API call): median wall time of the runs,
and the CPU time of the PostgreSQL backend that ran it (from ``/proc``; other load on the
machine inflates it less than wall time). Baseline in the same run: the same statement reading
only raw rows (the rollups bypassed), as every query did before migration 0005.

The benchmark process and its PostgreSQL backend are pinned to one core (``--cpu``, default 1).
Then a tail of 20,000 new rows (one ``COPY``) is timed through a query that folds it in first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import usagedata
from benchlib import CLK_TCK, REPO, git_rev, machine_facts, write_block

DOC = REPO / "docs" / "performance.md"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_MS = 200.0
QUERIES: list[tuple[str, str, timedelta, dict[str, Any]]] = [
    # (who asks, by, period, filters)
    ("TUI Usage 1h", "hour", timedelta(hours=1), {}),
    ("TUI Usage 24h (chart)", "hour", timedelta(hours=24), {}),
    ("TUI Usage 24h (breakdown)", "model", timedelta(hours=24), {}),
    ("TUI Usage 7d (chart)", "day", timedelta(days=7), {}),
    ("TUI Usage 30d (chart)", "day", timedelta(days=30), {}),
    ("30d by model", "model", timedelta(days=30), {}),
    ("30d by version", "version", timedelta(days=30), {}),
    ("30d by provider", "provider", timedelta(days=30), {}),
    ("30d by key", "key", timedelta(days=30), {}),
    ("30d by user", "user", timedelta(days=30), {}),
    ("30d by status", "status", timedelta(days=30), {}),
    ("7d by hour", "hour", timedelta(days=7), {}),
    ("30d by hour", "hour", timedelta(days=30), {}),
    ("7d by day, one key", "day", timedelta(days=7), {"key": 0}),
    ("30d by key, model yandexgpt-lite:rc", "key", timedelta(days=30), {"model": "yandex/yandexgpt-lite:rc"}),
    ("all time by day (no since)", "day", timedelta(0), {}),
]  # fmt: skip


def _ticks(pid: int) -> int:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def _measure(fn: Callable[[], Any], runs: int, backend: int) -> dict[str, float]:
    fn()  # warm: plans, caches
    wall, cpu, client = [], [], []
    for _ in range(runs):
        c0 = _ticks(backend)
        p0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        wall.append((time.perf_counter() - t0) * 1000)
        client.append((time.process_time() - p0) * 1000)
        cpu.append((_ticks(backend) - c0) * 1000 / CLK_TCK)
    return {
        "ms": statistics.median(wall),
        "min": min(wall),
        "pg_cpu_ms": statistics.mean(cpu),
        "client_cpu_ms": statistics.median(client),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="200,000 rows, 3 runs, no docs")
    ap.add_argument("--no-baseline", action="store_true", help="skip the raw-rows baseline")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.runs, args.no_write = 200_000, 3, True
    os.sched_setaffinity(0, {args.cpu})
    import psycopg
    import sqlalchemy as sa

    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade
    from llmgw.usage import reports, rollup

    os.environ.setdefault("LLMGW_HOME", "/tmp/llmgw-bench-admin-usage")
    Path(os.environ["LLMGW_HOME"]).mkdir(parents=True, exist_ok=True)
    name = f"llmgw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    load0 = os.getloadavg()
    try:
        engine = make_engine(url, pool_size=1)
        upgrade(engine)
        end = datetime.now(UTC).replace(microsecond=0)
        filled = usagedata.fill(engine, args.rows, end=end)
        print(f"filled {args.rows:,} rows in {filled['seconds']:.1f} s (COPY)", file=sys.stderr)
        t0 = time.perf_counter()
        rollup.refresh(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE usage_hourly")
            conn.exec_driver_sql("ANALYZE usage_daily")
        fold_s = time.perf_counter() - t0
        with engine.connect() as conn:
            hourly = conn.execute(sa.text("SELECT count(*) FROM usage_hourly")).scalar_one()
            daily = conn.execute(sa.text("SELECT count(*) FROM usage_daily")).scalar_one()
        print(
            f"folded into {hourly:,} hourly and {daily:,} daily rows in {fold_s:.1f} s",
            file=sys.stderr,
        )
        with engine.connect() as conn:  # the pool's one connection: its backend runs every query
            backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        os.system(f"taskset -p -c {args.cpu} {backend} >/dev/null")  # noqa: S605
        key_id = filled["keys"][0][0]
        now = end + timedelta(minutes=7, seconds=13)  # windows cut through hours, as a person's do
        results = []
        raw_plan = reports.plan
        for label, by, period, only_spec in QUERIES:
            only: dict[str, Any] = {}
            if "key" in only_spec:
                only["key_id"] = key_id
            if "model" in only_spec:
                only["model"] = only_spec["model"]
            since = now - period if period else None

            def run(
                by: str = by, since: datetime | None = since, only: dict[str, Any] = only
            ) -> Any:
                return reports.usage_stats(engine, since=since, until=None, by=by, only=only)  # type: ignore[arg-type]

            r = _measure(run, args.runs, backend)
            r["groups"] = len(run())
            if not args.no_baseline:
                reports.plan = lambda s, u, b: (None, [], [(s, u)])  # type: ignore[assignment]
                try:
                    b = _measure(run, max(1, args.runs // 3), backend)
                finally:
                    reports.plan = raw_plan
                r["raw_ms"], r["raw_pg_cpu_ms"] = b["ms"], b["pg_cpu_ms"]
            results.append((label, by, r))
            print(
                f"{label:40s} {r['ms']:7.1f} ms  cpu pg {r['pg_cpu_ms']:5.1f} + llmgw {r['client_cpu_ms']:5.1f} ms  raw {r.get('raw_ms', 0):7.1f} ms",
                file=sys.stderr,
            )
        # a tail arrives: 20,000 new rows, then one query that folds them in first
        more = usagedata.rows(
            20_000, filled["keys"], end=end + timedelta(minutes=5), days=5 / 1440, seed=2
        )
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY usage ({', '.join(usagedata.COLUMNS)}) FROM STDIN") as copy:
                for row in more:
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        t0 = time.perf_counter()
        reports.usage_stats(engine, since=now - timedelta(hours=24), by="hour", refresh_at=10_000)
        tail_ms = (time.perf_counter() - t0) * 1000
        load1 = os.getloadavg()
    finally:
        if not args.keep:
            engine.dispose()
            with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept {url}", file=sys.stderr)
    facts = machine_facts()
    pg = psycopg.connect(ADMIN_DSN).info.server_version
    met = all(r["ms"] <= TARGET_MS for _, _, r in results)
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at `{git_rev()}`, {facts['cpu']}, {facts['cores']} cores, "
        f"Python {facts['python']}, PostgreSQL {pg // 10000}.{pg % 100}; benchmark and its backend on core {args.cpu}; "
        f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end"
        + (" (**machine busy: provisional figures**)" if max(load0[0], load1[0]) > 1.5 else "")
        + f". Command: `python tests/perf/bench_admin_usage.py{' --quick' if args.quick else ''}`.",
        "",
        f"{args.rows:,} usage rows over 30 days filled in {filled['seconds']:.1f} s (one `COPY`); folding them into "
        f"{hourly:,} hourly and {daily:,} daily rollup rows took {fold_s:.1f} s. Median of {args.runs} runs per query; "
        '"raw rows" is the same statement with the rollups bypassed (what every query read before migration 0005), '
        "median of a third as many runs.",
        "",
        "| query (who asks) | by | groups | wall ms (median) | CPU ms: PostgreSQL backend + llmgw | raw rows: wall ms | target 200 ms |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for label, by, r in results:
        raw_ms = f"{r['raw_ms']:.0f}" if "raw_ms" in r else "-"
        verdict = "met" if r["ms"] <= TARGET_MS else "**missed**"
        lines.append(
            f"| {label} | {by} | {r['groups']} | {r['ms']:.1f} | "
            f"{r['pg_cpu_ms']:.0f} + {r['client_cpu_ms']:.0f} | {raw_ms} | {verdict} |"
        )
    lines += [
        "",
        f"A tail of 20,000 new rows: the next query (24h by hour) folded it in first and answered in {tail_ms:.0f} ms.",
        "",
        f"Target: every admin usage query over {args.rows:,} rows on PostgreSQL <= 200 ms: **{'met' if met else 'missed'}**.",
    ]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block(DOC, "bench_admin_usage", block, section="## Admin usage queries")


if __name__ == "__main__":
    main()
