"""Streaming load client: N concurrent SSE chat completions at once; prints one JSON summary line.

Used by bench_gateway.py for time to first token (TTFT) and for the 1,000-stream run:
``python tests/perf/stream_client.py --url http://127.0.0.1:8080 --streams 100 [--key K]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp


def _pct(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100, nearest rank) of ``values``, or None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    start: asyncio.Event,
) -> tuple[str, float | None, float, int]:
    """One stream: (outcome, ttft seconds, total seconds, content chunks)."""
    await start.wait()
    t0 = time.perf_counter()
    ttft: float | None = None
    chunks = 0
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if resp.status != 200:
                await resp.read()
                return f"http_{resp.status}", None, time.perf_counter() - t0, 0
            done = False
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                event: dict[str, Any] = json.loads(data)
                if "error" in event:
                    return "sse_error", ttft, time.perf_counter() - t0, chunks
                for choice in event.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        chunks += 1
                        if ttft is None:
                            ttft = time.perf_counter() - t0
            outcome = "ok" if done and ttft is not None else "no_done" if not done else "no_content"
            return outcome, ttft, time.perf_counter() - t0, chunks
    except TimeoutError:
        return "timeout", ttft, time.perf_counter() - t0, chunks
    except aiohttp.ClientError as exc:
        return type(exc).__name__, ttft, time.perf_counter() - t0, chunks


async def run(
    url: str, streams: int, key: str | None, model: str, stream_timeout: float
) -> dict[str, Any]:
    """Start ``streams`` streams together and summarise outcomes, TTFT and total time in ms."""
    body = json.dumps(
        {
            "model": model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Say hello"}],
        }
    ).encode()
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    tmo = aiohttp.ClientTimeout(total=stream_timeout)
    start = asyncio.Event()
    async with aiohttp.ClientSession(connector=conn, timeout=tmo) as session:
        tasks = [
            asyncio.create_task(_one(session, url, body, headers, start)) for _ in range(streams)
        ]
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        start.set()
        results = await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    outcomes = Counter(r[0] for r in results)
    ttfts = [r[1] * 1000 for r in results if r[1] is not None]
    totals = [r[2] * 1000 for r in results if r[0] == "ok"]
    return {
        "streams": streams,
        "ok": outcomes.get("ok", 0),
        "errors": {k: v for k, v in outcomes.items() if k != "ok"},
        "chunks": sum(r[3] for r in results),
        "wall_s": round(wall, 3),
        "ttft_p50_ms": _pct(ttfts, 50),
        "ttft_p90_ms": _pct(ttfts, 90),
        "ttft_p99_ms": _pct(ttfts, 99),
        "ttft_max_ms": max(ttfts) if ttfts else None,
        "total_p50_ms": _pct(totals, 50),
        "total_p99_ms": _pct(totals, 99),
    }


def main() -> None:
    """Parse arguments, run, print ``BENCH_JSON {...}``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--key", default=None, help="bearer key (llmgw)")
    p.add_argument("--model", default="emu/gpt-4o-mini")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per stream")
    p.add_argument("--warmup", type=int, default=0, help="unmeasured rounds first (warm pools)")
    a = p.parse_args()
    url = a.url.rstrip("/") + "/v1/chat/completions"

    async def go() -> dict[str, Any]:
        for _ in range(a.warmup):
            await run(url, a.streams, a.key, a.model, a.timeout)
        return await run(url, a.streams, a.key, a.model, a.timeout)

    import uvloop

    print("BENCH_JSON " + json.dumps(uvloop.run(go())), flush=True)


if __name__ == "__main__":
    main()
