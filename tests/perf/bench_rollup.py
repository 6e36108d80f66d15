"""Rollup maintenance in the gateway at its default interval: two ``llmgw serve`` of one revision,
one folding usage into the rollups every ``--interval`` seconds (default 60, the shipped
default), the other never (``LLMGW_USAGE__ROLLUP_INTERVAL=0``), loaded in turn for minutes.

    python tests/perf/bench_rollup.py                    # 4 minutes of load, about 5.5 in all
    python tests/perf/bench_rollup.py --minutes 2 --window 5 --rev main

Both servers run on core 1 (the same SQLite setup, key and nginx upstream as
``bench_gateway.py``: its ``Bench`` starts them); wrk (one thread, ``--connections``) drives one
of them for ``--window`` seconds, then the other, alternating until ``--minutes`` of load. A fold
comes every interval whether a server is being loaded or idle, so the figure that counts it whole
is the **process CPU seconds over the whole run divided by the requests the process answered**
(both processes live through the same wall-clock span; the other tenants of the machine barely
change CPU seconds, unlike req/s). Before the final reading the run waits until the folding
server has folded every row it recorded (at most one interval), so no row goes unpaid. Also
reported: req/s inside the windows (best and median), CPU per request inside the windows,
folds seen (from the rollup state) and RSS at the end. Prints a Markdown table and, with
``--json``, the raw numbers; it writes nothing into the docs.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import bench_gateway as bg
import benchlib as bl


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=4.0, help="minutes of load in all (4)")
    p.add_argument("--window", type=float, default=10.0, help="seconds per wrk run (10)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    p.add_argument("--interval", type=float, default=60.0, help="the folding server's interval")
    p.add_argument("--rev", default="HEAD", help="revision to measure (a git archive snapshot)")
    p.add_argument("--json", metavar="FILE", help="write the raw numbers here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    return p.parse_args(argv)


def _state(home: Path) -> tuple[int, int]:
    """(last_id folded, newest usage id) of a server's SQLite database."""
    with sqlite3.connect(home / "llmgw.db", timeout=10) as c:
        last = c.execute("select last_id from usage_rollup_state where id = 1").fetchone()
        newest = c.execute("select max(id) from usage").fetchone()
    return int(last[0] if last else 0), int(newest[0] or 0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start both servers, alternate the load, read CPU, requests and RSS."""
    gargs = bg.parse_args(
        [
            "--rev", args.rev, "--baseline", args.rev, "--no-write", "--no-profile",
            "--env", f"LLMGW_USAGE__ROLLUP_INTERVAL={args.interval:g}",
            "--baseline-env", "LLMGW_USAGE__ROLLUP_INTERVAL=0",
        ]
    )  # fmt: skip
    if args.keep:
        gargs.keep = True
    b = bg.Bench(gargs)
    assert b.baseline is not None
    out: dict[str, Any] = {
        "commit": str(b.results["commit"]).split()[0],
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
        "interval": args.interval,
    }
    try:
        b.start_nginx()
        b.prepare_llmgw()
        fold = b.start_llmgw()
        none = b.start_baseline()
        homes = {"fold": b.home, "none": Path(b.baseline["env"]["LLMGW_HOME"])}
        servers = {"fold": (fold, b.key), "none": (none, b.baseline["key"])}
        t0 = {k: s.cpu_ticks() for k, (s, _) in servers.items()}
        runs: dict[str, list[dict[str, Any]]] = {"fold": [], "none": []}
        deadline = time.monotonic() + args.minutes * 60
        turn = 0
        while time.monotonic() < deadline:
            order = ["fold", "none"] if turn % 2 == 0 else ["none", "fold"]
            for name in order:
                server, key = servers[name]
                r = bl.wrk(server.url + "/v1/chat/completions", args.connections, args.window,
                           key=key, during=server)  # fmt: skip
                runs[name].append(r)
                bg.log(f"{name}: {r['rps']:.0f} req/s, {r['cpu_us_per_req']:.0f} µs/req")
            turn += 1
        # let the folding server fold what it recorded (one interval at most), both idle alike
        wait_until = time.monotonic() + args.interval + 15
        while time.monotonic() < wait_until:
            last, newest = _state(homes["fold"])
            if last >= newest:
                break
            time.sleep(1)
        time.sleep(2)
        out["unfolded_at_end"] = _state(homes["fold"])
        for name, (server, _) in servers.items():
            ticks = server.cpu_ticks() - t0[name]
            n = sum(r["requests"] for r in runs[name])
            rps = [r["rps"] for r in runs[name]]
            win = [r["cpu_us_per_req"] for r in runs[name]]
            out[name] = {
                "requests": n,
                "cpu_s": ticks / bl.CLK_TCK,
                "cpu_us_per_req": ticks * 1e6 / bl.CLK_TCK / n,
                "window_cpu_us_per_req_median": statistics.median(win),
                "rps_best": max(rps),
                "rps_median": statistics.median(rps),
                "errors": sum(r["errors"] for r in runs[name]),
                "rss_mb_end": server.rss_mb(),
                "windows": len(rps),
            }
        out["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        b.close()
    return out


def report(r: dict[str, Any]) -> str:
    """The Markdown table."""
    f, n = r["fold"], r["none"]
    lines = [
        f"`{r['commit']}`, {r['started']}, load average {' '.join(r['loadavg_before'])} before, "
        f"{' '.join(r['loadavg_after'])} after; fold every {r['interval']:g} s against none; "
        f"{f['windows']} windows each",
        "",
        "| | fold every interval | no fold | ratio |",
        "|---|---:|---:|---:|",
        f"| process CPU µs per request (whole run) | {f['cpu_us_per_req']:.1f} | "
        f"{n['cpu_us_per_req']:.1f} | {f['cpu_us_per_req'] / n['cpu_us_per_req']:.3f} |",
        f"| CPU µs per request inside the windows (median) | "
        f"{f['window_cpu_us_per_req_median']:.1f} | {n['window_cpu_us_per_req_median']:.1f} | "
        f"{f['window_cpu_us_per_req_median'] / n['window_cpu_us_per_req_median']:.3f} |",
        f"| req/s, best window | {f['rps_best']:,.0f} | {n['rps_best']:,.0f} | "
        f"{f['rps_best'] / n['rps_best']:.3f} |",
        f"| req/s, median window | {f['rps_median']:,.0f} | {n['rps_median']:,.0f} | "
        f"{f['rps_median'] / n['rps_median']:.3f} |",
        f"| requests / CPU s | {f['requests']:,} / {f['cpu_s']:.1f} | "
        f"{n['requests']:,} / {n['cpu_s']:.1f} | |",
        f"| RSS at the end, MiB | {f['rss_mb_end']:.1f} | {n['rss_mb_end']:.1f} | |",
        f"| errors | {f['errors']} | {n['errors']} | |",
        "",
        f"Rows left unfolded at the end (last_id, newest): {tuple(r['unfolded_at_end'])}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write --json."""
    return bl.report_main(argv, parse_args, run, report)


if __name__ == "__main__":
    sys.exit(main())
