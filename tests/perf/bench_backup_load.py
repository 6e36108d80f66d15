"""Backup under load: the gateway's p99 while ``llmgw serve`` backs up its own large SQLite
database (``[backup] interval``) against the same load without a backup, same run (issue 12:
1 GB at 500 req/s, p99 up by at most 10 %).

    python tests/perf/bench_backup_load.py                  # 2.2M usage rows (~1 GB), 500 req/s, writes docs
    python tests/perf/bench_backup_load.py --quick          # 100k rows (48 MB), 2 backups, prints only
    python tests/perf/bench_backup_load.py --rate 300       # another steady rate
    python tests/perf/bench_backup_load.py --saturate       # wrk, no rate limit (c=10): the gateway saturated
    python tests/perf/bench_backup_load.py --steady 120     # no backup: how steady the baseline is

Method (``benchlib``, like ``bench_gateway.py``): nginx with a canned completion on core 0, one
``llmgw serve`` pinned to core 1 on a copy of the generated database (``tests/migrate_data.py``,
cached in ``--cache`` as ``bench_migrate.py`` does), with ``[backup] interval`` so it takes its
backups itself (online backup API in a child process at the lowest priority, on the CPUs
``[backup] cpus`` gives it (``--backup-cpus``; by default the other core), then the integrity check and
the rotation, as in production). Every request writes a usage row.

Default (open loop): ``open_loop_client.py`` on core 0 sends ``--rate`` chat requests per second
on a fixed schedule for the whole run, whatever the answers (as wrk2 does), and times each answer
from when it was due (no coordinated omission). This script (also on core 0) watches the gateway's
backup child in /proc and puts every request on that timeline by its due time: while a backup
runs; the ``--settle`` seconds after it (the gateway folds the WAL that grew meanwhile back into
the database); or without a backup (before the first one, after the warm-up, and from
``--settle`` s after each until the next). It stops after ``--pairs`` backups and one more
stretch without. The report: requests, p50/p99/p99.9/max and the gateway's CPU per request in
each class, and p99 during / without (target <= 1.10). Beside the client's figures, per class:
the client's own send lag (a load client delayed on its core shows there), the gateway's own
latency (its access log: from when its middleware began a request to its last byte, so it
leaves out the client's and the kernel's share), and the share of the gateway's core that other
processes took (this machine's other users: a stretch they disturbed says so).

``--steady SECONDS``: no backup at all, the same load for that long, p99 per 20 s stretch: how
much the baseline moves on this machine by itself (prints only).

``--saturate``: the older method. Per backup, one ``--seconds`` wrk run (c=``--connections``, no
rate limit) while it runs, one right after, one ``--settle`` s later; median p99 and req/s.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
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
check = "{check}"
dir = "{backups}"
{cpus}

[[providers]]
name = "bench"
kind = "openai"
base_url = "http://127.0.0.1:{nginx}/v1"
api_key_env = "BENCH_OPENAI_KEY"
models = ["gpt-4o-mini"]
"""
LONGEST_BACKUP = 900.0
"""Seconds a backup may take before the run gives up (bounds the run)."""


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def metric(url: str, name: str) -> float:
    """One sample of ``name`` from ``/metrics``."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


POLICIES = {0: "normal", 3: "batch", 5: "idle"}


def child_seen(kid: int) -> str:
    """Where the backup process runs and at which policy, as /proc shows it."""
    status = Path(f"/proc/{kid}/status").read_text()
    found = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M)
    policy = re.search(r"^policy\s*:\s*(\d+)", Path(f"/proc/{kid}/sched").read_text(), re.M)
    name = POLICIES.get(int(policy.group(1)), policy.group(1)) if policy else "?"
    return f"CPUs {found.group(1) if found else '?'}, policy {name}"


def backup_child(pid: int) -> int | None:
    """The pid of the gateway's backup process while one runs (from /proc, not from the
    gateway: watching costs the gateway nothing)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            try:
                if b"child_main" in Path(f"/proc/{kid}/cmdline").read_bytes():
                    return int(kid)
            except OSError:
                continue
    return None


def own_ticks(pid: int) -> int:
    """User + system clock ticks of the process ``pid`` itself (all its threads, no children)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def fold_rollups(path: Path) -> int:
    """Fold the generated usage rows into the rollups once, in the cached file (0 the next
    time): otherwise the gateway's upkeep folds millions of rows during the run, holding the
    write lock for long stretches, and its other writers wait (a py-spy record of a 1 GB run:
    the upkeep thread in SQL 80% of the time, the health and usage writers waiting on it)."""
    from llmgw.storage.db import make_engine
    from llmgw.usage.rollup import refresh

    engine = make_engine(f"sqlite:///{path}")
    try:
        return refresh(engine)
    finally:
        engine.dispose()


def folded_copy(src: Path, dest: Path) -> Path:
    """``src`` (``bench_migrate.py``'s file, left as it is) copied to ``dest`` once, its rollups
    folded (``fold_rollups``); cached like the source."""
    if not dest.exists():
        partial = dest.with_suffix(".partial")
        shutil.copyfile(src, partial)
        fold_rollups(partial)
        partial.rename(dest)
    fold_rollups(dest)  # a file from before a new migration: nothing, or the few rows it adds
    return dest


def setup(a: argparse.Namespace, tmp: Path, servers: list[bl.Server]) -> tuple[bl.Server, str]:
    """nginx on core 0 and ``llmgw serve`` on core 1 on a copy of the generated database; the
    gateway and a key."""
    started = time.monotonic()
    src = source(a.rows, a.cache)
    log(
        f"database {src} ({src.stat().st_size / 1e6:,.0f} MB) in {time.monotonic() - started:.0f} s"
    )
    started = time.monotonic()
    src = folded_copy(src, a.cache / f"llmgw-bench-backup-{a.rows}.db")
    log(f"rollups folded in {src} in {time.monotonic() - started:.0f} s")
    home = tmp / "home"
    home.mkdir()
    shutil.copyfile(src, home / "llmgw.db")
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
            interval=1_000_000 if a.steady else a.interval,
            pace=a.pace,
            check=a.check,
            backups=tmp / "backups",
            cpus=f'cpus = "{a.backup_cpus}"' if a.backup_cpus else "",
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
    return gw, key


def _cpus(setting: str | None) -> str:
    """What ``[backup] cpus`` gives the backup here (the gateway pinned to ``SERVER_CPU``)."""
    if setting in (None, "auto"):
        return f"{bl.LOAD_CPU} (`auto`: the CPU the gateway does not use)"
    return f'{setting} (`cpus = "{setting}"`)'


def where(a: argparse.Namespace) -> str:
    """Where the backup process ran (as /proc showed it), for the report."""
    setting = f'`[backup] cpus = "{a.backup_cpus or "auto"}"`'
    seen = "; ".join(sorted(a.seen)) or "not seen"
    return f"{setting}: {seen}"


def run_head(tmp: Path) -> str:
    """The report's first words: when, which commit, how large the database is now."""
    size_mb = (tmp / "home" / "llmgw.db").stat().st_size / 1e6
    return (
        f"Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, `{bl.git_rev().split()[0]}`; "
        f"SQLite database of {size_mb:,.0f} MB"
    )


# --- open loop (the default) -------------------------------------------------------------------


def core_busy(cpu: int) -> int:
    """Clock ticks core ``cpu`` spent on anything but idle and I/O wait, since boot."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return sum(v[:3]) + sum(v[5:8])  # user nice system, irq softirq steal
    return 0


def kid_ticks(kid: int) -> int:
    """User + system ticks of the backup process (0 once it is gone)."""
    try:
        return own_ticks(kid)
    except (OSError, IndexError):
        return 0


def wal_bytes(wal: Path) -> int:
    """The size of the gateway's write-ahead log (0 when there is none)."""
    try:
        return wal.stat().st_size
    except OSError:
        return 0


def watch(
    a: argparse.Namespace,
    gw: bl.Server,
    client: subprocess.Popen[bytes],
    began: float,
    wal: list[tuple[float, int]],
) -> tuple[list[tuple[float, float]], list[Any]]:
    """Follow the backups until ``--pairs`` have ended and one more stretch without has passed:
    their (start, end) on the monotonic clock, and (time, the gateway's own CPU ticks, the
    gateway's core's busy ticks, the ticks of backups on that core) samples;
    (time, WAL bytes) samples appended to ``wal`` (a backup's read snapshot keeps the gateway's
    checkpoints from folding the WAL past it, so the WAL grows while the copy runs)."""
    pid = gw.popen.pid
    wal_file = gw.log.parent / "llmgw.db-wal"
    spans: list[tuple[float, float]] = []
    samples: list[Any] = []
    running_since: float | None = None
    told = False
    kid_done = 0  # ticks of finished backup processes that ran on the gateway's core
    kid_now, kid_here = 0, False
    quiet = max(a.interval - a.settle - 1.0, a.settle)  # a stretch without, before the next
    deadline = began + a.interval + a.pairs * (a.interval + LONGEST_BACKUP)
    while True:
        now = time.monotonic()
        kid = backup_child(pid)
        running = kid is not None
        if kid is not None:
            with contextlib.suppress(OSError):
                if (
                    a.alternate
                    and len(spans) % 2 == 1
                    and os.sched_getaffinity(kid) != {bl.SERVER_CPU}
                ):
                    # every other backup moved to the gateway's core (again after the child
                    # set its own CPUs, early in its start)
                    os.sched_setaffinity(kid, {bl.SERVER_CPU})
                kid_here = bl.SERVER_CPU in os.sched_getaffinity(kid)
            kid_now = kid_ticks(kid) if kid_here else 0
        elif kid_now:
            kid_done, kid_now = kid_done + kid_now, 0
        # (time, the gateway's ticks, core busy ticks, ticks of backups on the gateway's core)
        samples.append((now, own_ticks(pid), core_busy(bl.SERVER_CPU), kid_done + kid_now))
        wal.append((now, wal_bytes(wal_file)))
        if running and running_since is None:
            running_since, told = now, False
            log(f"backup {len(spans) + 1} started")
        elif kid is not None and running_since is not None and not told and now > running_since + 2:
            told = True  # by now the child has set its scheduling group, if it does
            with contextlib.suppress(OSError):
                group = Path(f"/proc/{kid}/autogroup").read_text().strip()
                a.seen.add(child_seen(kid))
                log(f"backup process {kid}: session {os.getsid(kid)}, {group}, {child_seen(kid)}")
        elif not running and running_since is not None:
            spans.append((running_since, now))
            running_since = None
            log(f"backup {len(spans)} ended after {spans[-1][1] - spans[-1][0]:.1f} s")
        if len(spans) >= a.pairs and not running and now >= spans[-1][1] + a.settle + quiet:
            return spans, samples
        gw.check_alive()
        if client.poll() is not None:
            raise SystemExit("the open-loop client ended before the backups did (see its log)")
        if now > deadline:
            raise SystemExit(f"no {a.pairs} backups within {deadline - began:.0f} s")
        time.sleep(0.02)


def classify(
    a: argparse.Namespace, spans: list[tuple[float, float]], began: float, end: float
) -> list[tuple[str, int, float, float]]:
    """The run cut into (class, backup number, from, to) on the monotonic clock: ``during``,
    ``after`` (the ``--settle`` s after a backup) and ``without`` (no backup near; number k:
    the stretch after backup k)."""
    cuts: list[tuple[str, int, float, float]] = []
    prev = began + a.warmup
    for k, (s, e) in enumerate(spans):
        if s - 0.5 > prev:
            cuts.append(("without", k, prev, s - 0.5))
        cuts.append(("during", k + 1, s, e))
        cuts.append(("after", k + 1, e, e + a.settle))
        prev = e + a.settle
    cuts.append(("without", len(spans), prev, end))
    return cuts


PHASES = re.compile(
    r"scheduled backup written: .*?\(\d+ bytes, ([\d.]+) s: copy ([\d.]+) s, sync ([\d.]+) s, "
    r"check ([\d.]+) s"
)


def phase_cuts(log_text: str, spans: list[tuple[float, float]]) -> list[tuple[str, float, float]]:
    """Each backup's span cut into its phases, from the gateway's log line for it (``copy``,
    ``sync``, ``check`` seconds, counted back from the child's end): (phase, from, to); the
    child's start-up and its last steps (rename, rotation) are ``other``. Empty when the log
    has no phases (a revision before they were logged)."""
    found = [tuple(float(x) for x in m.groups()) for m in PHASES.finditer(log_text)]
    cuts: list[tuple[str, float, float]] = []
    if len(found) < len(spans):
        return cuts
    for (s, e), (total, copy, sync, check) in zip(spans, found, strict=False):
        t = max(s, e - total)
        cuts.append(("other", s, t))
        for name, took in (("copy", copy), ("sync", sync), ("check", check)):
            cuts.append((name, t, min(t + took, e)))
            t = min(t + took, e)
        cuts.append(("other", t, e))
    return cuts


ACCESS = re.compile(r'^\{"ts":"([^"]+)".*?"path":"/v1/chat/completions".*?"latency_ms":([\d.]+)')


def own_latencies(log_text: str, offset: float) -> list[tuple[float, float]]:
    """The gateway's own view of each chat request, from its access log (on by default):
    (when its middleware began it, on the monotonic clock; seconds to its last byte), sorted.
    ``offset``: ``time.time() - time.monotonic()``. This leaves out what the client and the
    kernel add before the gateway takes the request (and the answer's way back), so a delay
    in the load client shows in the client's figures only."""
    from datetime import datetime

    out = []
    for m in map(ACCESS.match, log_text.splitlines()):
        if m is None:
            continue
        end = datetime.fromisoformat(m.group(1)).timestamp() - offset
        took = float(m.group(2)) / 1000
        out.append((end - took, took))
    out.sort()
    return out


WINDOW = 5.0
QUIET = 10.0
"""``quiet_windows``: seconds per window, and the most other processes may take of the
gateway's core in one (percent) for it to count as quiet."""


def quiet_windows(
    cuts: list[tuple[str, int, float, float]],
    samples: list[Any],
    records: list[list[float]],
    own: list[tuple[float, float]],
    kinds: list[tuple[str, bool | None]],
) -> str:
    """The classes again over their quiet ``WINDOW``-second windows only (other processes
    took under ``QUIET`` % of the gateway's core): on a shared machine, the backup's own
    effect without the other users' (kernel work done for the backup on that core would
    count as theirs, which is why this is a second figure, not the verdict)."""
    due = [r[0] for r in records]
    found: dict[tuple[str, bool | None], tuple[int, int, list[float], list[float]]] = {}
    for kind, odd in kinds:
        kept = total = 0
        ms: list[float] = []
        mine: list[float] = []
        for c in cuts:
            if c[0] != kind or (odd is not None and c[1] % 2 != int(odd)):
                continue
            t = c[2]
            while t + WINDOW <= c[3]:
                total += 1
                if foreign(samples, [(t, t + WINDOW)]) < QUIET:
                    kept += 1
                    got = records[bisect.bisect_left(due, t) : bisect.bisect_left(due, t + WINDOW)]
                    ms += [r[2] * 1000 for r in got]
                    lo, hi = bisect.bisect_left(own, (t,)), bisect.bisect_left(own, (t + WINDOW,))
                    mine += [x[1] * 1000 for x in own[lo:hi]]
                t += WINDOW
        found[(kind, odd)] = (kept, total, ms, mine)

    def text(key: tuple[str, bool | None], label: str) -> str:
        kept, total, ms, mine = found[key]
        return (
            f"{label} {kept} of {total} windows, {len(ms):,} requests, p99 {bl.pct(ms, 99):.1f} ms "
            f"(the gateway's own {bl.pct(mine, 99):.1f} ms)"
        )

    w = found[("without", None)]
    parts = [text(("without", None), "no backup:")]
    for key in kinds:
        if key[0] == "during":
            d = found[key]
            label = {None: "while a backup runs:", True: "backups 1, 3, ...:",
                     False: "backups 2, 4, ... (gateway's core):"}[key[1]]  # fmt: skip
            ratio = bl.pct(d[2], 99) / bl.pct(w[2], 99) if d[2] and w[2] else float("nan")
            own_r = bl.pct(d[3], 99) / bl.pct(w[3], 99) if d[3] and w[3] else float("nan")
            parts.append(f"{text(key, label)}: p99 during / without {ratio:.2f}, own {own_r:.2f}")
    return (
        f"Quiet windows only ({WINDOW:g} s windows in which other processes took under "
        f"{QUIET:g} % of the gateway's core): " + "; ".join(parts) + "."
    )


def ticks_at(samples: list[Any], t: float, field: int = 1) -> int:
    """The gateway's CPU ticks (or another ``field`` of the samples) at the last sample not
    after ``t``."""
    i = bisect.bisect_right(samples, (t, 1 << 62)) - 1
    return int(samples[max(i, 0)][field])


def foreign(samples: list[Any], spans: list[tuple[float, float]]) -> float:
    """Percent of the wall time over ``spans`` that the gateway's core spent on work other
    than the gateway's and its backup's (other processes, this machine's other users)."""
    busy = wall = 0.0
    for t0, t1 in spans:
        d = [ticks_at(samples, t1, f) - ticks_at(samples, t0, f) for f in (1, 2, 3)]
        busy += d[1] - d[0] - d[2]
        wall += t1 - t0
    return 100 * max(busy, 0) / bl.CLK_TCK / wall if wall else float("nan")


def open_loop_run(a: argparse.Namespace, gw: bl.Server, key: str, tmp: Path) -> str:
    """The issue's case: a steady ``--rate`` through ``--pairs`` backups; the report's block."""
    url = gw.url + "/v1/chat/completions"
    out, client_log = tmp / "records.json", tmp / "client.log"
    bound = a.interval + a.pairs * (a.interval + LONGEST_BACKUP) + 60
    client = bl.start_open_loop(url, a.rate, bound, key=key, out=out, log=client_log)
    began = time.monotonic()
    offset = time.time() - began
    wal: list[tuple[float, int]] = []
    try:
        spans, samples = watch(a, gw, client, began, wal)
    finally:
        summary, records = bl.finish_open_loop(client, out, client_log)
    end = samples[-1][0]
    log(f"client: {json.dumps(summary)}")
    own = own_latencies(gw.log.read_text(errors="replace"), offset)
    if a.records:  # for a closer look afterwards: every request, the gateway's view, the backups
        a.records.write_text(
            json.dumps(
                {
                    "spans": spans,
                    "began": began,
                    "records": records,
                    "own": own,
                    "samples": samples,
                    "wal": wal,
                }
            )  # fmt: skip
        )
        log(f"records in {a.records}")
    cuts = classify(a, spans, began, end)
    by_cut: dict[int, list[list[float]]] = {i: [] for i in range(len(cuts))}
    for r in records:
        for i, (_, _, t0, t1) in enumerate(cuts):
            if t0 <= r[0] < t1:
                by_cut[i].append(r)
                break

    def picked(c: tuple[str, int, float, float], kind: str, odd: bool | None) -> bool:
        """Whether cut ``c`` is of ``kind`` (and, with ``odd`` set, of an odd-numbered backup
        or an even one: ``--alternate``)."""
        return c[0] == kind and (odd is None or c[1] % 2 == int(odd))

    def own_ms(kind: str, odd: bool | None = None) -> list[float]:
        """The gateway's own latencies (access log) of the requests it began in ``kind``."""
        return [
            took * 1000
            for c in cuts
            if picked(c, kind, odd)
            for _, took in own[bisect.bisect_left(own, (c[2],)) : bisect.bisect_left(own, (c[3],))]
        ]

    def rows(kind: str, number: int | None = None, odd: bool | None = None) -> list[list[float]]:
        return [
            r
            for i, c in enumerate(cuts)
            if picked(c, kind, odd) and (number is None or c[1] == number)
            for r in by_cut[i]
        ]

    def cpu(kind: str, odd: bool | None) -> str:
        ticks, n = 0, 0
        for i, c in enumerate(cuts):
            if picked(c, kind, odd):
                ticks += ticks_at(samples, c[3]) - ticks_at(samples, c[2])
                n += len(by_cut[i])
        return f"{ticks * 1e6 / bl.CLK_TCK / n:.0f}" if n else "-"

    def line(label: str, kind: str, odd: bool | None = None) -> tuple[str, float]:
        got = rows(kind, odd=odd)
        ms = [r[2] * 1000 for r in got]  # a failed request counts with its time to failure
        p99 = bl.pct(ms, 99)
        mine = own_ms(kind, odd)
        return (
            f"| {label} | {len(got):,} | {bl.pct(ms, 50):.1f} | {p99:.1f} | "
            f"{bl.pct(ms, 99.9):.1f} | {max(ms, default=float('nan')):.1f} | "
            f"{sum(1 for r in got if r[3] != 200)} | {cpu(kind, odd)} | "
            f"{bl.pct([r[1] * 1000 for r in got], 99):.1f} | "
            f"{bl.pct(mine, 50):.2f} / {bl.pct(mine, 99):.1f} | "
            f"{foreign(samples, [(c[2], c[3]) for c in cuts if picked(c, kind, odd)]):.0f} |",
            p99,
        )

    if a.alternate:
        where_odd = f"on CPUs {_cpus(a.backup_cpus)}"
        during_lines = []
        p99_alt: list[float] = []
        for odd, label in ((True, f"while a backup runs {where_odd} (backups 1, 3, ...)"),
                           (False, f"while a backup runs on the gateway's core {bl.SERVER_CPU} "
                                   "(backups 2, 4, ...)")):  # fmt: skip
            text, p99 = line(label, "during", odd)
            during_lines.append(text)
            p99_alt.append(p99)
        during = "\n".join(during_lines)
        p99_d = p99_alt[0]
    else:
        during, p99_d = line("while a backup runs", "during")
    after, _ = line(f"the {a.settle:g} s after it (the WAL folded back)", "after")
    without, p99_w = line("no backup", "without")
    own_w = bl.pct(own_ms("without"), 99)
    own_ratio = bl.pct(own_ms("during", True if a.alternate else None), 99) / own_w
    alt_line = (
        f"\nBackups on the gateway's core (2, 4, ...): p99 during / without "
        f"**{p99_alt[1] / p99_w:.2f}**, the gateway's own {bl.pct(own_ms('during', False), 99) / own_w:.2f}."
        if a.alternate
        else ""
    )
    pairs = []
    for k in range(1, len(spans) + 1):
        d = [r[2] * 1000 for r in rows("during", k)]
        w = [r[2] * 1000 for r in rows("without", k)]
        pairs.append(f"{bl.pct(d, 99):.1f} / {bl.pct(w, 99):.1f}")
    took = statistics.median(e - s for s, e in spans)
    by_phase: dict[str, list[float]] = {}
    phase_s: dict[str, float] = {}
    for name, t0, t1 in phase_cuts(gw.log.read_text(errors="replace"), spans):
        by_phase.setdefault(name, []).extend(r[2] * 1000 for r in records if t0 <= r[0] < t1)
        phase_s[name] = phase_s.get(name, 0.0) + (t1 - t0) / len(spans)
    phase_line = (
        "While a backup runs, by its phase (mean seconds; p99 ms over its requests): "
        + ", ".join(
            f"{name} {phase_s[name]:.1f} s: {bl.pct(ms, 99):.1f} ms ({len(ms):,})"
            for name in ("copy", "sync", "check", "other")
            if (ms := by_phase.get(name))
        )
        + "."
        if by_phase
        else ""
    )
    quiet_line = quiet_windows(
        cuts,
        samples,
        records,
        own,
        [("during", True if a.alternate else None), ("without", None)]
        + ([("during", False)] if a.alternate else []),
    )
    wal_max: dict[str, int] = {}
    for kind, _, t0, t1 in cuts:
        top = max((b for t, b in wal if t0 <= t < t1), default=0)
        wal_max[kind] = max(wal_max.get(kind, 0), top)
    wal_line = (
        "Largest WAL file (`llmgw.db-wal`, sampled every 20 ms): "
        f"{wal_max.get('during', 0) / 1e6:,.1f} MB while a backup runs, "
        f"{wal_max.get('after', 0) / 1e6:,.1f} MB in the {a.settle:g} s after, "
        f"{wal_max.get('without', 0) / 1e6:,.1f} MB without."
    )
    notes = []
    # the client's own lateness where no backup runs (a gateway stall makes it late too: the
    # answers come back in a burst; that is not the client's fault)
    lag = bl.pct([r[1] * 1000 for r in rows("without")], 99)
    if lag > 10 or summary["achieved_rps"] < 0.95 * a.rate:
        notes.append(
            f"**Not a measurement of the gateway**: the client could not keep {a.rate:g} req/s "
            f"(achieved {summary['achieved_rps']:g}, send lag p99 {lag:.1f} ms without a "
            "backup): core 0 was too busy."
        )
    warned = [
        line
        for line in gw.log.read_text(errors="replace").splitlines()
        if (" WARNING " in line or " ERROR " in line) and "model list" not in line
    ]
    if warned:
        notes.append(
            f"The gateway logged {len(warned)} warning(s) or error(s) (first: "
            f"`{warned[0].split(' ', 2)[-1][:400]}`)."
        )
    return "\n".join(
        [
            f"{run_head(tmp)} ({a.rows:,} usage rows before the run); open loop at {a.rate:g} req/s (`open_loop_client.py`, each "
            f"answer timed from when it was due; {summary['sent']:,} sent, send lag p99 "
            f"{summary['send_lag_p99_ms']:.1f} ms), gateway on core {bl.SERVER_CPU}, client and "
            f"nginx on core {bl.LOAD_CPU}; load average {os.getloadavg()[0]:.1f} at the end. "
            f"{len(spans)} backups of {took:.1f} s (median; copy at `[backup] pace` {a.pace:g} "
            f"MB/s, `{a.check}` check, rename), the backup process {where(a)}.",
            "",
            "| | requests | p50 ms | p99 ms | p99.9 ms | max ms | errors | gateway CPU µs/request "
            "| client send lag p99 ms | gateway's own p50 / p99 ms | other work on its core % |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            during,
            after,
            without,
            "",
            f"p99 during / without: **{p99_d / p99_w:.2f}** (target <= 1.10); the gateway's "
            f"own (access log: from when it began a request to its last byte) {own_ratio:.2f}. "
            f"Per backup, p99 during / without after it: {', '.join(pairs)} ms.",
            *([alt_line] if alt_line else []),
            f"\n{quiet_line}",
            *([f"\n{phase_line}"] if phase_line else []),
            f"\n{wal_line}",
            *(f"\n{n}" for n in notes),
        ]
    )


def steady_run(a: argparse.Namespace, gw: bl.Server, key: str, tmp: Path) -> str:
    """No backup at all: ``--steady`` seconds at ``--rate`` after the warm-up, cut into 20 s
    stretches, to see how much the baseline p99 moves on this machine by itself."""
    url = gw.url + "/v1/chat/completions"
    out, client_log = tmp / "records.json", tmp / "client.log"
    pid = gw.popen.pid
    client = bl.start_open_loop(
        url, a.rate, a.warmup + a.steady + 1, key=key, out=out, log=client_log
    )
    began = time.monotonic()
    offset = time.time() - began
    samples: list[Any] = []
    try:
        while client.poll() is None:
            samples.append((time.monotonic(), own_ticks(pid), core_busy(bl.SERVER_CPU), 0))
            gw.check_alive()
            time.sleep(0.2)
    finally:
        summary, records = bl.finish_open_loop(client, out, client_log)
    own = own_latencies(gw.log.read_text(errors="replace"), offset)
    stretch = 20.0
    lines = [
        f"{run_head(tmp)}; no backup, open loop at {a.rate:g} req/s for {a.steady:g} s after "
        f"a {a.warmup:g} s warm-up ({summary['sent']:,} sent); load average "
        f"{os.getloadavg()[0]:.1f} at the end.",
        "",
        "| stretch (s) | requests | p50 ms | p99 ms | max ms | errors | client send lag p99 ms "
        "| gateway's own p50 / p99 ms | gateway CPU µs/request | other work on its core % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    p99s = []
    t = began + a.warmup
    while t + stretch <= began + a.warmup + a.steady + 0.5:
        got = [r for r in records if t <= r[0] < t + stretch]
        ms = [r[2] * 1000 for r in got]
        mine = [
            x[1] * 1000
            for x in own[bisect.bisect_left(own, (t,)) : bisect.bisect_left(own, (t + stretch,))]
        ]
        ticks = ticks_at(samples, t + stretch) - ticks_at(samples, t)
        per = f"{ticks * 1e6 / bl.CLK_TCK / len(got):.0f}" if got else "-"
        p99s.append(bl.pct(ms, 99))
        lines.append(
            f"| {t - began - a.warmup:.0f}-{t + stretch - began - a.warmup:.0f} | {len(got):,} | "
            f"{bl.pct(ms, 50):.1f} | {p99s[-1]:.1f} | {max(ms, default=float('nan')):.1f} | "
            f"{sum(1 for r in got if r[3] != 200)} | {bl.pct([r[1] * 1000 for r in got], 99):.1f} | "
            f"{bl.pct(mine, 50):.2f} / {bl.pct(mine, 99):.1f} | {per} | "
            f"{foreign(samples, [(t, t + stretch)]):.0f} |"
        )
        t += stretch
    if p99s:
        lines += [
            "",
            f"p99 per stretch from {min(p99s):.1f} to {max(p99s):.1f} ms (highest / lowest "
            f"{max(p99s) / min(p99s):.2f}).",
        ]
    return "\n".join(lines)


# --- saturated (wrk, no rate limit) ------------------------------------------------------------


def saturated_run(a: argparse.Namespace, gw: bl.Server, key: str, tmp: Path) -> str:
    """wrk runs while a backup runs, right after it and ``--settle`` s later; the block."""
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
                raise SystemExit("no backup started; see " + str(gw.log))
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
    return "\n".join(
        [
            f"{run_head(tmp)} ({a.rows:,} usage rows), {len(during)} pair(s) of {a.seconds} s wrk runs at "
            f"c={a.connections} (saturated: no rate limit), gateway on core {bl.SERVER_CPU}, wrk "
            f"and nginx on core {bl.LOAD_CPU}; load average {os.getloadavg()[0]:.1f} at the end. "
            f"Backups took {statistics.median(backup_s):.1f} s (median; copy at `[backup] pace` "
            f"{a.pace:g} MB/s, `{a.check}` check, rename); the backup process "
            f"{where(a)}.",
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_200_000, help="usage rows (2.2M: about 1 GB)")
    ap.add_argument("--rate", type=float, default=500.0, help="open loop: requests per second")
    ap.add_argument("--saturate", action="store_true", help="wrk without a rate limit instead")
    ap.add_argument(
        "--steady",
        type=float,
        metavar="SECONDS",
        help="no backup: this long at --rate, p99 per 20 s stretch (how steady the machine is; prints only)",
    )
    ap.add_argument("--pairs", type=int, default=3, help="backups measured")
    ap.add_argument("--seconds", type=int, default=3, help="--saturate: per wrk run")
    ap.add_argument("--connections", type=int, default=10, help="--saturate: wrk connections")
    ap.add_argument("--interval", type=int, default=40, help="[backup] interval, seconds")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after a backup set apart")
    ap.add_argument("--warmup", type=float, default=5.0, help="open loop: seconds not counted")
    ap.add_argument("--cache", type=Path, default=Path("/tmp"), help="where generated DBs are kept")
    ap.add_argument("--pace", type=float, default=64.0, help="[backup] pace, MB/s (0: full speed)")
    ap.add_argument("--check", choices=["quick", "full"], default="quick", help="[backup] check")
    ap.add_argument(
        "--backup-cpus",
        help=f'[backup] cpus (default: unset, "auto": the gateway is on core {bl.SERVER_CPU}, so '
        f'the backup runs on core {bl.LOAD_CPU}); "{bl.SERVER_CPU}": the gateway\'s core (the worst case)',
    )
    ap.add_argument(
        "--alternate",
        action="store_true",
        help="backups 2, 4, ... moved to the gateway's core by this script (sched_setaffinity), "
        "the odd ones where [backup] cpus puts them: both placements in the same minutes",
    )
    ap.add_argument("--records", type=Path, help="open loop: save the requests and spans (JSON)")
    ap.add_argument("--quick", action="store_true", help="100k rows, pace 8 MB/s, 2 backups")
    ap.add_argument("--no-write", action="store_true", help="print only (no docs update)")
    a = ap.parse_args()
    a.seen = set()
    if a.quick:
        a.rows, a.pairs, a.no_write, a.interval, a.pace, a.settle = 100_000, 2, True, 15, 8.0, 3.0
        a.warmup = 3.0
    if a.interval <= a.settle + 1:
        raise SystemExit("--interval must leave time without a backup after --settle")
    os.sched_setaffinity(0, {bl.LOAD_CPU})  # the watcher stays off the gateway's core
    tmp = Path(tempfile.mkdtemp(prefix="llmgw-backupbench-"))
    servers: list[bl.Server] = []
    try:
        gw, key = setup(a, tmp, servers)
        run = steady_run if a.steady else saturated_run if a.saturate else open_loop_run
        block = run(a, gw, key, tmp)
        print(block)
        if (a.saturate or a.steady) and not a.no_write:
            log("--saturate and --steady print only: the doc's block holds the open-loop run")
        elif not a.no_write:
            bl.write_block(DOC, "bench_backup_load", block, section="## Backup under load")
    finally:
        for s in reversed(servers):
            s.stop(60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
