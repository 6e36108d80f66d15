"""Byte-compile only the modules ``llmgw serve`` loads, for the image (deploy/Dockerfile).

pip would compile every module of every dependency (51 MB of ``.pyc`` files, most never imported
by the server). Run in the build stage with the venv's Python: it removes every ``__pycache__``
under the venv, starts ``llmgw serve`` on a free loopback port with an empty ``LLMGW_HOME`` (so
the schema migrations run too), waits for ``/readyz``, asks ``/healthz``, ``/metrics`` and
``/v1/models``, stops it with SIGTERM, and recompiles what that run imported as unchecked-hash
``.pyc`` files: the read-only image never stats a source to validate them, and nothing else is
compiled (a module imported later, such as the TUI's, compiles in memory on each start).

    /opt/llmgw/bin/python deploy/precompile.py /opt/llmgw
"""

from __future__ import annotations

import os
import py_compile
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback, our server)
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def _run_server(venv: Path, home: str) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(LLMGW_HOME=home, LLMGW_SERVER__HOST="127.0.0.1", LLMGW_SERVER__PORT=str(port))
    proc = subprocess.Popen([str(venv / "bin" / "llmgw"), "serve"], env=env)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while _get(f"{base}/readyz") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"llmgw serve did not get ready (exit {proc.poll()})")
            time.sleep(0.05)
        for path in ("/healthz", "/metrics", "/v1/models"):
            _get(base + path)
    finally:
        proc.send_signal(signal.SIGTERM)
        if proc.wait(timeout=60) != 0:
            raise SystemExit(f"llmgw serve exited with {proc.returncode} on SIGTERM")


def recompile(venv: Path) -> int:
    """Replace every ``.pyc`` under ``venv`` by an unchecked-hash one of its source (a ``.pyc``
    without a source goes); the number of modules compiled."""
    sources = []
    for pyc in venv.rglob("__pycache__/*.pyc"):
        source = pyc.parent.parent / (pyc.name.split(".", 1)[0] + ".py")
        pyc.unlink()
        if source.is_file():
            sources.append(source)
    for source in sources:
        py_compile.compile(
            str(source),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    return len(sources)


def main() -> None:
    venv = Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)
    for cache in list(venv.rglob("__pycache__")):
        shutil.rmtree(cache)
    with tempfile.TemporaryDirectory() as home:
        _run_server(venv, home)
    print(f"precompiled {recompile(venv)} modules that llmgw serve imports")


if __name__ == "__main__":
    main()
