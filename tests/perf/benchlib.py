"""Process plumbing for the gateway benchmark: pinned servers, RSS, idle waits, wrk, the SSE
client and the open-loop (rate-limited) load."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOAD_CPU = 0  # wrk, the streaming client and the helper upstreams
SERVER_CPU = 1  # the server under test
CHAT_BODY = json.dumps(
    {"model": "bench/gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]},
    separators=(",", ":"),
)
# What nginx answers: a realistic non-streaming OpenAI chat completion with usage.
CANNED_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": 1763700000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! This is a canned answer from the benchmark upstream.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 19, "completion_tokens": 12, "total_tokens": 31},
        "system_fingerprint": "fp_bench",
    },
    separators=(",", ":"),
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(pid: int, cpu: int) -> None:
    """Move every thread of ``pid`` to ``cpu``."""
    subprocess.run(
        ["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True
    )


@dataclass(eq=False)  # identity: hashable, comparable by "is"
class Server:
    """A child process pinned to one CPU, with its log file."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path
    cpu: int
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    def _tree(self) -> list[int]:
        """This process and its descendants (uvicorn may fork workers)."""
        pids = [self.popen.pid]
        children: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    stat = Path(f"/proc/{d}/stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
        i = 0
        while i < len(pids):
            pids.extend(children.get(pids[i], []))
            i += 1
        return pids

    def rss_mb(self) -> float:
        """Resident set size (VmRSS) of the process tree in MiB."""
        total = 0
        for pid in self._tree():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def loop_ticks(self) -> int:
        """User + system clock ticks of the main thread (the event loop) of the top process."""
        f = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/stat").read_text()
        parts = f.rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])

    def cpu_ticks(self) -> int:
        """User + system clock ticks used so far by the process tree."""
        total = 0
        for pid in self._tree():
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(f[11]) + int(f[12])
        return total

    def wait_idle(self, max_wait: float = 15.0) -> None:
        """Wait until the server stops using CPU (e.g. the usage writer drained its queue)."""
        deadline = time.monotonic() + max_wait
        last = self.cpu_ticks()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = self.cpu_ticks()
            if now - last <= 2:
                return
            last = now

    def check_alive(self) -> None:
        """Raise with the log's tail when the process has exited."""
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        for f in self.files:
            f.close()
        return self.popen.returncode


def start(
    name: str,
    argv: list[str],
    *,
    port: int,
    cpu: int,
    log: Path,
    env: dict[str, str] | None = None,
    stdout: Path | None = None,
) -> Server:
    """Start ``argv`` pinned to ``cpu``; stderr (and stdout unless given) go to ``log``."""
    err = log.open("wb")
    out = stdout.open("wb") if stdout else err
    popen = subprocess.Popen(
        ["taskset", "-c", str(cpu), *argv],
        stdout=out,
        stderr=err,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
    )
    files: list[IO[bytes]] = [err]
    if stdout:
        files.append(out)
    return Server(name=name, port=port, popen=popen, log=log, cpu=cpu, files=files)


def wait_ready(server: Server, path: str | None = None, timeout: float = 60.0) -> None:
    """Wait until the port accepts connections and, if ``path`` is given, GET path answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        server.check_alive()
        try:
            if path is None:
                with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                    return
            else:
                with urllib.request.urlopen(server.url + path, timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s (see {server.log})")
        time.sleep(0.1)


def post_json(url: str, body: str, key: str | None = None) -> tuple[int, str]:
    """One POST; (status, body text). Used to check a server answers before loading it."""
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _bench_json(out: str, what: str) -> dict[str, Any]:
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
            return result
    raise RuntimeError(f"{what}: no BENCH_JSON line in output:\n{out[-2000:]}")


def wrk(
    url: str,
    connections: int,
    seconds: float,
    *,
    key: str | None = None,
    body: str = CHAT_BODY,
    during: Server | None = None,
) -> dict[str, Any]:
    """One bounded wrk run (one thread, pinned to the load CPU); RSS of ``during`` sampled at 80%."""
    env = dict(os.environ, BENCH_BODY=body, BENCH_KEY=key or "")
    seconds = max(1, round(seconds))  # wrk takes whole seconds
    argv = ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    argv += ["--timeout", "10s", "-s", str(HERE / "wrk_report.lua"), url]
    ticks0 = during.cpu_ticks() if during is not None else 0
    loop0 = during.loop_ticks() if during is not None else 0
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    rss: float | None = None
    if during is not None:
        try:
            proc.wait(seconds * 0.8)
        except subprocess.TimeoutExpired:
            rss = during.rss_mb()
    out, _ = proc.communicate(timeout=seconds + 60)
    ticks = during.cpu_ticks() - ticks0 if during is not None else 0
    loop = during.loop_ticks() - loop0 if during is not None else 0
    r = _bench_json(out.decode(errors="replace"), "wrk")
    # Server CPU time per answered request: unlike req/s, other tenants of the machine barely move it.
    n = r["requests"]
    r["cpu_us_per_req"] = ticks * 1e6 / CLK_TCK / n if during and n else None
    r["loop_us_per_req"] = loop * 1e6 / CLK_TCK / n if during and n else None
    secs = r["duration_us"] / 1e6
    r["rps"] = r["requests"] / secs if secs else 0.0
    r["errors"] = sum(
        r[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    r["rss_mb"] = rss if rss is not None else (during.rss_mb() if during else None)
    return r


def stream_run(
    url: str, streams: int, *, key: str | None, model: str, warmup: int = 1, timeout: float = 180.0
) -> dict[str, Any]:
    """Run stream_client.py pinned to the load CPU; its JSON summary."""
    argv = ["taskset", "-c", str(LOAD_CPU), PYTHON, str(HERE / "stream_client.py"), "--url", url]
    argv += ["--streams", str(streams), "--model", model, "--warmup", str(warmup)]
    argv += ["--timeout", str(timeout)] + (["--key", key] if key else [])
    proc = subprocess.run(
        argv, capture_output=True, timeout=timeout * (warmup + 1) + 60, check=False
    )
    return _bench_json(proc.stdout.decode() + proc.stderr.decode(errors="replace"), "stream_client")


async def open_loop(
    send: Callable[[int], Awaitable[Any]],
    count: int,
    rate: float,
    *,
    stop: asyncio.Event | None = None,
) -> list[tuple[float, float, float, Any]]:
    """Open-loop load, as wrk2 does: ``send(i)`` for ``i < count``, each due at a fixed time
    (``rate`` per second) whatever the answers before it, so a slow answer does not slow the
    sending (no coordinated omission). Ends early when ``stop`` is set (the requests already sent
    are awaited).

    Returns one ``(due, lag, latency, result)`` per request sent: ``due`` on ``time.monotonic()``
    (system-wide on Linux: another process can place it on its own timeline), ``lag`` how late the
    client sent it, ``latency`` from ``due`` to the answer (so a late send counts against it)."""
    records: list[tuple[float, float, float, Any]] = []
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int, due: float) -> None:
        lag = time.monotonic() - due
        result = await send(i)
        records.append((due, lag, time.monotonic() - due, result))

    start = time.monotonic() + 0.1
    for i in range(count):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if stop is not None and stop.is_set():
            break
        task = asyncio.create_task(one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    return records


def pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` (sorted here; nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def start_open_loop(
    url: str, rate: float, seconds: float, *, key: str | None, out: Path, log: Path
) -> subprocess.Popen[bytes]:
    """``open_loop_client.py`` pinned to the load CPU: ``rate`` chat requests/s to ``url`` for at
    most ``seconds`` (SIGTERM ends it sooner); per-request records into ``out``."""
    argv = ["taskset", "-c", str(LOAD_CPU), PYTHON, str(HERE / "open_loop_client.py"), "--url", url]
    argv += ["--rate", str(rate), "--seconds", str(seconds), "--out", str(out)]
    argv += ["--key", key] if key else []
    with log.open("wb") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)


def finish_open_loop(
    proc: subprocess.Popen[bytes], out: Path, log: Path, timeout: float = 60.0
) -> tuple[dict[str, Any], list[list[float]]]:
    """Stop the client (SIGTERM: no new sends; answers in flight are awaited); its summary and
    its records ``[due, lag, latency, status]`` (status 0: no answer)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"the open-loop client did not stop (see {log})") from None
    summary = _bench_json(log.read_text(errors="replace"), "open_loop_client")
    records: list[list[float]] = json.loads(out.read_text())
    return summary, records


def foreign_load() -> set[str]:
    """Other load generators or benchmarks running now that are not this process's descendants."""
    parent: dict[int, int] = {}
    names: dict[int, str] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
            parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        for a in argv[:3]:
            name = Path(a.decode(errors="replace")).name
            if name == "wrk" or (name.startswith("bench_") and name.endswith(".py")):
                names[int(d)] = name
                break
    me, found = os.getpid(), set()
    for pid, name in names.items():
        p = pid
        while p > 1 and p != me:
            p = parent.get(p, 1)
        if p != me:
            found.add(name)
    return found


def git_rev(rev: str = "HEAD") -> str:
    """Short hash and subject of ``rev``."""
    argv = ["git", "log", "-1", "--format=%h %s", rev, "--"]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def snapshot(tmp: Path, rev: str = "HEAD", name: str | None = None) -> tuple[Path, str]:
    """``rev`` exported with ``git archive`` into ``tmp/name`` (default ``head`` or ``rev-<rev>``);
    returns (its src dir, the revision).

    The package-dir mapping of pyproject.toml (server/, migrations/, tui/ inside ``llmgw``) is
    recreated with symlinks, so ``PYTHONPATH=<src>`` imports the snapshot, not the editable install.
    """
    if name is None:
        name = "head" if rev == "HEAD" else "rev-" + rev.replace("/", "_").replace("~", "_")
    dest = tmp / name
    dest.mkdir()
    argv = ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"]
    sha = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", sha], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    for sub in ("server", "migrations", "tui"):
        if (dest / sub).is_dir():
            (dest / "src" / "llmgw" / sub).symlink_to(dest / sub)
    return dest / "src", git_rev(sha)


def write_block(path: Path, name: str, block: str, *, section: str) -> None:
    """Replace the text between ``<!-- name:begin ... -->`` and ``<!-- name:end -->`` in ``path``.

    Without the markers, ``section`` (a heading) and the block are appended at the end.
    """
    begin = (
        f"<!-- {name}:begin (generated by tests/perf/{name}.py; edits inside are overwritten) -->"
    )
    end = f"<!-- {name}:end -->"
    text = path.read_text()
    new = f"{begin}\n{block}\n{end}"
    if begin.split(" (")[0] in text and end in text:
        head, rest = text.split(begin.split(" (")[0], 1)
        text = head + new + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{new}\n"
    path.write_text(text)


FACT_PACKAGES = (
    "llmgw",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "aiohttp",
    "orjson",
    "pydantic",
)
"""Packages whose versions a report names."""


def machine_facts() -> dict[str, str]:
    """CPU, kernel, Python and tool versions for the report."""
    facts: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            facts["cpu"] = line.split(":", 1)[1].strip()
            break
    facts["cores"] = str(os.cpu_count())
    facts["kernel"] = os.uname().release
    facts["python"] = sys.version.split()[0]

    def cmd(argv: list[str]) -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            return "-"
        return (
            (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr).strip() else "?"
        )

    facts["nginx"] = cmd(["nginx", "-v"]).split("/")[-1]
    facts["wrk"] = (cmd(["wrk", "-v"]).split() + ["-", "-"])[1]
    from importlib.metadata import PackageNotFoundError, version

    for pkg in FACT_PACKAGES:
        try:
            facts[pkg] = version(pkg)
        except PackageNotFoundError:
            facts[pkg] = "-"
    return facts


def report_main(
    argv: list[str] | None,
    parse_args: Callable[[list[str] | None], Any],
    run: Callable[[Any], dict[str, Any]],
    report: Callable[[dict[str, Any]], str],
) -> int:
    """A report-only benchmark's ``main``: parse, run, print the Markdown report and, with
    ``--json PATH``, save the raw numbers there."""
    args = parse_args(argv)
    r = run(args)
    print(report(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0
