"""What the GigaChat and YandexGPT adapters add per request, against their emulators.

    python tests/perf/bench_russian_adapters.py [--requests 2000] [--concurrency 16]

Each emulator runs in its own process (``llmgw emulate ...``). The same requests go to it twice:
raw (aiohttp with a ready token and a body already in the provider's format), then through the
adapter (OpenAI request -> translation -> Transport -> translation back). The difference is the
adapter's cost. A pure-CPU section times the translations alone. Bounded: a few thousand requests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import timeit
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from llmgw.config import ProviderConfig
from llmgw.emulators import gigachat as giga_emu
from llmgw.emulators import yandexgpt as yc_emu
from llmgw.providers.base import CallContext
from llmgw.providers.gigachat import GigaChatProvider
from llmgw.providers.gigachat_wire import StreamState, chat_body, chat_response
from llmgw.providers.yandexgpt import YandexGPTProvider
from llmgw.providers.yandexgpt_wire import CumulativeText, completion_body, completion_response
from llmgw.schemas import ChatRequest

MESSAGES = [{"role": "system", "content": "Answer briefly."}] + [
    {
        "role": "user" if i % 2 == 0 else "assistant",
        "content": f"message number {i} with some words in it",
    }
    for i in range(9)
]


def start(kind: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmgw", "emulate", kind, "--port", "0", "--max-concurrency", "256"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            return proc, line.split("listening on", 1)[1].strip()
    raise RuntimeError(f"{kind} emulator did not start")


async def measure(call: Callable[[], Awaitable[Any]], n: int, concurrency: int) -> dict[str, float]:
    lat: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            t = time.perf_counter()
            await call()
            lat.append((time.perf_counter() - t) * 1000)

    for _ in range(min(200, n)):  # warm-up: connections, token, caches
        await call()
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "p50": statistics.median(lat),
        "p99": lat[int(len(lat) * 0.99) - 1],
        "rps": n / wall,
    }


async def bench_gigachat(url: str, n: int, c: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{url}/api/v2/oauth",
            headers={
                "Authorization": f"Basic {giga_emu.DEFAULT_CREDENTIALS}",
                "RqUID": str(uuid.uuid4()),
            },
            data={"scope": "GIGACHAT_API_B2B"},
        ) as r:
            token = (await r.json())["access_token"]
        body = {"model": "GigaChat-2", "messages": MESSAGES}
        headers = {"Authorization": f"Bearer {token}"}

        async def raw() -> None:
            async with s.post(f"{url}/api/v1/chat/completions", json=body, headers=headers) as r:
                await r.read()

        async def raw_stream() -> None:
            async with s.post(
                f"{url}/api/v1/chat/completions", json=body | {"stream": True}, headers=headers
            ) as r:
                async for _ in r.content:
                    pass

        out["raw json"] = await measure(raw, n, c)
        out["raw stream"] = await measure(raw_stream, n, c)
    config = ProviderConfig(
        name="giga", kind="gigachat", base_url=f"{url}/api/v1", auth_url=f"{url}/api/v2/oauth",
        scope="GIGACHAT_API_B2B", max_concurrency=256,
    )  # fmt: skip
    p = GigaChatProvider(config, giga_emu.DEFAULT_CREDENTIALS)
    req = ChatRequest.model_validate({"model": "giga/GigaChat-2", "messages": MESSAGES})
    sreq = req.model_copy(update={"stream": True})
    ctx = CallContext(request_id="bench", model="GigaChat-2")

    async def adapter_stream() -> None:
        async for _ in p.chat_stream(sreq, ctx):
            pass

    try:
        out["adapter json"] = await measure(lambda: p.chat(req, ctx), n, c)
        out["adapter stream"] = await measure(adapter_stream, n, c)
    finally:
        await p.aclose()
    return out


async def bench_yandex(url: str, n: int, c: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    uri = f"gpt://{yc_emu.DEFAULT_FOLDER}/yandexgpt-lite/latest"
    native = [{"role": m["role"], "text": m["content"]} for m in MESSAGES]
    body = {"modelUri": uri, "completionOptions": {"stream": False}, "messages": native}
    headers = {"Authorization": f"Api-Key {yc_emu.DEFAULT_API_KEY}"}
    async with aiohttp.ClientSession() as s:

        async def raw() -> None:
            async with s.post(
                f"{url}/foundationModels/v1/completion", json=body, headers=headers
            ) as r:
                await r.read()

        out["raw json"] = await measure(raw, n, c)
    config = ProviderConfig(
        name="yc",
        kind="yandexgpt",
        base_url=url,
        folder_id=yc_emu.DEFAULT_FOLDER,
        max_concurrency=256,
    )
    p = YandexGPTProvider(config, yc_emu.DEFAULT_API_KEY)
    req = ChatRequest.model_validate({"model": "yc/yandexgpt-lite", "messages": MESSAGES})
    ctx = CallContext(request_id="bench", model="yandexgpt-lite")
    try:
        out["adapter json"] = await measure(lambda: p.chat(req, ctx), n, c)
    finally:
        await p.aclose()
    return out


def cpu_only() -> dict[str, float]:
    """Microseconds per call of the pure translations."""
    req = ChatRequest.model_validate({"model": "giga/GigaChat-2", "messages": MESSAGES})
    reply = {
        "choices": [{"message": {"role": "assistant", "content": "x" * 400}, "index": 0, "finish_reason": "stop"}],
        "created": 1, "model": "GigaChat-2:2.0.28.2", "object": "chat.completion",
        "usage": {"prompt_tokens": 100, "completion_tokens": 100, "total_tokens": 200, "precached_prompt_tokens": 0},
    }  # fmt: skip
    chunk = {
        "choices": [{"delta": {"content": "three words here "}, "index": 0}],
        "created": 1,
        "model": "GigaChat-2:2",
    }
    yreply = {"alternatives": [{"message": {"role": "assistant", "text": "x" * 400}, "status": "ALTERNATIVE_STATUS_FINAL"}],
              "usage": {"inputTextTokens": "100", "completionTokens": "100", "totalTokens": "200"}, "modelVersion": "1"}  # fmt: skip
    n = 20000
    st = StreamState()
    text = "word " * 200

    def cumulative() -> None:
        ct = CumulativeText()
        for i in range(5, len(text), 15):
            ct.feed(text[:i])

    return {
        "gigachat request (10 messages)": timeit.timeit(
            lambda: chat_body(req, "GigaChat-2"), number=n
        )
        / n
        * 1e6,
        "gigachat response": timeit.timeit(lambda: chat_response(reply), number=n) / n * 1e6,
        "gigachat stream chunk": timeit.timeit(lambda: st.convert(chunk), number=n) / n * 1e6,
        "yandex request (10 messages)": timeit.timeit(
            lambda: completion_body(req, "gpt://f/m/latest"), number=n
        )
        / n
        * 1e6,
        "yandex response": timeit.timeit(
            lambda: completion_response(yreply, "gpt://f/m/latest"), number=n
        )
        / n
        * 1e6,
        "yandex 66-snapshot stream (per snapshot)": timeit.timeit(cumulative, number=n // 100)
        / (n // 100)
        / 66
        * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    print("CPU only, microseconds per call:")
    for k, v in cpu_only().items():
        print(f"  {k:44s} {v:8.1f}")
    for kind, bench in (("gigachat", bench_gigachat), ("yandexgpt", bench_yandex)):
        proc, url = start(kind)
        try:
            for conc in (1, args.concurrency):
                res = asyncio.run(bench(url, args.requests, conc))
                print(f"{kind}, {args.requests} requests, concurrency {conc}:")
                for case, st in res.items():
                    print(
                        f"  {case:16s} p50 {st['p50']:6.2f} ms  p99 {st['p99']:6.2f} ms  {st['rps']:7.0f} req/s"
                    )
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
