"""Where llmgw's time goes: py-spy samples of a server under wrk load, summarised by function and area.

Used by ``bench_gateway.py --profile``; also runs on its own against a saved py-spy raw file:
``python tests/perf/bench_profile.py FILE.raw``. py-spy: ``pip install py-spy`` (group ``perf``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")

# Areas of the request path, by file path fragment; first match wins (most specific first).
AREAS: tuple[tuple[str, str], ...] = (
    ("llmgw/usage/", "llmgw usage recorder"),
    ("server/auth", "llmgw auth"),
    ("llmgw/auth/", "llmgw auth"),
    ("server/metrics", "llmgw metrics"),
    ("prometheus_client/", "prometheus_client"),
    ("server/middleware", "llmgw middleware (access log, request id)"),
    ("server/", "llmgw server (routes, streaming)"),
    ("llmgw/routing/", "llmgw routing"),
    ("llmgw/providers/", "llmgw provider + transport"),
    ("llmgw/schemas/", "llmgw schemas"),
    ("llmgw/", "llmgw other"),
    ("pydantic", "pydantic validation"),
    ("logging/", "logging (stdlib)"),
    ("json/", "json (stdlib)"),
    ("sqlalchemy/", "sqlalchemy"),
    ("aiohttp/", "aiohttp client"),
    ("multidict/", "aiohttp client"),
    ("yarl/", "aiohttp client"),
    ("starlette/", "starlette"),
    ("uvicorn/", "uvicorn + httptools"),
    ("asyncio/", "asyncio (stdlib)"),
)


def area_of(file: str) -> str:
    """The area a source file belongs to."""
    for fragment, name in AREAS:
        if fragment in file:
            return name
    return "other"


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Top functions by self and inclusive samples, and self samples per area, from collapsed stacks."""
    self_fn: Counter[str] = Counter()
    self_line: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    incl_area: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        total += n
        frames = []
        for f in stack.split(";"):
            m = _FRAME.match(f)
            frames.append((m["func"], m["file"]) if m else (f, ""))
        last = _FRAME.match(stack.rsplit(";", 1)[-1])
        if last:
            self_line[f"{last['func']} ({last['file']}:{last['line']})"] += n
        func, file = frames[-1]
        self_fn[f"{func} ({file})"] += n
        areas[area_of(file)] += n
        for name in {f"{fn} ({fl})" for fn, fl in frames}:
            incl_fn[name] += n
        for a in {area_of(fl) for _, fl in frames}:
            incl_area[a] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    return {
        "samples": total,
        "self_by_area": pct(areas),
        "inclusive_by_area": pct(incl_area),
        "top_self": pct(self_fn),
        "top_self_lines": pct(self_line),
        "top_inclusive_llmgw": [
            (k, round(100 * v / total, 1))
            for k, v in incl_fn.most_common()
            if ("llmgw/" in k or "server/" in k) and total
        ][:top],
    }


def record(pid: int, seconds: int, out: Path) -> Path | None:
    """py-spy record of ``pid`` for ``seconds`` (250 Hz, the GIL holder only); None without py-spy."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        return None
    argv = [exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
    argv += ["--gil", "--format", "raw", "--output", str(out)]
    subprocess.run(argv, capture_output=True, timeout=seconds + 60, check=False)
    return out if out.exists() else None


def render(summary: dict[str, Any]) -> str:
    """Markdown tables for the report; µs per request when the run's CPU per request is known."""
    cpu = summary.get("cpu_us_per_req")

    def us(pct: float) -> str:
        return f" | {pct * cpu / 100:.0f}" if cpu else ""

    head = " | µs/req" if cpu else ""
    sep = "---:|" if cpu else ""
    lines = [
        f"{summary['samples']} samples of the thread holding the GIL (py-spy --gil, 250 Hz);"
        f" {summary.get('rps_while_profiled', 0):,} req/s while sampled"
        + (f", {cpu:.0f} µs of CPU per request." if cpu else "."),
        "",
    ]
    lines += [f"| area | self %{head} | inclusive % |", f"|---|---:|{sep}---:|"]
    incl = dict(summary["inclusive_by_area"])
    lines += [f"| {a} | {p}{us(p)} | {incl.get(a, '-')} |" for a, p in summary["self_by_area"]]
    lines += ["", f"| top functions by self time | %{head} |", f"|---|---:|{sep}"]
    lines += [f"| `{f}` | {p}{us(p)} |" for f, p in summary["top_self"]]
    if summary["top_inclusive_llmgw"]:
        lines += ["", f"| llmgw functions, inclusive | %{head} |", f"|---|---:|{sep}"]
        lines += [f"| `{f}` | {p}{us(p)} |" for f, p in summary["top_inclusive_llmgw"]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(summarize(Path(sys.argv[1]))))
