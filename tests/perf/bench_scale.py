"""Throughput with 1, 2 and 3 ``llmgw serve`` instances behind nginx (docs/performance.md#scale-out).

The instances share one fresh PostgreSQL database and one Redis (key prefix of this run), sit
behind nginx rendered from deploy/nginx/llmgw.conf.tmpl, and call the OpenAI emulator. wrk sends
non-streaming chat completions through nginx at 50 connections for ``--seconds`` after a short
warm-up, once per instance count. Reported per count: req/s, errors, the CPU seconds the
llmgw processes used (in all and per instance, so an uneven balance or a starved instance shows),
so req per llmgw CPU-second is the per-core figure, and the CPU of nginx and the emulator. Nothing is pinned: on a
2-core machine the instances, nginx, the emulator and wrk share both cores, so the curve shows
where the machine, not llmgw, runs out.

    python tests/perf/bench_scale.py [--counts 1,2,3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import benchlib as bl

LLMGW = str(Path(sys.executable).parent / "llmgw")
PG = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"


def _server(name: str, argv: list[str], port: int, log: Path, env: dict[str, str]) -> bl.Server:
    out = log.open("wb")
    popen = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)
    return bl.Server(name=name, port=port, popen=popen, log=log, cpu=-1, files=[out])


def _tree_ticks(pid: int) -> int:
    """utime + stime of ``pid`` and its children (nginx's master and workers), in clock ticks."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a worker that ended
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(c) for c in task.read_text().split()]
    return out


def _database(name: str, *, drop: bool = False) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        if drop:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1,2,3")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    tmp = Path(tempfile.mkdtemp(prefix="llmgw-scale-"))
    db = f"llmgw_scale_{os.getpid()}"
    _database(db)
    db_url = f"{PG}/{db}"
    up_port = bl.free_port()
    emulator = _server(
        "emulator",
        [LLMGW, "emulate", "openai", "--host", "127.0.0.1", "--port", str(up_port)],
        up_port,
        tmp / "emulator.log",
        dict(os.environ),
    )
    bl.wait_ready(emulator)
    from llmgw.auth.keys import KeyService
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(db_url)
    upgrade(engine)
    key = KeyService(engine).create("scale").secret
    engine.dispose()
    cfg = tmp / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "{db_url}"\n\n[server]\naccess_log = false\n\n'
        f'[[providers]]\nname = "bench"\nkind = "openai"\nbase_url = "http://127.0.0.1:{up_port}/v1"\n'
        'api_key_env = "EMULATOR_API_KEY"\nmodels = ["gpt-4o-mini"]\n'
    )
    prefix = f"llmgw-scale:{uuid.uuid4().hex[:8]}:auth"
    print(f"load average before: {os.getloadavg()[0]:.1f}; nproc {os.cpu_count()}")
    print(
        "instances  req/s  errors  llmgw CPU s  req per llmgw CPU-second  p50 ms  p99 ms"
        "  emulator CPU s  nginx CPU s  load  CPU s per instance"
    )
    try:
        for count in [int(c) for c in args.counts.split(",")]:
            instances = []
            for i in range(count):
                port = bl.free_port()
                env = {
                    **os.environ,
                    "LLMGW_HOME": str(tmp / f"home-{count}-{i}"),
                    "LLMGW_REDIS_URL": REDIS,
                    "LLMGW_AUTH__REDIS_PREFIX": prefix,
                    "EMULATOR_API_KEY": "unused",
                }
                argv = [LLMGW, "--config", str(cfg), "serve", "--no-migrate", "--port", str(port)]
                instances.append(
                    _server(f"llmgw-{i}", argv, port, tmp / f"serve-{count}-{i}.log", env)
                )
            for inst in instances:
                bl.wait_ready(inst, "/readyz")
            ngx_dir = tmp / f"nginx-{count}"
            ngx_dir.mkdir()
            listen = bl.free_port()
            servers = "\n".join(f"        server 127.0.0.1:{i.port};" for i in instances)
            conf = ngx_dir / "nginx.conf"
            conf.write_text(
                (bl.REPO / "deploy" / "nginx" / "llmgw.conf.tmpl")
                .read_text()
                .replace("@PREFIX@", str(ngx_dir))
                .replace("@LISTEN@", f"127.0.0.1:{listen}")
                .replace("@SERVERS@", servers)
            )
            ngx = subprocess.Popen(
                [nginx, "-p", str(ngx_dir), "-c", str(conf), "-e", str(ngx_dir / "error.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
            time.sleep(0.5)
            try:
                url = f"http://127.0.0.1:{listen}/v1/chat/completions"
                bl.wrk(url, args.connections, 2, key=key)  # warm-up: pools, caches
                ticks0 = [i.cpu_ticks() for i in instances]
                up0 = emulator.cpu_ticks()
                ngx0 = _tree_ticks(ngx.pid)
                r = bl.wrk(url, args.connections, args.seconds, key=key)
                each = [
                    (i.cpu_ticks() - t0) / bl.CLK_TCK
                    for i, t0 in zip(instances, ticks0, strict=True)
                ]
                cpu = sum(each)
                up_cpu = (emulator.cpu_ticks() - up0) / bl.CLK_TCK
                ngx_cpu = (_tree_ticks(ngx.pid) - ngx0) / bl.CLK_TCK
                per_cpu = r["requests"] / cpu if cpu else float("nan")
                p50 = r.get("p50_us", 0) / 1000
                p99 = r.get("p99_us", 0) / 1000
                print(
                    f"{count:>9}  {r['rps']:>5.0f}  {r['errors']:>6}  {cpu:>11.1f}  "
                    f"{per_cpu:>24.0f}  {p50:>6.1f}  {p99:>6.1f}  {up_cpu:>14.1f}  "
                    f"{ngx_cpu:>11.1f}  {os.getloadavg()[0]:>4.1f}  "
                    + " ".join(f"{c:.1f}" for c in each)
                )
            finally:
                ngx.terminate()
                ngx.wait(10)
                for inst in instances:
                    inst.stop()
    finally:
        emulator.stop()
        _database(db, drop=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
