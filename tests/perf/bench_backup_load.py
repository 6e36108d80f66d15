"""Backup under load: the gateway's p99 while ``llmgw serve`` backs up its own large SQLite
database (``[backup] interval``) against the same load without a backup, same run.

    python tests/perf/bench_backup_load.py                 # 1M usage rows (~470 MB), 3 pairs, writes docs
    python tests/perf/bench_backup_load.py --quick         # 100k rows, 2 pairs, prints only
    python tests/perf/bench_backup_load.py --rows 2200000  # about 1 GB

Method (``benchlib``, like ``bench_gateway.py``): nginx with a canned completion and wrk on core 0,
one ``llmgw serve`` pinned to core 1 on a copy of the generated database
(``tests/migrate_data.py``, cached as for ``bench_migrate.py``), with ``[backup] interval`` so it
takes its backups itself (online backup API in a child process at nice 19, then the integrity
check and the rotation, as in production). Every request writes a usage row. Each round is one
bounded wrk run while a backup runs (``llmgw_backup_running`` is 1 when it starts and the
backup counter moves during it), one right after it and one ``--settle`` seconds later, before
the next is due, in the same process; the report gives the median over rounds of p99 and req/s,
and the ratio of "during" to "later".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import benchlib as bl
from bench_gigachat_path import GIGACHAT_ANSWER, NGINX_CONF, OAUTH_ANSWER

sys.path.insert(0, str(bl.REPO))
from bench_migrate import source  # noqa: E402

DOC = bl.REPO / "docs" / "performance.md"
CONFIG = """\
[server]
host = "127.0.0.1"
port = {port}

[backup]
interval = {interval}
keep = 2
pace = {pace}
dir = "{backups}"

[[providers]]
name = "bench"
kind = "openai"
base_url = "http://127.0.0.1:{nginx}/v1"
api_key_env = "BENCH_OPENAI_KEY"
models = ["gpt-4o-mini"]
"""


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def metric(url: str, name: str) -> float:
    """One sample of ``name`` from ``/metrics``."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def pin_backup_thread(pid: int, cpu: int) -> list[int]:
    """Move the gateway's backup thread (the one at nice 19; the backup process it starts
    inherits the core) to ``cpu``; its thread ids."""
    moved = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        nice = int(stat.rsplit(")", 1)[1].split()[16])
        if nice == 19:
            subprocess.run(
                ["taskset", "-p", "-c", str(cpu), task.name], check=True, capture_output=True
            )
            moved.append(int(task.name))
    if not moved:
        raise SystemExit("no backup thread found (is [backup] interval set?)")
    return moved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3, help="per wrk run")
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--interval", type=int, default=25, help="[backup] interval, seconds")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after a backup to wait")
    ap.add_argument("--cache", type=Path, default=Path("/tmp"))
    ap.add_argument("--pace", type=float, default=64.0, help="[backup] pace, MB/s (0: full speed)")
    ap.add_argument(
        "--backup-cpu",
        type=int,
        help="move the backup thread to this core (as on any multi-core box); default: it shares "
        "the gateway's core (the worst case)",
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.rows, a.pairs, a.no_write, a.interval = 100_000, 2, True, 12
    tmp = Path(tempfile.mkdtemp(prefix="llmgw-backupbench-"))
    servers: list[bl.Server] = []
    try:
        src = source(a.rows, a.cache)
        home = tmp / "home"
        home.mkdir()
        db = home / "llmgw.db"
        shutil.copyfile(src, db)
        size_mb = db.stat().st_size / 1e6
        nginx_port = bl.free_port()
        prefix = tmp / "nginx"
        prefix.mkdir()
        conf = NGINX_CONF.replace("@PREFIX@", str(prefix)).replace("@PORT@", str(nginx_port))
        for mark, text in (
            ("@OAUTH@", OAUTH_ANSWER),
            ("@GIGACHAT@", GIGACHAT_ANSWER),
            ("@OPENAI@", bl.CANNED_COMPLETION),
        ):
            conf = conf.replace(mark, text)
        (prefix / "nginx.conf").write_text(conf)
        argv = ["nginx", "-e", "stderr", "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
        ng = bl.start("nginx", argv, port=nginx_port, cpu=bl.LOAD_CPU, log=prefix / "n.log")
        servers.append(ng)
        bl.wait_ready(ng)

        port = bl.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
        env.update(BENCH_OPENAI_KEY="sk-bench", LLMGW_HOME=str(home))
        env["LLMGW_CONFIG"] = str(home / "llmgw.toml")
        (home / "llmgw.toml").write_text(
            CONFIG.format(
                port=port,
                nginx=nginx_port,
                interval=a.interval,
                pace=a.pace,
                backups=tmp / "backups",
            )
        )
        made = subprocess.run(
            [bl.PYTHON, "-m", "llmgw", "keys", "create", "--name", "bench", "--json"],
            capture_output=True, text=True, env=env, timeout=180, check=False,
        )  # fmt: skip
        key = json.loads(made.stdout)["key"]
        gw = bl.start(
            "llmgw",
            [bl.PYTHON, "-m", "llmgw", "serve", "--port", str(port)],
            port=port,
            cpu=bl.SERVER_CPU,
            log=home / "serve.log",
            env=env,
        )
        servers.append(gw)
        bl.wait_ready(gw, "/readyz", timeout=120)
        if a.backup_cpu is not None:
            moved = pin_backup_thread(gw.popen.pid, a.backup_cpu)
            log(f"backup thread(s) {moved} moved to core {a.backup_cpu}")
        url = gw.url + "/v1/chat/completions"
        bl.wrk(url, a.connections, 2, key=key)  # warm-up
        during: list[dict[str, Any]] = []
        after: list[dict[str, Any]] = []
        right_after: list[dict[str, Any]] = []
        backup_s: list[float] = []
        ok_name = 'llmgw_backups_total{result="ok"}'
        for pair in range(a.pairs):
            deadline = time.monotonic() + a.interval + 120
            while metric(gw.url, "llmgw_backup_running") < 1:  # the next backup starts
                if time.monotonic() > deadline:
                    raise SystemExit("no backup started; see " + str(home / "serve.log"))
                time.sleep(0.05)
            before = metric(gw.url, ok_name)
            r = bl.wrk(url, a.connections, a.seconds, key=key, during=gw)
            still = metric(gw.url, "llmgw_backup_running") >= 1 or metric(gw.url, ok_name) > before
            while metric(gw.url, "llmgw_backup_running") >= 1:
                time.sleep(0.05)
            if not still:
                log(f"pair {pair + 1}: the backup had ended before the run did; skipped")
                continue
            backup_s.append(metric(gw.url, "llmgw_backup_last_duration_seconds"))
            # right after: the WAL that grew during the backup is checkpointed by the gateway
            c = bl.wrk(url, a.connections, a.seconds, key=key, during=gw)
            time.sleep(a.settle)  # then no trace of the backup; the next is far off
            b = bl.wrk(url, a.connections, a.seconds, key=key, during=gw)
            during.append(r)
            right_after.append(c)
            after.append(b)
            log(
                f"pair {pair + 1}: during p99 {r['p99_us'] / 1000:.1f} ms {r['rps']:.0f} req/s, "
                f"right after p99 {c['p99_us'] / 1000:.1f} ms {c['rps']:.0f} req/s, "
                f"without p99 {b['p99_us'] / 1000:.1f} ms {b['rps']:.0f} req/s "
                f"(backup {backup_s[-1]:.1f} s, errors {r['errors']}/{c['errors']}/{b['errors']})"
            )
        if not during:
            raise SystemExit("no usable pair (backups shorter than a wrk run: use more --rows)")
        p99_d = statistics.median(r["p99_us"] for r in during) / 1000
        p99_a = statistics.median(r["p99_us"] for r in after) / 1000
        rps_d = statistics.median(r["rps"] for r in during)
        rps_a = statistics.median(r["rps"] for r in after)
        p99_r = statistics.median(r["p99_us"] for r in right_after) / 1000
        rps_r = statistics.median(r["rps"] for r in right_after)
        load = os.getloadavg()[0]
        block = "\n".join(
            [
                f"Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
                f"`{bl.git_rev().split()[0]}`; SQLite database of {size_mb:,.0f} MB "
                f"({a.rows:,} usage rows), {len(during)} pair(s) of {a.seconds} s wrk runs at "
                f"c={a.connections}, gateway on core {bl.SERVER_CPU}, wrk and nginx on core "
                f"{bl.LOAD_CPU}; load average {load:.1f} at the end. Backups took "
                f"{statistics.median(backup_s):.1f} s (median; copy at `[backup] pace` "
                f"{a.pace:g} MB/s, integrity check, rename); the backup (a child process at nice 19) "
                + (
                    f"on core {a.backup_cpu}."
                    if a.backup_cpu is not None
                    else f"on the gateway's core {bl.SERVER_CPU} (the worst case)."
                ),
                "",
                "| | p99 ms | req/s (each a usage row written) |",
                "|---|---:|---:|",
                f"| while the gateway backs up its database | {p99_d:.1f} | {rps_d:,.0f} |",
                f"| right after it (the gateway folds the grown WAL back) | {p99_r:.1f} | "
                f"{rps_r:,.0f} |",
                f"| {a.settle:.0f} s later, no backup | {p99_a:.1f} | {rps_a:,.0f} |",
                "",
                f"p99 during / without: {p99_d / p99_a:.2f} (target <= 1.10); "
                f"req/s during / without: {rps_d / rps_a:.2f}",
            ]
        )
        print(block)
        if not a.no_write:
            bl.write_block(DOC, "bench_backup_load", block, section="## Backup under load")
    finally:
        for s in reversed(servers):
            s.stop(60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
