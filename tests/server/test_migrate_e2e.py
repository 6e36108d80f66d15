"""After ``llmgw db migrate`` a real ``llmgw serve`` on PostgreSQL takes the old keys and shows the
old usage (issue 12 "Must show"; MIG-5's second half: key digests copied byte-exact)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import LLMGW, free_port

pytestmark = pytest.mark.postgres


def _serve_on(
    url: str, upstream_url: str, upstream_key: str, home: Path, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    cfg = tmp_path / "pg.toml"
    cfg.write_text(
        f'[database]\nurl = "{url}"\n\n[usage]\nflush_interval = 0.05\n\n'
        "[[providers]]\n"
        'name = "openai"\nkind = "openai"\n'
        f'base_url = "{upstream_url}/v1"\n'
        'api_key_env = "EMULATOR_API_KEY"\n'
        'models = ["gpt-4o-mini"]\n'
    )
    port = free_port()
    env = {**os.environ, "EMULATOR_API_KEY": upstream_key, "LLMGW_HOME": str(home)}
    log = tmp_path / "serve-pg.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [LLMGW, "--config", str(cfg), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def _chat(base: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)  # drains and flushes its usage
    assert proc.wait(timeout=30) == 0


def test_old_keys_authenticate_and_old_usage_shows_after_the_move(
    cli: Any,
    home: Path,
    tmp_path: Path,
    db_file: str,
    test_engine: Any,
    emulator: Any,
    upstream_key: str,
    serve_process: Callable[..., Any],
    pg_url: str,
) -> None:
    made = cli(
        "keys", "create", "--name", "before-move", "--json", env={"LLMGW_DATABASE_URL": db_file}
    )
    assert made.exit_code == 0, made.stderr
    secret = json.loads(made.stdout)["key"]

    proc, base = serve_process(emulator.url)  # the gateway on SQLite
    for _ in range(3):
        assert _chat(base, secret).status_code == 200
    _stop(proc)

    moved = cli("db", "migrate", "--from", db_file, "--to", pg_url, "--json")
    assert moved.exit_code == 0, moved.stderr

    pg_proc, pg_base = _serve_on(pg_url, emulator.url, upstream_key, home, tmp_path)
    try:
        assert _chat(pg_base, secret).status_code == 200  # the old key, on PostgreSQL
        assert _chat(pg_base, secret[:-1] + ("A" if secret[-1] != "A" else "B")).status_code == 401
    finally:
        _stop(pg_proc)
    stats = cli(
        "usage", "stats", "--by", "key", "--since", "1d", "--json",
        env={"LLMGW_DATABASE_URL": pg_url},
    )  # fmt: skip
    assert stats.exit_code == 0, stats.stderr
    rows = json.loads(stats.stdout)["rows"]
    assert sum(r["requests"] for r in rows) == 4  # 3 before the move, 1 after
