"""The alert store in process: CPU per alert of ``AlertStore.ingest`` and the time of ``stats()``.

    python tests/perf/bench_alert_store.py [--deliveries 300] [--stats-rows 86400]
                                           [--pg postgresql://postgres@127.0.0.1/postgres]
                                           [--before REV] [--rounds 3] [--sqlite]

No HTTP, no worker: what the webhook's thread and the dashboard's summary cost in llmgw itself.
Each round makes a fresh database (PostgreSQL, or SQLite with ``--sqlite``), then:

1. ``new``: ``--deliveries`` deliveries of 10 new alerts each (distinct label sets) after 20 for
   warm-up: CPU seconds of this process (``time.process_time``) and of the PostgreSQL
   backends serving the database (``/proc``: the statements and migration 0018's triggers run
   there; the server must be on this machine), statements per delivery.
2. ``repeat``: the same deliveries again with a changed annotation (new digests: every alert is
   an update of an existing occurrence, Alertmanager's ``repeat_interval``).
3. ``resolve``: the same alerts resolved.
4. ``storm``: deliveries of 10 occurrences of one label set (fire counts, flapping).
5. ``stats``: ``--stats-rows`` occurrences, one every 0.86 s back from now (100,000 in the
   last day of 1,000,000; generated in SQL, PostgreSQL only), then ``AlertHistory.stats()``
   over the default day: the median wall time of 5 after a warm-up.

With ``--before REV`` a ``git archive`` snapshot of REV runs the same rounds in a child process
(``PYTHONPATH`` puts it first), interleaved with this tree's, so both see the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _payload(alerts: list[dict[str, Any]], status: str = "firing") -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": status,
            "receiver": "bench", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am", "alerts": alerts}  # fmt: skip


def _alert(name: str, instance: str, start: datetime, status: str = "firing",
           note: str = "") -> dict[str, Any]:  # fmt: skip
    labels = {"alertname": name, "instance": instance, "job": "node", "severity": "warning"}
    end = (start + timedelta(minutes=5)) if status == "resolved" else None
    return {"status": status, "labels": labels,
            "annotations": {"summary": f"{name} on {instance}{note}"},
            "startsAt": start.isoformat().replace("+00:00", "Z"),
            "endsAt": end.isoformat().replace("+00:00", "Z") if end else "0001-01-01T00:00:00Z",
            "generatorURL": ""}  # fmt: skip


def _server_cpu(store: Any) -> float:
    """CPU seconds (user + system) of the PostgreSQL backends serving this database so far
    (0 on SQLite): the store's statements and triggers run there, not in this process."""
    if store.engine.dialect.name != "postgresql":
        return 0.0
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        pids = conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _phase(store: Any, deliveries: list[Any], counter: list[int]) -> dict[str, Any]:
    counter[0] = 0
    pg0 = _server_cpu(store)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for d in deliveries:
        store.ingest(d)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    pg = _server_cpu(store) - pg0
    n = sum(len(d.alerts) for d in deliveries)
    return {
        "alerts": n,
        "cpu_ms_per_alert": round(cpu * 1000 / n, 3),
        "pg_cpu_ms_per_alert": round(pg * 1000 / n, 3),
        "alerts_per_cpu_s": round(n / cpu) if cpu else None,
        "wall_ms_per_delivery": round(wall * 1000 / len(deliveries), 2),
        "statements_per_delivery": round(counter[0] / len(deliveries), 1),
    }


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One round in this process (whatever ``llmgw`` it imports)."""
    import sqlalchemy as sa

    from llmgw.alerts.payload import parse_delivery
    from llmgw.alerts.store import AlertStore
    from llmgw.config import AlertsSettings
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    tmp = Path(tempfile.mkdtemp(prefix="bench-alert-store-"))
    if args.sqlite:
        url = f"sqlite:///{tmp / 'a.db'}"
    else:
        import psycopg

        name = f"llmgw_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        url = args.pg.rsplit("/", 1)[0] + "/" + name
    eng = make_engine(url)
    out: dict[str, Any] = {}
    try:
        upgrade(eng)
        counter = [0]

        @sa.event.listens_for(eng, "before_cursor_execute")
        def _count(*_: Any) -> None:
            counter[0] += 1

        store = AlertStore(eng, AlertsSettings())
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        n = args.deliveries + 20

        def batch(status: str = "firing", note: str = "") -> list[Any]:
            return [
                parse_delivery(
                    _payload(
                        [_alert(f"A{i % 50}", f"n{i}-{j}", t0, status, note) for j in range(10)],
                        status,
                    )
                )  # fmt: skip
                for i in range(n)
            ]

        new = batch()
        _phase(store, new[:20], counter)
        out["new"] = _phase(store, new[20:], counter)
        out["repeat"] = _phase(store, batch(note=" again")[20:], counter)
        out["resolve"] = _phase(store, batch("resolved")[20:], counter)
        storm = [
            parse_delivery(
                _payload(
                    [_alert("Storm", "s1", t0 + timedelta(seconds=i * 10 + j)) for j in range(10)]
                )
            )  # fmt: skip
            for i in range(args.deliveries)
        ]
        out["storm"] = _phase(store, storm, counter)
        with eng.connect() as conn:
            fc = conn.execute(
                sa.text("SELECT max(fire_count) FROM alerts WHERE alertname = 'Storm'")
            )
            out["storm"]["max_fire_count"] = fc.scalar()
        if args.stats_rows and not args.sqlite:
            out["stats"] = _stats(eng, args.stats_rows)
    finally:
        eng.dispose()
        if not args.sqlite:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    return out


def _stats(eng: Any, rows: int) -> dict[str, Any]:
    from llmgw.alerts.queries import AlertHistory

    with eng.begin() as conn:
        conn.exec_driver_sql(
            """
            INSERT INTO alerts (fingerprint, starts_at, source, alertname, status, severity,
                labels, annotations, generator_url, receiver, first_seen, last_seen,
                notifications, fire_count, flapping, cls_status, category, search)
            SELECT lpad(to_hex(g %% 20000), 16, '0'), now() - g * (interval '86 seconds') / 100,
                'alertmanager', 'Alert' || (g %% 500),
                CASE WHEN g %% 3 = 0 THEN 'firing' ELSE 'resolved' END,
                (ARRAY['critical','warning','info'])[1 + (g / 7) %% 3], '{}', '{}', '', 'bench',
                now(), now() - g * (interval '86 seconds') / 100, 1, 1, g %% 50 = 0,
                (ARRAY['ok','pending','error'])[1 + g %% 3],
                (ARRAY['disk','cpu','network', NULL])[1 + g %% 4], ''
            FROM generate_series(1, %(n)s) AS g
            """,
            {"n": rows},
        )
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE alerts")
    h = AlertHistory(eng)
    first = h.stats()
    samples = []
    cpu0 = time.process_time()
    for _ in range(5):
        t = time.perf_counter()
        h.stats()
        samples.append((time.perf_counter() - t) * 1000)
    return {
        "rows_in_day": first["total"],
        "median_ms": round(statistics.median(samples), 1),
        "max_ms": round(max(samples), 1),
        "client_cpu_ms": round((time.process_time() - cpu0) * 1000 / 5, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--deliveries", type=int, default=300)
    ap.add_argument("--stats-rows", type=int, default=86_400)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    ap.add_argument("--before", metavar="REV", help="also run REV's store, interleaved")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a)))
        return 0
    from benchlib import git_rev, snapshot

    versions: dict[str, dict[str, str]] = {"now": {}}
    labels = {"now": git_rev("HEAD") + " + working tree"}
    if a.before:
        tmp = Path(tempfile.mkdtemp(prefix="bench-alert-store-"))
        src, labels["before"] = snapshot(tmp, a.before)
        versions["before"] = {"PYTHONPATH": str(src)}
    argv_child = [sys.executable, __file__, "--child", "--deliveries", str(a.deliveries),
                  "--stats-rows", str(a.stats_rows), "--pg", a.pg] + (["--sqlite"] if a.sqlite else [])  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in versions}
    load = [os.getloadavg()[0]]
    for r in range(a.rounds):
        for name, extra in versions.items():
            env = {**os.environ, **extra}
            res = subprocess.run(argv_child, env=env, capture_output=True, text=True, check=False)
            if res.returncode:
                raise SystemExit(f"{name}: {res.stderr[-2000:]}")
            runs[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {name}: {runs[name][-1]}", flush=True)
    load.append(os.getloadavg()[0])
    summary: dict[str, Any] = {
        "versions": labels,
        "loadavg": load,
        "db": "sqlite" if a.sqlite else "postgresql",
    }
    for name, rs in runs.items():
        summary[name] = {
            phase: {
                key: statistics.median(r[phase][key] for r in rs)
                for key in rs[0][phase]
                if isinstance(rs[0][phase][key], (int, float))
            }
            for phase in rs[0]
        }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
