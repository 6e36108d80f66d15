"""The gateway's own work per chat request, two revisions side by side (no network, no uvicorn).

    python tests/perf/bench_pipeline.py --baseline main~3            # HEAD vs main~3
    python tests/perf/bench_pipeline.py --rev pipeline --baseline 924b31a --requests 20000

Each revision runs from a ``git archive`` snapshot in its own process with its own home, SQLite
database and API key. A worker builds the real app (``create_app``), runs its lifespan, replaces
the provider's ``chat`` by one returning a canned answer, and calls the ASGI app directly for
``POST /v1/chat/completions`` ``--requests`` times (after a warm-up), with the GC thresholds
``llmgw serve`` uses. It reports CPU µs per request of the process (usage writer thread
included) and of the event-loop thread alone. Rounds alternate between the revisions; the
report gives each round and the median, so a noisy machine shows as spread, not as a verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib as bl

CONFIG = """\
[server]
access_log = false

[[providers]]
name = "bench"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "LLMGW_BENCH_UPSTREAM_KEY"
models = ["gpt-4o-mini"]
"""
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


async def _work(requests: int, warmup: int) -> dict[str, float]:
    import gc

    from llmgw.config import load_settings
    from llmgw.providers.base import ChatResponse, Usage
    from llmgw.server import create_app
    from llmgw.server.app import gateway_of

    settings = load_settings(Path(os.environ["LLMGW_CONFIG"]), {}).settings
    app = create_app(settings)
    answer = json.loads(bl.CANNED_COMPLETION)
    usage = Usage(prompt_tokens=9, completion_tokens=12, total_tokens=21)

    async def chat(req: Any, ctx: Any) -> ChatResponse:
        return ChatResponse(body=answer, usage=usage, model="gpt-4o-mini")

    body = BODY.encode()
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", b"Bearer " + os.environ["BENCH_KEY"].encode()),
    ]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }

    async with app.router.lifespan_context(app):
        gateway_of(app).providers["bench"].chat = chat  # type: ignore[method-assign, assignment]
        gc.set_threshold(10_000, 20, 20)  # as `llmgw serve` runs
        for _ in range(warmup):
            await app(scope(), receive, send)  # type: ignore[arg-type]
        cpu, loop = time.process_time(), time.thread_time()
        for _ in range(requests):
            await app(scope(), receive, send)  # type: ignore[arg-type]
        cpu, loop = time.process_time() - cpu, time.thread_time() - loop
    bad = [s for s in statuses if s != 200]
    if bad:
        raise SystemExit(f"{len(bad)} answers were not 200 (first {bad[0]})")
    return {"cpu_us": cpu * 1e6 / requests, "loop_us": loop * 1e6 / requests}


def _prepare(tmp: Path, name: str, rev: str) -> dict[str, str]:
    src, described = bl.snapshot(tmp, rev, name)
    home = tmp / f"{name}-home"
    config = tmp / f"{name}.toml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    env.update(
        LLMGW_HOME=str(home),
        LLMGW_CONFIG=str(config),
        LLMGW_BENCH_UPSTREAM_KEY="sk-bench",
        PYTHONPATH=f"{src}{os.pathsep}{bl.HERE}",
        BENCH_REV=described,
    )
    argv = [bl.PYTHON, "-P", "-m", "llmgw", "keys", "create", "--name", "bench", "--json"]
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180, check=False)
    m = re.search(r"llmgw_[A-Za-z0-9_-]{43}", p.stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"keys create at {rev} failed: {p.stderr.strip()[-400:]}")
    env["BENCH_KEY"] = m.group(0)
    return env


def main(argv: list[str] | None = None) -> int:
    """Alternate worker processes of the two revisions; print each round and the medians."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", default="HEAD", help="the revision under test (default HEAD)")
    p.add_argument("--baseline", help="the revision to compare against (required)")
    p.add_argument("--requests", type=int, default=10_000, help="measured requests per round")
    p.add_argument("--warmup", type=int, default=1_000, help="requests before measuring")
    p.add_argument("--rounds", type=int, default=5, help="rounds per revision, alternating")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(asyncio.run(_work(a.requests, a.warmup))))
        return 0
    if not a.baseline:
        p.error("--baseline REV is required")
    with tempfile.TemporaryDirectory(prefix="llmgw-pipeline-") as t:
        tmp = Path(t)
        envs = {
            "rev": _prepare(tmp, "rev", a.rev),
            "baseline": _prepare(tmp, "baseline", a.baseline),
        }
        rows: dict[str, list[dict[str, float]]] = {"rev": [], "baseline": []}
        for rnd in range(a.rounds):
            for label in ("rev", "baseline") if rnd % 2 == 0 else ("baseline", "rev"):
                cmd = [bl.PYTHON, "-P", str(Path(__file__).resolve()), "--worker"]
                cmd += ["--requests", str(a.requests), "--warmup", str(a.warmup)]
                out = subprocess.run(
                    cmd, env=envs[label], capture_output=True, text=True, timeout=600, check=False
                )
                if out.returncode != 0:
                    raise RuntimeError(f"{label} worker failed: {out.stderr.strip()[-600:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows[label].append(r)
                print(
                    f"round {rnd + 1} {label:8s} CPU {r['cpu_us']:6.1f} µs/request"
                    f" (event loop {r['loop_us']:6.1f})",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"load average {os.getloadavg()[0]:.1f}; {a.requests} requests per round")
    for label in ("rev", "baseline"):
        cpu = statistics.median(r["cpu_us"] for r in rows[label])
        loop = statistics.median(r["loop_us"] for r in rows[label])
        print(
            f"{label:8s} {envs[label]['BENCH_REV'][:60]:60s} median CPU {cpu:6.1f} µs/request,"
            f" event loop {loop:6.1f}"
        )
    ratio = statistics.median(
        r["loop_us"] / b["loop_us"] for r, b in zip(rows["rev"], rows["baseline"], strict=True)
    )
    print(f"event-loop CPU of rev / baseline, median of rounds: {100 * ratio:.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
