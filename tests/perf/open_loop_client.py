"""Open-loop chat load at a fixed rate (what wrk2 does; Debian has no wrk2): one POST of a chat
completion every 1/rate seconds whatever the answers before it, each answer's time counted from
when it was due (no coordinated omission). Bounded: at most ``--rate x --seconds`` requests, each
with ``--timeout``; SIGTERM stops the sending early and waits for the answers in flight.

    python tests/perf/open_loop_client.py --url http://127.0.0.1:8080/v1/chat/completions \\
        --rate 500 --seconds 60 --key sk-... --out records.json

Writes ``[due, lag, latency, status]`` per request into ``--out`` (``due`` on the system-wide
monotonic clock, so the caller can place each request on its own timeline; status 0: no answer)
and prints ``BENCH_JSON {...}``, a summary. Run it pinned to the load core (``benchlib``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import CHAT_BODY, open_loop, pct  # noqa: E402


async def run(a: argparse.Namespace) -> tuple[dict[str, Any], list[list[float]]]:
    """Send and record; a summary and the records."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    headers = {"content-type": "application/json"}
    if a.key:
        headers["authorization"] = f"Bearer {a.key}"
    body = CHAT_BODY.encode()
    conn = aiohttp.TCPConnector(limit=a.connections)
    tmo = aiohttp.ClientTimeout(total=a.timeout)
    async with aiohttp.ClientSession(connector=conn, timeout=tmo) as session:

        async def send(_i: int) -> int:
            try:
                async with session.post(a.url, data=body, headers=headers) as resp:
                    await resp.read()
                    return int(resp.status)
            except (TimeoutError, aiohttp.ClientError):
                return 0

        t0 = time.monotonic()
        records = await open_loop(send, int(a.rate * a.seconds), a.rate, stop=stop)
        wall = time.monotonic() - t0
    records.sort()
    ok = sum(1 for r in records if r[3] == 200)
    ms = [r[2] * 1000 for r in records]  # a failed request counts with its time to failure
    summary = {
        "rate": a.rate,
        "sent": len(records),
        "ok": ok,
        "errors": len(records) - ok,
        "achieved_rps": round(len(records) / wall, 1) if wall else 0.0,
        "p50_ms": round(pct(ms, 50), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else None,
        "send_lag_p99_ms": round(pct([r[1] * 1000 for r in records], 99), 2),
    }
    return summary, [[d, lag, lat, st] for d, lag, lat, st in records]


def main() -> None:
    """Parse arguments, run, print ``BENCH_JSON {...}``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="the full URL to POST a chat completion to")
    p.add_argument("--rate", type=float, default=500.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=60.0, help="longest run (SIGTERM: sooner)")
    p.add_argument("--key", default=None, help="bearer key")
    p.add_argument("--connections", type=int, default=256, help="most connections open at once")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--out", required=True, help="file for the per-request records (JSON)")
    a = p.parse_args()
    import uvloop

    summary, records = uvloop.run(run(a))
    Path(a.out).write_text(json.dumps(records))
    print("BENCH_JSON " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
