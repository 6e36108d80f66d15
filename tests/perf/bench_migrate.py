"""SQLite -> PostgreSQL: ``llmgw db migrate`` against pgloader on the same file and server, same run.

    .venv/bin/python tests/perf/bench_migrate.py                # 1M usage rows, 2 rounds, writes docs
    .venv/bin/python tests/perf/bench_migrate.py --quick        # 100k rows, 1 round, prints only
    .venv/bin/python tests/perf/bench_migrate.py --rows 300000 --rounds 3 --no-write

The source is ``tests/migrate_data.generate`` (users, keys and N usage rows in llmgw's own SQLite
formats), made once and cached under ``--cache`` (default /tmp). Each round creates two fresh
databases on the PostgreSQL at ``--pg`` and runs both tools once, in alternating order, each
pinned to ``--cpu`` (``taskset``; pgloader's threads share that core too). Both are measured
from start to exit with ``/usr/bin/time`` (wall seconds, peak RSS); rows/s is the source's row
count over the wall time. llmgw's figure includes what pgloader does not do: checking every value
and computing and comparing the checksums of both sides. pgloader runs with its defaults for a
SQLite source (create tables, indexes, reset sequences). The PostgreSQL server is not pinned.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchlib import REPO, git_rev, write_block

sys.path.insert(0, str(REPO))
from tests.migrate_data import generate, migrated_sqlite  # noqa: E402

DOC = REPO / "docs" / "performance.md"
LLMGW = str(Path(sys.executable).parent / "llmgw")


def source(rows: int, cache: Path) -> Path:
    """The generated SQLite file with ``rows`` usage rows (reused when it exists)."""
    path = cache / f"llmgw-bench-migrate-{rows}.db"
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        migrated_sqlite(partial)
        generate(partial, usage=rows)
        partial.rename(path)
    migrated_sqlite(path)  # a cached file from before a new migration is brought up to head
    return path


def createdb(admin: str) -> tuple[str, str]:
    """A fresh database; (its name, its URL)."""
    import psycopg

    name = f"bench_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def dropdb(admin: str, name: str) -> None:
    """Drop a benchmark database."""
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(argv: list[str], cpu: int, home: Path) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, stdout) of ``argv`` pinned to ``cpu``; a failure stops the run."""
    fmt = "BENCH %e %M"
    pinned = ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []
    env = {"LLMGW_HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    proc = subprocess.run(  # noqa: S603
        ["/usr/bin/time", "-f", fmt, *pinned, *argv], capture_output=True, text=True, env=env
    )
    line = [x for x in proc.stderr.splitlines() if x.startswith("BENCH ")]
    if proc.returncode != 0 or not line:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    _, wall, rss = line[-1].split()
    return float(wall), int(rss) / 1024, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="100,000 rows, 1 round, no docs")
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--cache", type=Path, default=Path("/tmp"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.rounds, args.no_write = 100_000, 1, True
    if shutil.which("pgloader") is None:
        raise SystemExit("pgloader is not installed (Debian: apt-get install pgloader)")
    src = source(args.rows, args.cache)
    conn = sqlite3.connect(src)
    try:
        total_rows = sum(
            conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # noqa: S608
            for (t,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name != 'alembic_version'"
            ).fetchall()
        )
    finally:
        conn.close()  # an open connection would make llmgw refuse the source (MIG-5)
    home = args.cache / "llmgw-bench-migrate-home"
    results: dict[str, list[tuple[float, float]]] = {"llmgw db migrate": [], "pgloader": []}
    for r in range(args.rounds):
        order = ["llmgw db migrate", "pgloader"] if r % 2 == 0 else ["pgloader", "llmgw db migrate"]
        for tool in order:
            name, url = createdb(args.pg)
            try:
                if tool == "pgloader":
                    argv = ["pgloader", "--quiet", f"sqlite://{src}", url]
                else:
                    argv = [
                        LLMGW,
                        "db",
                        "migrate",
                        "--from",
                        f"sqlite:///{src}",
                        "--to",
                        url,
                        "--json",
                    ]
                wall, rss, out = timed(argv, args.cpu, home)
                if tool != "pgloader":
                    report = json.loads(out.strip().splitlines()[-1])
                    assert report["ok"] and not report["mismatched"], report
            finally:
                dropdb(args.pg, name)
            results[tool].append((wall, rss))
            print(
                f"round {r + 1} {tool:18} {wall:8.1f} s  {total_rows / wall:10,.0f} rows/s  {rss:6.0f} MB",
                flush=True,
            )

    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `{git_rev().split()[0]}`; {args.rows:,} usage rows "
        f"({total_rows:,} rows in all, {src.stat().st_size / 1e6:,.0f} MB SQLite), {args.rounds} "
        f"round(s), each tool pinned to CPU {args.cpu}; median of the rounds.",
        "",
        "| tool | wall s | rows/s | peak RSS MB |",
        "|---|---:|---:|---:|",
    ]
    med = {}
    for tool, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        rss = max(m for _, m in runs)
        med[tool] = wall
        lines.append(f"| {tool} | {wall:.1f} | {total_rows / wall:,.0f} | {rss:.0f} |")
    ratio = med["pgloader"] / med["llmgw db migrate"]
    lines += ["", f"llmgw / pgloader rows/s: {ratio:.2f} (target >= 1.0; and >= 50,000 rows/s)"]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block(DOC, "bench_migrate", block, section="## SQLite to PostgreSQL migration")


if __name__ == "__main__":
    main()
