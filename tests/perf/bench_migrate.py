"""SQLite -> PostgreSQL: ``llmgw db migrate`` against pgloader on the same file and server, same run.

    .venv/bin/python tests/perf/bench_migrate.py                # 1M usage rows, 2 rounds, writes docs
    .venv/bin/python tests/perf/bench_migrate.py --quick        # 100k rows, 1 round, prints only
    .venv/bin/python tests/perf/bench_migrate.py --rows 300000 --rounds 3 --no-write
    .venv/bin/python tests/perf/bench_migrate.py --baseline main  # also llmgw at REV, same run

The source is ``tests/migrate_data.generate`` (users, keys and N usage rows in llmgw's own SQLite
formats), made once and cached under ``--cache`` (default /tmp). Each round creates two fresh
databases on the PostgreSQL at ``--pg`` and runs both tools once, in alternating order, each
pinned to ``--cpu`` (``taskset``; pgloader's threads share that core too). Both are measured
from start to exit with ``/usr/bin/time`` (wall seconds, peak RSS); rows/s is the source's row
count over the wall time. llmgw's figure includes what pgloader does not do: checking every value
and computing and comparing the checksums of both sides. pgloader runs with its defaults for a
SQLite source (create tables, indexes, reset sequences). The PostgreSQL server is not pinned.

CPU seconds (user + system, ``/usr/bin/time``) are given for each tool, and the server's: the
CPU time of the PostgreSQL backends connected to the run's database (``pg_stat_activity``,
their ``/proc/PID/stat`` sampled every 0.1 s; the server's own background processes, such as
the WAL writer and the checkpointer, are not counted). On a machine shared with other work the
CPU seconds move much less than the wall time. ``--baseline REV`` runs llmgw at that revision
too (``git archive`` into a temporary directory, run with this venv's Python and
``PYTHONPATH``), in the same rotation; it must have the same newest migration (llmgw refuses a
source at another schema revision).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchlib import REPO, git_rev, snapshot, write_block

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


class ServerCpu:
    """CPU seconds of the PostgreSQL backends connected to one database, sampled in a thread."""

    def __init__(self, admin: str, database: str) -> None:
        self.admin, self.database = admin, database
        self.last: dict[int, int] = {}  # backend pid -> its latest utime + stime (ticks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            while True:
                pids = [r[0] for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)
                )]  # fmt: skip
                for pid in pids:
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.last[pid] = int(fields[11]) + int(fields[12])
                if self._stop.wait(0.1):
                    break

    def __enter__(self) -> ServerCpu:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        """CPU seconds seen so far."""
        return sum(self.last.values()) / os.sysconf("SC_CLK_TCK")


def timed(
    argv: list[str], cpu: int, home: Path, extra_env: dict[str, str] | None = None
) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MB, stdout) of ``argv`` pinned to ``cpu``; a failure stops the
    run."""
    fmt = "BENCH %e %U %S %M"
    pinned = ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []
    env = {"LLMGW_HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", **(extra_env or {})}
    proc = subprocess.run(  # noqa: S603
        ["/usr/bin/time", "-f", fmt, *pinned, *argv], capture_output=True, text=True, env=env
    )
    line = [x for x in proc.stderr.splitlines() if x.startswith("BENCH ")]
    if proc.returncode != 0 or not line:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    _, wall, user, system, rss = line[-1].split()
    return float(wall), float(user) + float(system), int(rss) / 1024, proc.stdout


def load_average() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="100,000 rows, 1 round, no docs")
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--cache", type=Path, default=Path("/tmp"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--baseline", metavar="REV", help="also run llmgw at REV (e.g. main)")
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
    tmp = Path(tempfile.mkdtemp(prefix="llmgw-bench-migrate-"))
    this = "llmgw db migrate"
    tools: dict[str, tuple[list[str], dict[str, str]]] = {
        this: ([LLMGW], {}),
        "pgloader": (["pgloader"], {}),
    }
    base_rev = ""
    if args.baseline:
        base_src, base_rev = snapshot(tmp, args.baseline)
        heads = {
            sorted(p.name for p in (root / "migrations" / "versions").glob("0*.py"))[-1]
            for root in (REPO, base_src.parent)
        }
        if len(heads) > 1:  # llmgw refuses a source at another schema revision
            shutil.rmtree(tmp, ignore_errors=True)
            raise SystemExit(
                f"--baseline {args.baseline} has another newest migration ({sorted(heads)}): "
                "pick a revision with the same schema"
            )
        tools[f"llmgw at {base_rev.split()[0]}"] = (
            [sys.executable, "-m", "llmgw"],
            {"PYTHONPATH": str(base_src)},
        )
    results: dict[str, list[tuple[float, float, float, float]]] = {t: [] for t in tools}
    loads: list[float] = []
    try:
        for r in range(args.rounds):
            names = list(tools)
            order = names[r % len(names) :] + names[: r % len(names)]
            for tool in order:
                prefix, env = tools[tool]
                name, url = createdb(args.pg)
                try:
                    if tool == "pgloader":
                        argv = [*prefix, "--quiet", f"sqlite://{src}", url]
                    else:
                        argv = [*prefix, "db", "migrate", "--from", f"sqlite:///{src}",
                                "--to", url, "--json"]  # fmt: skip
                    loads.append(load_average())
                    with ServerCpu(args.pg, name) as server:
                        wall, cpu, rss, out = timed(argv, args.cpu, home, env)
                    loads.append(load_average())
                    if tool != "pgloader":
                        report = json.loads(out.strip().splitlines()[-1])
                        assert report["ok"] and not report["mismatched"], report
                finally:
                    dropdb(args.pg, name)
                results[tool].append((wall, cpu, server.seconds, rss))
                print(
                    f"round {r + 1} {tool:22} {wall:8.1f} s  {total_rows / wall:10,.0f} rows/s  "
                    f"CPU {cpu:6.1f} s  server CPU {server.seconds:6.1f} s  {rss:6.0f} MB  "
                    f"load {loads[-1]:.1f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `{git_rev().split()[0]}`; {args.rows:,} usage rows "
        f"({total_rows:,} rows in all, {src.stat().st_size / 1e6:,.0f} MB SQLite), {args.rounds} "
        f"round(s), each tool pinned to CPU {args.cpu}, order rotated; median of the rounds; "
        f"load average {min(loads):.1f}-{max(loads):.1f}.",
        "",
        "| tool | wall s | rows/s | CPU s | server CPU s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    med: dict[str, tuple[float, float, float]] = {}
    for tool, runs in results.items():
        wall = statistics.median(w for w, _, _, _ in runs)
        cpu = statistics.median(c for _, c, _, _ in runs)
        srv = statistics.median(s for _, _, s, _ in runs)
        rss = max(m for _, _, _, m in runs)
        med[tool] = (wall, cpu, srv)
        lines.append(
            f"| {tool} | {wall:.1f} | {total_rows / wall:,.0f} | {cpu:.1f} | {srv:.1f} | {rss:.0f} |"
        )
    pg = med["pgloader"]
    lines.append("")
    for tool, (wall, cpu, srv) in med.items():
        if tool == "pgloader":
            continue
        lines.append(
            f"{tool} / pgloader: rows/s {pg[0] / wall:.2f} (target >= 1.0; and >= 50,000 rows/s); "
            f"CPU s {cpu / pg[1]:.2f}, with the server's {(cpu + srv) / (pg[1] + pg[2]):.2f} "
            "(lower is better)."
        )
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block(DOC, "bench_migrate", block, section="## SQLite to PostgreSQL migration")


if __name__ == "__main__":
    main()
