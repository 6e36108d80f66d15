"""The container image: its size and `docker run` -> `/readyz` 200 (docs/performance.md#container-image).

Needs a running dockerd and the image (deploy/build-image.sh). Each run starts a fresh container
(host network, read-only root, tmpfs /tmp, a named volume for LLMGW_HOME that the first run
migrates), polls /readyz every 10 ms, reads the server process's RSS, and removes the container.
Each run splits the time to ready into dockerd's part (until the server process exists, from its
start time in /proc) and the server's own start to ready, and reports the CPU seconds the server
used until ready: on a loaded machine wall times stretch, CPU seconds much less. With several
``--image`` options the images take turns, run by run, so they see the same load.

    python tests/perf/bench_image.py [--image llmgw:latest ...] [--runs 5]
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


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _server_pid(container: str) -> str:
    """The llmgw process: tini's child (tini is the container's PID 1)."""
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    children = subprocess.run(["pgrep", "-P", pid], capture_output=True, text=True).stdout.split()
    return children[0] if children else pid


def _rss_mib(pid: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _started_and_cpu(pid: str) -> tuple[float, float]:
    """The process's start (seconds since boot) and its user + system CPU seconds so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / CLK_TCK, (int(fields[11]) + int(fields[12])) / CLK_TCK


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def _one_run(image: str, volume: str, name: str) -> tuple[float, float, float, float]:
    """(docker run to ready, server start to ready, server CPU s until ready, RSS MiB)."""
    port = _free_port()
    start, boot_start = time.perf_counter(), _uptime()
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "host", "--read-only",
         "--tmpfs", "/tmp", "-v", f"{volume}:/var/lib/llmgw",
         "-e", f"LLMGW_SERVER__PORT={port}", "-e", "LLMGW_SERVER__HOST=127.0.0.1", image],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        deadline = start + 60
        while not _ready(f"http://127.0.0.1:{port}/readyz"):
            if time.perf_counter() > deadline:
                raise SystemExit(f"{name}: not ready in 60 s")
            time.sleep(0.01)
        took, ready_at = time.perf_counter() - start, _uptime()
        pid = _server_pid(name)
        began, cpu = _started_and_cpu(pid)
        own = ready_at - max(began, boot_start)
        return took, own, cpu, _rss_mib(pid)
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", action="append", help="image to measure (repeatable)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    images = args.image or ["llmgw:latest"]
    for image in images:
        size = subprocess.run(
            ["docker", "image", "inspect", image, "-f", "{{.Size}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"image {image}: {int(size) / 1e6:.0f} MB ({int(size) / 2**20:.0f} MiB)")
    volumes = {image: f"llmgw-bench-{os.getpid()}-{n}" for n, image in enumerate(images)}
    results: dict[str, list[tuple[float, float, float, float]]] = {i: [] for i in images}
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    try:
        for i in range(args.runs):
            for n, image in enumerate(images):
                r = _one_run(image, volumes[image], f"llmgw-bench-{os.getpid()}-{n}-{i}")
                results[image].append(r)
                first = " (first: migrates the empty volume)" if i == 0 else ""
                print(
                    f"{image} run {i}: ready after {r[0]:.2f} s (server's own start to ready "
                    f"{r[1]:.2f} s, {r[2]:.2f} CPU s), RSS {r[3]:.0f} MiB{first}"
                )
    finally:
        for volume in volumes.values():
            subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
    for image in images:
        rest = results[image][1:] or results[image]
        med = [statistics.median(r[k] for r in rest) for k in range(4)]
        print(
            f"{image}: median over runs 1..{len(rest)}: docker run to ready {med[0]:.2f} s, "
            f"server start to ready {med[1]:.2f} s, server CPU {med[2]:.2f} s, RSS {med[3]:.0f} MiB"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
