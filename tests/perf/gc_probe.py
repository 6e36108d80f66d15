"""Run a Python server with garbage-collector accounting (and optional GC tuning) for the benchmark.

    python tests/perf/gc_probe.py --out FILE [--freeze] [--threshold 10000,20,20] -- llmgw serve ...
    python tests/perf/gc_probe.py --out FILE -- tests/perf/passthrough.py --port N --upstream URL

Every SIGUSR1 appends one JSON line to FILE: collections and seconds spent collecting per
generation so far. The difference of two lines taken around a load run gives GC time per request.
``--freeze`` runs ``gc.collect(); gc.freeze()`` after importing the server's modules, before serving;
``--threshold`` sets ``gc.set_threshold``. Nothing else about the server changes.
"""

from __future__ import annotations

import argparse
import gc
import json
import runpy
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any


def main() -> None:
    """Parse the probe's own options, install the GC callback, then run the server in-process."""
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--freeze", action="store_true")
    p.add_argument("--threshold", default=None, help="gen0,gen1,gen2 thresholds")
    a = p.parse_args(argv[:split])
    cmd = argv[split + 1 :]
    if not cmd:
        p.error("give the server command after --")

    stats = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            s = stats[info["generation"]]
            s[0] += 1
            s[1] += time.thread_time() - started[0]  # CPU time of the collecting thread

    def snapshot(signum: int, frame: FrameType | None) -> None:
        line = {"t": time.monotonic(), "stats": stats, "objects": len(gc.get_objects())}
        with a.out.open("a") as f:
            f.write(json.dumps(line) + "\n")

    if a.freeze:
        if cmd[0] == "llmgw":  # import what the server holds for its lifetime, then freeze it
            import llmgw.cli.main
            import llmgw.server.app  # noqa: F401
        gc.collect()
        gc.freeze()
    if a.threshold:
        gc.set_threshold(*(int(x) for x in a.threshold.split(",")))
    gc.callbacks.append(on_gc)
    signal.signal(signal.SIGUSR1, snapshot)
    if cmd[0] == "llmgw":
        from llmgw.cli.main import main as llmgw_main

        llmgw_main(cmd[1:])
    else:
        sys.argv = cmd
        sys.path.insert(0, str(Path(cmd[0]).resolve().parent))
        runpy.run_path(cmd[0], run_name="__main__")


def gc_seconds(before: dict[str, Any], after: dict[str, Any]) -> tuple[float, list[int]]:
    """GC CPU seconds and collections per generation between two snapshot lines."""
    secs = sum(after["stats"][g][1] - before["stats"][g][1] for g in ("0", "1", "2"))
    counts = [after["stats"][g][0] - before["stats"][g][0] for g in ("0", "1", "2")]
    return secs, counts


if __name__ == "__main__":
    main()
