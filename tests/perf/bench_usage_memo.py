"""Does the SQLite writer's bind-processor memo pay? Writer CPU per row with and without it.

    python tests/perf/bench_usage_memo.py            # 20,000 rows x 7 paired rounds
    python tests/perf/bench_usage_memo.py --n 5000 --rounds 3

``llmgw.usage.inserts._DriverInsert`` binds each usage row through SQLAlchemy's own bind
processors, and short-cuts three of them (UTC timestamps by ``isoformat``, a precomputed ``None``,
memoised UUIDs and bools). This measures the writer thread's CPU (``time.thread_time``) to build
the driver parameters and to insert a batch of 500 rows, with the shortcuts (``memo=True``) and
without (``memo=False``, the processors themselves), in paired rounds on one pinned core, into a
fresh SQLite file each time. Prints a Markdown table; the verdict is the median paired ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_usage import make_events

from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from llmgw.usage.inserts import Inserter
from llmgw.usage.rows import event_to_row

BATCH = 500


def run(path: Path, rows: list[dict[str, object]], memo: bool) -> tuple[float, float]:
    """(µs of CPU per row building parameters, µs of CPU per row building + inserting)."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    ins = Inserter(engine, lambda row, why: None, memo=memo)
    assert ins.driver is not None
    t0 = time.thread_time()
    for i in range(0, len(rows), BATCH):
        ins.driver.params(rows[i : i + BATCH])
    t1 = time.thread_time()
    for i in range(0, len(rows), BATCH):
        ins.insert(rows[i : i + BATCH])
    t2 = time.thread_time()
    engine.dispose()
    n = len(rows)
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    os.sched_setaffinity(0, {1})
    params: dict[bool, list[float]] = {True: [], False: []}
    total: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="llmgw-memo-") as d:
        for r in range(args.rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            for memo in order:
                rows = [event_to_row(e) for e in make_events(args.n, f"m{r}{memo}")]
                p, t = run(Path(d) / f"{r}-{memo}.db", rows, memo)
                params[memo].append(p)
                total[memo].append(t)
            print(
                f"  round {r + 1}: params {params[True][-1]:.2f} vs {params[False][-1]:.2f} us/row,"
                f" insert {total[True][-1]:.2f} vs {total[False][-1]:.2f} us/row",
                file=sys.stderr,
            )
    ratio_p = statistics.median(a / b for a, b in zip(params[True], params[False], strict=True))
    ratio_t = statistics.median(a / b for a, b in zip(total[True], total[False], strict=True))
    med = statistics.median
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.n:,} rows x {args.rounds} paired rounds, core 1:"
    )
    print()
    print("| writer CPU per row | memo on | memo off | on / off (median of pairs) |")
    print("|---|---:|---:|---:|")
    print(
        f"| building driver parameters | {med(params[True]):.2f} µs | {med(params[False]):.2f} µs | {ratio_p:.0%} |"
    )
    print(
        f"| executemany + commit (SQLite) | {med(total[True]):.2f} µs | {med(total[False]):.2f} µs | {ratio_t:.0%} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
