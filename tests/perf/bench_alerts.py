"""Alert history benchmark (issue 14 targets): webhook ingestion, an alert storm, search.

    python tests/perf/bench_alerts.py [--deliveries 2000] [--concurrency 8] [--storm 10000]
                                      [--rate 200,30 --open-seconds 20] [--rows 1000000] [--pg postgresql://postgres@127.0.0.1/postgres]
                                      [--redis redis://127.0.0.1:6379/0] [--only search]

Two real ``llmgw serve`` instances (one pinned to CPU 1, one to CPU 0) share a fresh PostgreSQL
database and Redis; the OpenAI emulator (CPU 0) answers the classifier.

1. Ingestion: ``--deliveries`` webhook posts of 10 new alerts each (distinct label sets, so the
   classifier keeps calling meanwhile) from ``--concurrency`` clients into instance 1, after 50
   for warm-up. Reports alerts/s of wall time and per CPU-second of the gateway process (user +
   system of all its threads, from /proc), CPU ms per alert, p50/p99/max answer time, the load
   average. Closed loop: each client posts again as soon as it has its answer, so the server is
   saturated and an answer's time is mostly its wait behind the other clients' requests (the
   saturation figure, not the answer latency Alertmanager sees).
1b. Open loop (``--rate N[,M...]``, each rate in turn): N deliveries/s of 10 new alerts each,
   sent at fixed intervals for
   ``--open-seconds`` whatever the answers (as wrk2 does; Alertmanager sends one delivery per
   group per ``group_interval``, not back to back), each on its own request; an answer's time
   counts from when it was due, so a late send is not hidden (no coordinated omission). Reports
   p50/p99/max answer time, the send lag, CPU per alert (instance 1's, instance 2's, and
   PostgreSQL's: its processes on the benchmark's database, read from /proc), the
   classification attempts both workers recorded meanwhile (refusals by ``alerts.rpm`` too), the
   occurrences whose classification was written meanwhile (``classified_meanwhile``: cache hits
   and calls made before the window count there too, so it is not what ``alerts.rpm`` limits),
   the LLM calls made in the window (``llm_calls_meanwhile``, usage rows by their time: what
   ``alerts.rpm`` limits, at most ``rpm_allows``) and each instance's rate limiter errors
   talking to Redis meanwhile (``/metrics``). Targets: >= 2,000 alerts/s per core
   (closed loop), p99 <= 20 ms while classification runs (open loop): ``--rate 200`` is the
   target's own rate (2,000 alerts/s in payloads of 10), ``--rate 30`` 300 alerts/s.
2. Storm: ``--storm`` occurrences of one label set (batches of 10, half to each instance), then
   the LLM calls (usage rows of the alert service) once the queue is empty. Target: 1 call per
   distinct label set.
3. Search: ``--rows`` occurrences inserted with ``generate_series``, then ``AlertHistory.list``
   (text, labels, status+severity, time range, combined; median of 5 after a warm-up, and the
   plan). Target: <= 200 ms on 1M. ``--only search`` runs just this phase. ``--rows 0`` skips it.

Figures taken on the shared 2-core machine are provisional: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib import free_port, open_loop, pct, pin  # noqa: E402

LLMGW = str(Path(sys.executable).with_name("llmgw"))
TOKEN = "bench-webhook-token-0123456789"


def _fp(labels: dict[str, str]) -> str:
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for b in name.encode() + b"\xff" + labels[name].encode() + b"\xff":
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _payload(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "bench", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am", "alerts": alerts}  # fmt: skip


def _alert(name: str, instance: str, start: datetime) -> dict[str, Any]:
    labels = {"alertname": name, "instance": instance, "job": "node", "severity": "warning"}
    return {"status": "firing", "labels": labels,
            "annotations": {"summary": f"{name} on {instance}"},
            "startsAt": start.isoformat().replace("+00:00", "Z"),
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": _fp(labels)}  # fmt: skip


def _wait(url: str, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def _db(admin: str) -> str:
    name = f"llmgw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return admin.rsplit("/", 1)[0] + "/" + name


async def _post_all(url: str, bodies: list[dict[str, Any]], conc: int) -> list[float]:
    times: list[float] = []
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> None:
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                r = await client.post(url, json=body, headers=headers)
                times.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise SystemExit(f"webhook answered {r.status_code}: {r.text[:200]}")

        await asyncio.gather(*(one() for _ in range(conc)))
    return times


async def _post_open(
    url: str, bodies: list[dict[str, Any]], rate: float, records_out: Path | None = None
) -> dict[str, Any]:
    """Post ``bodies`` at ``rate`` per second on a fixed schedule (``benchlib.open_loop``): each
    answer time is measured from the moment the request was due, and ``lag`` is how late the
    client sent. The bodies are encoded before the clock starts, and the requests go through
    aiohttp when it is installed (the perf group): httpx spent about 10 ms of client CPU per
    request on a loaded machine, so at 200 deliveries/s the client, not the server, fell behind."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    raw = [orjson.dumps(b) for b in bodies]
    aiohttp: Any = None
    with contextlib.suppress(ImportError):  # (the dev group alone: httpx)
        aiohttp = importlib.import_module("aiohttp")
    if aiohttp is not None:
        tmo = aiohttp.ClientTimeout(total=30)
        conn = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=conn, timeout=tmo) as session:

            async def send_aiohttp(i: int) -> None:
                async with session.post(url, data=raw[i], headers=headers) as r:
                    text = await r.read()
                    if r.status != 200:
                        raise SystemExit(f"webhook answered {r.status}: {text[:200]!r}")

            records = await open_loop(send_aiohttp, len(bodies), rate)
    else:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:

            async def send(i: int) -> None:
                r = await client.post(url, content=raw[i], headers=headers)
                if r.status_code != 200:
                    raise SystemExit(f"webhook answered {r.status_code}: {r.text[:200]}")

            records = await open_loop(send, len(bodies), rate)
    if records_out is not None:  # one line per request: when it was due (epoch s), lag, answer
        off = time.time() - time.monotonic()
        with records_out.open("a") as f:
            for due, lag, latency, _ in sorted(records, key=lambda r: r[0]):
                f.write(f"{due + off:.4f} {lag * 1000:.2f} {latency * 1000:.2f}\n")
    times = [r[2] * 1000 for r in records]
    return {
        "p50_ms": round(pct(times, 50), 1),
        "p90_ms": round(pct(times, 90), 1),
        "p99_ms": round(pct(times, 99), 1),
        "max_ms": round(max(times), 1),
        "send_lag_p99_ms": round(pct([r[1] * 1000 for r in records], 99), 1),
        "client": "aiohttp" if aiohttp is not None else "httpx",
    }


def _run(coro: Any) -> Any:
    """``coro`` on uvloop when installed (a lighter client loop), else asyncio's."""
    try:
        uvloop: Any = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--deliveries", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--storm", type=int, default=10_000)
    ap.add_argument(
        "--rate",
        type=lambda v: [float(x) for x in v.split(",") if float(x) > 0],
        default=[],
        help="open loop: deliveries/s (of 10 alerts) at fixed intervals; several rates"
        " separated by commas run one after another (200 = the target's 2,000 alerts/s)",
    )
    ap.add_argument("--open-seconds", type=float, default=20, help="length of the open loop")
    ap.add_argument(
        "--records",
        metavar="FILE",
        type=Path,
        help="open loop: append one line per request to FILE (due as epoch seconds, send lag"
        " and answer time in ms) to line slow answers up with what else happened then",
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--only", choices=["search"], help="Run only this phase.")
    ap.add_argument(
        "--search-db",
        metavar="URL",
        help="with --only search: a database already filled by an earlier run (kept as is)",
    )
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument(
        "--mode",
        default="enriched",
        help="alerts.mode (transparent: no classifier, the webhook alone)",
    )
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="run instance 1 under yappi (tests/perf/yappi_serve.py) and write its profile here",
    )
    a = ap.parse_args(argv)
    # a SIGTERM (``timeout``) unwinds through the ``finally``s: the servers stop, the database goes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {"at": datetime.now(UTC).isoformat(timespec="seconds")}
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    if a.only == "search" and a.search_db:
        results["search"] = _search(a.search_db, 0)
        print(json.dumps(results, indent=2))
        return 0
    db = _db(a.pg)
    if a.only == "search":
        try:
            from llmgw.storage.db import make_engine
            from llmgw.storage.schema import upgrade

            eng = make_engine(db)
            upgrade(eng)
            eng.dispose()
            results["search"] = _search(db, a.rows)
            print(json.dumps(results, indent=2))
        finally:
            _drop(a.pg, db)
        return 0
    emu_port, gw_port, gw2_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    env["LLMGW_HOME"] = str(tmp)
    emu = subprocess.Popen([LLMGW, "emulate", "openai", "--port", str(emu_port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    pin(emu.pid, 0)
    prefix = f"bench-alerts-{uuid.uuid4().hex[:8]}"
    (tmp / "config.toml").write_text(
        f'redis_url = "{a.redis}"\n'
        f'[database]\nurl = "{db}"\n[server]\naccess_log = false\n'
        f'[alerts]\nwebhook_token = "{TOKEN}"\npoll_interval = 0.2\nconcurrency = 8\n'
        f'cache_prefix = "{prefix}"\nmode = "{a.mode}"\n'
        '[aliases]\nalerts-classifier = ["emu/gpt-4o-mini"]\n'
        f'[[providers]]\nname = "emu"\nkind = "openai"\nbase_url = "http://127.0.0.1:{emu_port}/v1"\n'
        'models = ["gpt-4o-mini"]\n'
    )
    subprocess.run([LLMGW, "--config", str(tmp / "config.toml"), "db", "upgrade"], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    serve = [[LLMGW, "--config", str(tmp / "config.toml"), "serve", "--port", str(port)]
             for port in (gw_port, gw2_port)]  # fmt: skip
    if a.profile:  # instance 1 under yappi: every thread, CPU clock
        serve[0] = [sys.executable, str(HERE / "yappi_serve.py"), a.profile, "--", *serve[0][1:]]
    gws = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for argv in serve
    ]
    try:
        pin(gws[0].pid, 1)
        pin(gws[1].pid, 0)
        for port in (gw_port, gw2_port):
            _wait(f"http://127.0.0.1:{port}/readyz")
        _wait(f"http://127.0.0.1:{emu_port}/v1/models")
        hooks = [f"http://127.0.0.1:{port}/alerts/webhook" for port in (gw_port, gw2_port)]
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        if a.deliveries:
            # ingestion into instance 1 only (pinned to CPU 1); its classifier runs meanwhile
            bodies = [
                _payload([_alert(f"A{i % 50}", f"n{i}-{j}", t0) for j in range(10)])
                for i in range(a.deliveries)
            ]
            asyncio.run(_post_all(hooks[0], bodies[:50], a.concurrency))  # warm-up
            bodies = bodies[50:]
            cpu0, start = _cpu_seconds(gws[0].pid), time.perf_counter()
            times = asyncio.run(_post_all(hooks[0], bodies, a.concurrency))
            wall = time.perf_counter() - start
            cpu = _cpu_seconds(gws[0].pid) - cpu0
            times.sort()
            n_alerts = len(bodies) * 10
            results["ingest"] = {
                "alerts_per_s_wall": round(n_alerts / wall),
                "alerts_per_cpu_s": round(n_alerts / cpu) if cpu else None,
                "cpu_ms_per_alert": round(cpu * 1000 / n_alerts, 3),
                "p50_ms": round(times[len(times) // 2] * 1000, 1),
                "p99_ms": round(times[int(len(times) * 0.99)] * 1000, 1),
                "max_ms": round(times[-1] * 1000, 1),
                "deliveries": len(bodies),
                "concurrency": a.concurrency,
                "classified_meanwhile": _classified(db),
                "loadavg": os.getloadavg()[0],
                "mode": a.mode,
            }
            print(json.dumps(results["ingest"]), flush=True)
        for rate in a.rate:
            # open loop into instance 1 at ``rate`` deliveries/s; its classifier runs meanwhile
            n = int(rate * a.open_seconds)
            tag = f"O{int(rate)}-"
            bodies = [
                _payload([_alert(f"O{i % 50}", f"{tag}{i}-{j}", t0) for j in range(10)])
                for i in range(n + 50)
            ]
            _run(_post_open(hooks[0], bodies[:50], rate))  # warm-up
            bodies = bodies[50:]
            errs0 = [_limiter_errors(port) for port in (gw_port, gw2_port)]
            # the window starts at the first count (the warm-up's burst of calls runs meanwhile)
            w0, done0 = datetime.now(UTC), _classified(db)
            tried0, rows0 = _attempts(db), _row_writes(db)
            pg0, other0 = _pg_cpu(db), _cpu_seconds(gws[1].pid)
            cpu0, start = _cpu_seconds(gws[0].pid), time.perf_counter()
            open_loop = _run(_post_open(hooks[0], bodies, rate, a.records))
            wall = time.perf_counter() - start
            cpu = _cpu_seconds(gws[0].pid) - cpu0
            other = _cpu_seconds(gws[1].pid) - other0
            pg1 = _pg_cpu(db)
            pg = sum(t - pg0.get(pid, 0.0) for pid, t in pg1.items())
            done1, w1 = _classified(db), datetime.now(UTC)
            errs = [_limiter_errors(p) - e for p, e in zip((gw_port, gw2_port), errs0, strict=True)]
            window = (w1 - w0).total_seconds()
            row = {
                "rate_deliveries_per_s": rate,
                "alerts_per_s_offered": round(rate * 10),
                "alerts_per_s_wall": round(len(bodies) * 10 / wall),
                **open_loop,
                "p99_target_met": open_loop["p99_ms"] <= 20,
                "cpu_ms_per_alert": round(cpu * 1000 / (len(bodies) * 10), 3),
                "cpu_share_of_a_core": round(cpu / wall, 2),
                "instance2_cpu_ms_per_alert": round(other * 1000 / (len(bodies) * 10), 3),
                "pg_cpu_ms_per_alert": round(pg * 1000 / (len(bodies) * 10), 3),
                "pg_share_of_a_core": round(pg / wall, 2),
                "deliveries": len(bodies),
                "classified_meanwhile": done1 - done0,
                "window_s": round(window, 1),
                "llm_calls_meanwhile": _calls_between(db, w0, w1),
                "rpm_allows": _rpm_allows(window),
                "limiter_redis_errors_meanwhile": errs,
                "attempts_meanwhile": _attempts(db) - tried0,
                **{k: v - rows0[k] for k, v in _row_writes(db).items()},
                "loadavg": os.getloadavg()[0],
                "mode": a.mode,
            }
            results.setdefault("ingest_open", []).append(row)
            print(json.dumps(row), flush=True)
        # storm: --storm occurrences of one label set, sent to both instances in turn
        if a.storm:
            calls_before = _emu_requests(db)
            storm = [
                _payload([_alert("Storm", "s1", t0 + timedelta(seconds=i * 10 + j)) for j in range(10)])
                for i in range(a.storm // 10)
            ]  # fmt: skip
            halves = [storm[0::2], storm[1::2]]

            async def both() -> None:
                await asyncio.gather(
                    *(
                        _post_all(h, part, a.concurrency)
                        for h, part in zip(hooks, halves, strict=True)
                    )
                )

            t_storm = time.perf_counter()
            asyncio.run(both())
            _drain(db, "Storm")
            results["storm"] = {
                "occurrences": a.storm,
                "instances": 2,
                "llm_calls": _emu_requests(db, "Storm"),
                "all_llm_calls_in_storm": _emu_requests(db) - calls_before,
                "classified_by_cache": _cache_hits(db, "Storm"),
                "seconds": round(time.perf_counter() - t_storm, 1),
            }
            print(json.dumps(results["storm"]), flush=True)
    finally:
        for gw in gws:
            gw.terminate()
        emu.terminate()
        for gw in gws:
            gw.wait(30)
        emu.wait(30)
    if not a.rows:
        print(json.dumps(results, indent=2))
        _drop(a.pg, db)
        return 0
    results["search"] = _search(db, a.rows)
    print(json.dumps(results["search"]), flush=True)
    print(json.dumps(results, indent=2))
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (all its threads) so far."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _pg_cpu(db: str) -> dict[int, float]:
    """User + system CPU so far of each PostgreSQL process on ``db`` (backends and autovacuum
    workers; one that ended between two readings is missed, so a delta undercounts a little)."""
    with psycopg.connect(db) as c:
        pids = [int(r[0]) for r in c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()")]  # fmt: skip
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            out[pid] = _cpu_seconds(pid)
    return out


def _attempts(db: str) -> int:
    """Classification attempts recorded so far (both workers; a refusal by ``alerts.rpm`` is
    one): the work the workers did in a window besides the deliveries."""
    with psycopg.connect(db) as c:
        row = c.execute(
            "SELECT count(*) FROM alert_events"
            " WHERE kind IN ('classified', 'classification_failed')"
        ).fetchone()
    return int(row[0]) if row else 0


def _row_writes(db: str) -> dict[str, int]:
    """Rows of ``alert_jobs`` and ``alerts`` inserted or updated so far (PostgreSQL's table
    statistics, flushed within a second): the queue's churn besides the deliveries' own rows."""
    time.sleep(1.1)
    with psycopg.connect(db) as c:
        rows = c.execute(
            "SELECT relname, n_tup_ins + n_tup_upd FROM pg_stat_user_tables"
            " WHERE relname IN ('alert_jobs', 'alerts')"
        ).fetchall()
    got = {str(name): int(n) for name, n in rows}
    return {f"{t}_rows_written_meanwhile": got.get(t, 0) for t in ("alert_jobs", "alerts")}


def _classified(db: str) -> int:
    with psycopg.connect(db) as c:
        row = c.execute("SELECT count(*) FROM alerts WHERE cls_status = 'ok'").fetchone()
    return int(row[0]) if row else 0


RPM = 120
"""``alerts.rpm`` in the benchmark's configuration (the default)."""


def _rpm_allows(seconds: float) -> int:
    """The most LLM calls ``alerts.rpm`` admits in ``seconds`` across instances: the GCRA
    bucket's burst (a full minute's worth) plus its refill."""
    return int(RPM + RPM * seconds / 60)


def _calls_between(db: str, start: datetime, end: datetime) -> int:
    """LLM calls of the alert service made between ``start`` and ``end`` (usage rows by their
    time, after the usage writer's flush): what ``alerts.rpm`` limits, unlike the occurrences
    classified in the window (cache hits, and calls made before it, count there too)."""
    time.sleep(2)  # the usage writer flushes every 0.2 s (usage.flush_interval): a margin
    with psycopg.connect(db) as c:
        row = c.execute(
            "SELECT count(*) FROM usage WHERE endpoint = 'alerts'"
            " AND created_at >= %s AND created_at < %s",
            (start, end),
        ).fetchone()
    return int(row[0]) if row else 0


def _limiter_errors(port: int) -> int:
    """The instance's rate limiter errors and timeouts talking to Redis so far (``/metrics``):
    while Redis fails the classifier makes no call (docs/alerts.md)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("llmgw_ratelimit_backend_errors_total "):
            return int(float(line.split()[1]))
    return 0


def _cache_hits(db: str, name: str) -> int:
    with psycopg.connect(db) as c:
        row = c.execute(
            "SELECT count(*) FROM alerts WHERE alertname = %s AND cls_status = 'ok'"
            " AND (classification->>'cache_hit')::boolean",
            (name,),
        ).fetchone()
    return int(row[0]) if row else 0


def _drop(admin: str, db: str) -> None:
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db.rsplit("/", 1)[1]}" WITH (FORCE)')


def _emu_requests(db: str, name: str | None = None) -> int:
    """LLM calls of the alert service (usage rows), all or for alerts named ``name``."""
    sql = "SELECT count(*) FROM usage WHERE endpoint = 'alerts'"
    args: tuple[Any, ...] = ()
    if name is not None:
        sql += (" AND (metadata->>'alert_id')::bigint IN"
                " (SELECT id FROM alerts WHERE alertname = %s)")  # fmt: skip
        args = (name,)
    with psycopg.connect(db) as c:
        row = c.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


def _drain(db: str, name: str, limit: float = 900) -> None:
    """Until every alert named ``name`` is classified (then the usage writer's flush)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        with psycopg.connect(db) as c:
            row = c.execute(
                "SELECT count(*) FROM alerts WHERE alertname = %s AND cls_status <> 'ok'", (name,)
            ).fetchone()
        if row and row[0] == 0:
            time.sleep(2)  # let the usage writer flush
            return
        time.sleep(0.5)
    raise SystemExit("the storm was not classified in time")


def _search(db: str, rows: int) -> dict[str, Any]:
    """``rows`` generated occurrences (500 alert names, 2,000 instances, 20 jobs, three
    severities, a third firing, one every second back from now), then each search as
    ``AlertHistory.list`` (a page of 50): the median of 5 runs after a warm-up, and the plan."""
    from llmgw.alerts.queries import AlertHistory
    from llmgw.storage.db import make_engine

    t0 = time.perf_counter()
    with psycopg.connect(db, autocommit=True) as c:
        if rows:
            _fill(c, rows)
        indexes = [r[0] for r in c.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'alerts' ORDER BY 1").fetchall()]  # fmt: skip
    eng = make_engine(db)
    h = AlertHistory(eng)
    out: dict[str, Any] = {"rows": rows, "fill_s": round(time.perf_counter() - t0, 1),
                           "indexes": indexes}  # fmt: skip
    now = datetime.now(UTC)
    if not rows:  # a kept database: its newest occurrence stands for now
        with psycopg.connect(db) as c:
            row = c.execute("SELECT max(last_seen) FROM alerts").fetchone()
        now = row[0] if row and row[0] else now
    return _cases(db, eng, h, out, now)


def _fill(c: Any, rows: int) -> None:
    """``rows`` generated occurrences, then VACUUM ANALYZE."""
    c.execute(
        """
        INSERT INTO alerts (fingerprint, starts_at, source, alertname, status, severity, labels,
            annotations, generator_url, receiver, first_seen, last_seen, notifications,
            fire_count, flapping, cls_status, search)
        SELECT lpad(to_hex(g), 16, '0'), now() - g * interval '1 second', 'alertmanager',
            'Alert' || (g %% 500), CASE WHEN g %% 3 = 0 THEN 'firing' ELSE 'resolved' END,
            (ARRAY['critical','warning','info'])[1 + (g / 7) %% 3],
            jsonb_build_object('alertname', 'Alert' || (g %% 500), 'instance', 'node' || (g %% 2000),
                               'job', 'job' || (g %% 20),
                               'severity', (ARRAY['critical','warning','info'])[1 + (g / 7) %% 3]),
            jsonb_build_object('summary', 'disk usage on node' || (g %% 2000) || ' is ' || (g %% 97) || '%%',
                               'description', 'volume vol-' || md5(g::text) || ' filling up'),
            '', 'bench', now(), now() - g * interval '1 second', 1, 1, false, 'ok',
            lower('alert' || (g %% 500) || E'\ninstance=node' || (g %% 2000) || E'\njob=job' || (g %% 20)
                  || E'\nseverity=' || (ARRAY['critical','warning','info'])[1 + (g / 7) %% 3]
                  || E'\ndisk usage on node' || (g %% 2000) || ' is ' || (g %% 97) || '%%'
                  || E'\nvolume vol-' || md5(g::text) || ' filling up')
        FROM generate_series(1, %s) AS g
        """,
        (rows,),
    )
    c.execute("VACUUM ANALYZE alerts")


def _cases(db: str, eng: Any, h: Any, out: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Each search of the benchmark on the filled ``db``."""
    from llmgw.alerts.queries import AlertFilter
    from llmgw.alerts.store import ALERTS

    with psycopg.connect(db) as c:
        row = c.execute("SELECT md5(77777::text)").fetchone()
    one_volume = f"vol-{row[0] if row else ''}"
    cases = {
        "text_500_matches": AlertFilter(q="node1234 "),
        "text_1_match": AlertFilter(q=one_volume[:20]),
        "text_no_match": AlertFilter(q="no such text anywhere"),
        "label": AlertFilter(labels=("instance=node77",)),
        "label_two": AlertFilter(labels=("instance=node77", "job=job17")),
        "status_severity": AlertFilter(status="firing", severity="critical"),
        "since_1h": AlertFilter(since=now - timedelta(hours=1)),
        "window_old_day": AlertFilter(since=now - timedelta(days=9), until=now - timedelta(days=8)),
        "all_combined": AlertFilter(
            q="disk",
            labels=("job=job3",),
            status="firing",
            severity="warning",
            since=now - timedelta(days=5),
        ),  # fmt: skip
    }
    for name, f in cases.items():
        h.list(f, limit=50)  # warm-up
        samples = []
        for _ in range(5):
            t = time.perf_counter()
            page = h.list(f, limit=50)
            samples.append((time.perf_counter() - t) * 1000)
        sql = sa_select_ids(ALERTS, f, eng)
        with eng.connect() as conn:
            plan = [r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql[0], sql[1]).all()]
        out[name] = {"ms": round(statistics.median(samples), 1), "max_ms": round(max(samples), 1),
                     "found": len(page["data"]),
                     "plan": [p.strip() for p in plan if "Scan" in p][:3]}  # fmt: skip
        print(name, json.dumps(out[name]), flush=True)
    eng.dispose()
    return out


def sa_select_ids(alerts: Any, f: Any, eng: Any) -> tuple[str, dict[str, Any]]:
    """The list query's SQL and parameters, for EXPLAIN."""
    import sqlalchemy as sa

    from llmgw.alerts.queries import AlertHistory

    c = alerts.c
    stmt = (
        sa.select(c.id)
        .where(*f.where("postgresql"))
        .order_by(c.last_seen.desc(), c.id.desc())
        .limit(51)
    )
    split = getattr(AlertHistory, "_split_at_until", None)  # the list's plan with ``until``
    if split is not None and f.until is not None:
        stmt = split(f.where("postgresql"), f.until, 51)
    compiled = stmt.compile(eng)
    params = {
        k: json.dumps(v) if isinstance(v, dict) else v
        for k, v in compiled.construct_params().items()
    }
    return str(compiled), params


if __name__ == "__main__":
    sys.exit(main())
