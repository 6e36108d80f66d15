"""Router overhead: what routing adds per request, and how fast an open circuit fails.

Run: ``python tests/perf/bench_router.py [--n 200000]``. In-process, one event loop, an upstream
that answers at once, so the numbers are the router's own cost (breaker, health, retry budget,
attempt bookkeeping) and nothing else. Results go to docs/performance.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any

from llmgw.config import RoutingSettings
from llmgw.errors import UpstreamError
from llmgw.routing.breaker import CircuitOpen
from llmgw.routing.router import build_router


@dataclass(frozen=True)
class Cand:
    provider: str
    model: str
    version: str | None = None


class Instant:
    """A provider that answers immediately (or fails, when ``fail`` is set)."""

    kind = "bench"

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.fail = fail

    async def chat(self) -> str:
        if self.fail:
            raise UpstreamError("down", provider=self.name)
        return "ok"


async def op(p: Any, c: Any) -> str:
    return await p.chat()  # type: ignore[no-any-return]


async def timed(n: int, fn: Any) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        await fn()
        out.append((time.perf_counter_ns() - t) / 1000.0)
    return out


def summary(name: str, us: list[float]) -> str:
    us.sort()
    p50, p99 = us[len(us) // 2], us[int(len(us) * 0.99)]
    return f"{name:<44} mean {statistics.fmean(us):6.2f} us  p50 {p50:6.2f} us  p99 {p99:6.2f} us"


async def main(n: int) -> None:
    providers: dict[str, Any] = {
        "a": Instant("a"),
        "b": Instant("b"),
        "dead": Instant("dead", True),
    }
    router = build_router(RoutingSettings(failure_threshold=1, cooldown=3600), providers)
    one, fallback, dead = [Cand("a", "m")], [Cand("dead", "m"), Cand("b", "m")], [Cand("dead", "m")]

    async def direct() -> None:
        await op(providers["a"], one[0])

    async def routed() -> None:
        await router.call(one, op)

    async def open_then_fallback() -> None:
        await router.call(fallback, op)

    async def fail_fast() -> None:
        with contextlib.suppress(CircuitOpen, UpstreamError):
            await router.call(dead, op)

    await fail_fast()  # opens the dead provider's circuit
    for fn in (direct, routed, open_then_fallback, fail_fast):  # warm up
        await timed(1000, fn)
    base = await timed(n, direct)
    print(summary("direct call (no router)", base))
    print(summary("router.call, one healthy candidate", await timed(n, routed)))
    print(summary("router.call, skip open circuit -> fallback", await timed(n, open_then_fallback)))
    print(summary("router.call, every circuit open (503)", await timed(n, fail_fast)))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200_000)
    asyncio.run(main(ap.parse_args().n))
