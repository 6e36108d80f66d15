"""The container image: its size and `docker run` -> `/readyz` 200 (docs/performance.md#container-image).

Needs a running dockerd and the image (deploy/build-image.sh). Each run starts a fresh container
(host network, read-only root, tmpfs /tmp, a named volume for LLMGW_HOME that the first run
migrates), polls /readyz every 10 ms, reads the server process's RSS, and removes the container.

    python tests/perf/bench_image.py [--image llmgw:latest] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import time
import urllib.request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _rss_mib(container: str) -> float:
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    children = subprocess.run(["pgrep", "-P", pid], capture_output=True, text=True).stdout.split()
    for child in children or [pid]:
        with open(f"/proc/{child}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="llmgw:latest")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    size = subprocess.run(
        ["docker", "image", "inspect", args.image, "-f", "{{.Size}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"image {args.image}: {int(size) / 1e6:.0f} MB ({int(size) / 2**20:.0f} MiB)")
    volume = f"llmgw-bench-{os.getpid()}"
    times = []
    try:
        for i in range(args.runs):
            port = _free_port()
            name = f"llmgw-bench-{os.getpid()}-{i}"
            start = time.perf_counter()
            subprocess.run(
                [
                    "docker",
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--network",
                    "host",
                    "--read-only",
                    "--tmpfs",
                    "/tmp",
                    "-v",
                    f"{volume}:/var/lib/llmgw",
                    "-e",
                    f"LLMGW_SERVER__PORT={port}",
                    "-e",
                    "LLMGW_SERVER__HOST=127.0.0.1",
                    args.image,
                ],
                check=True,
                capture_output=True,
            )
            deadline = start + 60
            while not _ready(f"http://127.0.0.1:{port}/readyz"):
                if time.perf_counter() > deadline:
                    raise SystemExit(f"run {i}: not ready in 60 s")
                time.sleep(0.01)
            took = time.perf_counter() - start
            rss = _rss_mib(name)
            subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
            times.append(took)
            first = " (first: migrates the empty volume)" if i == 0 else ""
            print(f"run {i}: ready after {took:.2f} s, RSS {rss:.0f} MiB{first}")
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
    rest = times[1:] or times
    print(f"start to ready: median {statistics.median(rest):.2f} s over runs 1..{len(times) - 1}")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
