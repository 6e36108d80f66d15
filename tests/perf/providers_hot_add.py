"""Providers managed at runtime on three real ``llmgw serve`` processes (issue 16 part 2).

Starts two OpenAI emulators (``llmgw emulate openai``) and three ``llmgw serve`` sharing one
SQLite database and one signing secret, keeps steady traffic on the config provider on all
three, adds a provider through one instance's admin API and measures how long until each
instance serves its model; then opens a slow stream on it, disables it through another
instance, measures until each refuses it (404) and checks the stream still ends with [DONE].
Prints the figures and every failed request (there should be none).

    .venv/bin/python tests/perf/providers_hot_add.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

LLMGW = str(Path(sys.executable).with_name("llmgw"))
KEY1, KEY2 = "sk-first-upstream-0123456789", "sk-second-upstream-9876543210"


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, path: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited")
        time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="llmgw-hot-"))
    env = {**os.environ, "LLMGW_HOME": str(home), "UP1": KEY1,
           "LLMGW_IDENTITY__SIGNING_SECRET": "s" * 40}  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    log = (home / "out.log").open("wb")

    def spawn(*argv: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([LLMGW, *argv], env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        e1, e2 = port(), port()
        p1 = spawn("emulate", "openai", "--port", str(e1), "--api-key", KEY1)
        p2 = spawn("emulate", "openai", "--port", str(e2), "--api-key", KEY2,
                   "--models", "extra-model", "--chunk-delay-ms", "200")  # fmt: skip
        wait(f"http://127.0.0.1:{e1}", "/v1/models", p1)
        wait(f"http://127.0.0.1:{e2}", "/v1/models", p2)
        cfg = home / "config.toml"
        cfg.write_text(
            f'[[providers]]\nname = "openai"\nkind = "openai"\n'
            f'base_url = "http://127.0.0.1:{e1}/v1"\napi_key_env = "UP1"\n'
            'models = ["gpt-4o-mini"]\n'
        )
        subprocess.run([LLMGW, "--config", str(cfg), "db", "upgrade"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run([LLMGW, "--config", str(cfg), "users", "create", "-e", "root@example.com",
                        "--role", "admin"], env=env, check=True, capture_output=True)  # fmt: skip
        made = subprocess.run(
            [LLMGW, "--config", str(cfg), "keys", "create", "-n", "root", "--user", "root@example.com",
             "--json"], env=env, check=True, capture_output=True, text=True)  # fmt: skip
        import json

        admin = json.loads(made.stdout)["key"]
        urls = []
        for _ in range(3):
            gp = port()
            g = spawn("--config", str(cfg), "serve", "--port", str(gp))
            urls.append(f"http://127.0.0.1:{gp}")
            wait(urls[-1], "/readyz", g)
        auth = {"Authorization": f"Bearer {admin}"}
        clients = [httpx.Client(base_url=u, headers=auth, timeout=30) for u in urls]
        failures: list[str] = []
        counts = [0]
        stop = threading.Event()

        def chat(c: httpx.Client, model: str) -> int:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            return c.post("/v1/chat/completions", json=body).status_code

        def steady() -> None:
            while not stop.is_set():
                for c in clients:
                    counts[0] += 1
                    if (s := chat(c, "openai/gpt-4o-mini")) != 200:
                        failures.append(f"steady {s}")

        load = threading.Thread(target=steady)
        load.start()
        time.sleep(1)
        body = {"name": "second", "kind": "openai", "base_url": f"http://127.0.0.1:{e2}/v1",
                "models": ["extra-model"], "api_key": KEY2}  # fmt: skip
        t0 = time.monotonic()
        r = clients[0].post("/admin/v1/providers", json=body)
        assert r.status_code == 200, r.text
        seen = []
        for c in clients:
            while chat(c, "second/extra-model") != 200:
                time.sleep(0.02)
            seen.append(time.monotonic() - t0)
        print(
            f"added via instance 1: serving on instances 1-3 after {', '.join(f'{s:.2f}' for s in seen)} s"
        )
        lines: list[str] = []

        def stream() -> None:
            req = {"model": "second/extra-model", "stream": True,
                   "messages": [{"role": "user", "content": " ".join(["word"] * 25)}]}  # fmt: skip
            with clients[2].stream("POST", "/v1/chat/completions", json=req) as resp:
                lines.extend(x for x in resp.iter_lines() if x)

        st = threading.Thread(target=stream)
        st.start()
        time.sleep(0.5)
        t1 = time.monotonic()
        r = clients[1].post("/admin/v1/providers/second/disable")
        assert r.status_code == 200, r.text
        gone = []
        for c in clients:
            while chat(c, "second/extra-model") != 404:
                time.sleep(0.02)
            gone.append(time.monotonic() - t1)
        print(
            f"disabled via instance 2: refused on instances 1-3 after {', '.join(f'{s:.2f}' for s in gone)} s"
        )
        st.join(30)
        print(f"stream opened before the disable: {len(lines)} lines, last {lines[-1] if lines else None!r}, "
              f"ended {time.monotonic() - t1:.2f} s after the disable")  # fmt: skip
        stop.set()
        load.join()
        print(
            f"steady requests on the config provider: {counts[0]}, failed: {len(failures)} {failures[:3]}"
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


if __name__ == "__main__":
    main()
