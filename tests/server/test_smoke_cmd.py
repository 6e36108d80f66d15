"""``llmgw smoke --url``: the post-deploy check against a real ``llmgw serve`` and the emulator."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from .conftest import LLMGW, free_port

pytestmark = pytest.mark.slow


def _smoke(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_SMOKE")}
    if key is not None:
        env["LLMGW_SMOKE_KEY"] = key
    return subprocess.run(
        [LLMGW, "smoke", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_smoke_passes_fails_and_never_prints_the_key(
    serve_process: Any, emulator: Any, key: Any, make_key: Any
) -> None:
    _, url = serve_process(emulator.url, server='metrics_token = "metrics-secret-123"')

    ok = _smoke("--url", url, "--metrics-token", "metrics-secret-123", key=key.secret)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "healthz"],
        ["ok", "readyz"],
        ["ok", "chat"],
        ["ok", "metrics"],
    ]
    assert "answered" in lines[2] and " 200 " in lines[2]
    assert ok.stderr == ""

    # --json, the model named, and a wrong metrics token: metrics fails, exit 9, one error line
    out = _smoke(
        "--url",
        url,
        "--model",
        "openai/gpt-4o-mini",
        "--metrics-token",
        "wrong",
        "--json",
        key=key.secret,
    )
    assert out.returncode == 9
    doc = json.loads(out.stdout)
    assert doc["ok"] is False
    assert {c["name"]: c["ok"] for c in doc["checks"]} == {
        "healthz": True,
        "readyz": True,
        "chat": True,
        "metrics": False,
    }
    assert doc["checks"][3]["status"] == 401
    assert out.stderr.splitlines()[0] == f"Error: smoke check of {url} failed: metrics"

    # a revoked / unknown key: the chat fails with the server's reason, the key is not echoed
    bad = "llmgw_" + "x" * 40
    out = _smoke("--url", url, "--metrics-token", "metrics-secret-123", "--key", bad)
    assert out.returncode == 9
    chat = next(line for line in out.stdout.splitlines() if line.split()[1] == "chat")
    assert chat.startswith("FAIL") and " 401 " in chat
    assert bad not in out.stdout + out.stderr and key.secret not in out.stdout + out.stderr

    # without a key the chat is skipped, not failed
    out = _smoke("--url", url, "--metrics-token", "metrics-secret-123")
    assert out.returncode == 0, out.stdout
    assert out.stdout.splitlines()[2].startswith("skip chat")


def test_smoke_against_nothing_fails_every_check() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = _smoke("--url", url, "--timeout", "2", key="llmgw_whatever_0123456789")
    assert out.returncode == 9
    assert [line.split()[0] for line in out.stdout.splitlines()] == ["FAIL"] * 4
    assert "ConnectError" in out.stdout
    out = _smoke("--url", "localhost:8080")
    assert out.returncode == 2 and out.stderr.startswith("Error: --url must start with")
