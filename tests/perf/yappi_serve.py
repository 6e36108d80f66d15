"""Run ``llmgw`` under yappi (CPU clock, every thread) and write its profile when it exits.

    python tests/perf/yappi_serve.py OUT.txt -- --config C serve --port P

py-spy is not available here and cProfile sees only the main thread, while the alert store runs
in ``asyncio.to_thread`` workers; yappi follows every thread. On exit (SIGTERM makes ``llmgw
serve`` drain and return) it writes the functions by total and by own CPU time to ``OUT.txt``
and a pstats file to ``OUT.txt.pstats``. ``pip install yappi`` (not in any dependency group:
a profiling aid only). Used by ``bench_alerts.py --profile``.
"""

from __future__ import annotations

import importlib
import io
import sys
from typing import Any


def main() -> int:
    """Profile ``llmgw`` with the arguments after ``--``."""
    yappi: Any = importlib.import_module("yappi")  # a profiling aid: in no dependency group

    out, rest = sys.argv[1], sys.argv[sys.argv.index("--") + 1 :]
    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)
    from llmgw.cli import main as llmgw_main

    sys.argv = ["llmgw", *rest]
    code = 0
    try:
        llmgw_main()
    except SystemExit as exc:
        code = int(exc.code or 0) if isinstance(exc.code, int) else 1
    finally:
        yappi.stop()
        stats = yappi.get_func_stats()
        stats.save(out + ".pstats", type="pstat")
        buf = io.StringIO()
        for key in ("ttot", "tsub"):
            stats.sort(key, "desc")
            buf.write(f"== by {key} ==\n")
            stats.print_all(
                out=buf,
                columns={0: ("name", 100), 1: ("ncall", 10), 2: ("tsub", 8), 3: ("ttot", 8)},
            )
        threads = io.StringIO()
        yappi.get_thread_stats().print_all(out=threads)
        with open(out, "w") as f:
            f.write(threads.getvalue() + "\n" + buf.getvalue())
    return code


if __name__ == "__main__":
    sys.exit(main())
