"""``[log]``: JSON lines on stdout for containers, a size-rotated file for bare metal, and no secret
in any line (docs/deployment.md#logging)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import LLMGW

pytestmark = pytest.mark.slow

PROVIDER_KEY = "sk-provider-secret-0123456789abcdef"
DB_PASSWORD = "db-pass-9f8e7d6c5b4a"


def _log_in_child(
    tmp_path: Path, log: dict[str, Any], body: str
) -> subprocess.CompletedProcess[str]:
    """Configure logging exactly as ``llmgw serve`` does for these settings, then run ``body``."""
    settings = {
        "home": str(tmp_path),
        "log": log,
        "database": {"url": f"postgresql://llmgw:{DB_PASSWORD}@db.internal/llmgw"},
        "providers": [
            {"name": "openai", "kind": "openai", "api_key_env": "T_PROVIDER_KEY", "models": ["m"]}
        ],
    }
    script = textwrap.dedent(
        """
        import json, logging, logging.config, sys
        from llmgw.config import Settings
        from llmgw.server.serving import log_config
        settings = Settings(**json.loads(sys.argv[1]))
        logging.config.dictConfig(log_config(settings))
        msg = logging.getLogger("llmgw.server")
        access = logging.getLogger("llmgw.access")
        """
    ) + textwrap.dedent(body)
    data = json.dumps(settings)
    return subprocess.run(
        [sys.executable, "-c", script, data],
        env={**os.environ, "T_PROVIDER_KEY": PROVIDER_KEY},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


LEAKY = f"""
msg.warning("upstream said %s", "Authorization: Bearer %s" % "tok_abcdefghijklmnop")
msg.error("cannot reach postgresql://llmgw:{DB_PASSWORD}@db.internal/llmgw or redis://u:pass-not-known-77@cache:6379/0")
msg.info("provider key is {PROVIDER_KEY}")
try:
    raise RuntimeError("boom with {PROVIDER_KEY}")
except RuntimeError:
    msg.exception("request failed")
access.info('{{"ts": "t", "path": "/v1/chat/completions", "status": 200}}')
"""


def _no_secret(text: str) -> None:
    for secret in (PROVIDER_KEY, DB_PASSWORD, "tok_abcdefghijklmnop", "pass-not-known-77"):
        assert secret not in text


def test_json_format_puts_every_line_on_stdout_as_json_without_secrets(tmp_path: Path) -> None:
    out = _log_in_child(tmp_path, {"format": "json"}, LEAKY)
    _no_secret(out.stdout + out.stderr)
    assert out.stderr == ""
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    messages = [x for x in lines if "logger" in x]
    assert [m["level"] for m in messages] == ["warning", "error", "info", "error"]
    assert all(m["logger"] == "llmgw.server" and m["ts"].endswith("+00:00") for m in messages)
    assert messages[0]["message"] == "upstream said Authorization: Bearer [redacted]"
    # the configured URL is a known secret; an unknown one loses its password
    assert messages[1]["message"] == "cannot reach [redacted] or redis://u:[redacted]@cache:6379/0"
    assert "Traceback" in messages[3]["exc"] and "boom with [redacted]" in messages[3]["exc"]
    assert {"path": "/v1/chat/completions", "status": 200}.items() <= lines[-1].items()


def test_text_format_keeps_messages_on_stderr_and_redacts_them(tmp_path: Path) -> None:
    out = _log_in_child(tmp_path, {"format": "text"}, LEAKY)
    _no_secret(out.stdout + out.stderr)
    assert json.loads(out.stdout)["path"] == "/v1/chat/completions"  # the access line alone
    assert "WARNING llmgw.server: upstream said Authorization: Bearer [redacted]" in out.stderr
    assert "boom with [redacted]" in out.stderr


def test_log_file_rotates_by_size_and_keeps_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "llmgw.log"
    body = """
    for i in range(400):
        msg.info("message %04d %s", i, "x" * 40)
        access.info('{"n": %d, "pad": "%s"}' % (i, "y" * 40))
    logging.shutdown()
    """
    out = _log_in_child(tmp_path, {"file": str(path), "max_bytes": 4096, "backups": 2}, body)
    assert out.stdout == "" and out.stderr == ""  # everything went to the file
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["llmgw.log", "llmgw.log.1", "llmgw.log.2"]
    for p in path.parent.iterdir():
        assert p.stat().st_size <= 4096
    # the newest lines are in llmgw.log, the older in .1, then .2; nothing older survives
    newest = path.read_text().splitlines()
    assert "message 0399" in path.read_text() or '"n": 399' in path.read_text()
    older = (path.parent / "llmgw.log.2").read_text()
    assert "message 0000" not in older and all(line for line in newest)


def test_serve_with_json_logs_writes_only_json_lines(
    serve_process: Any, emulator: Any, key: Any, tmp_path: Path
) -> None:
    proc, url = serve_process(emulator.url, server='\n[log]\nformat = "json"')
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key.secret}"},
    )
    assert r.status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    lines = (tmp_path / "serve.log").read_text().splitlines()
    # stdout and stderr were one file here: only the start-up banner is not JSON
    other = [line for line in lines if not line.startswith("{")]
    assert len(other) == 1 and other[0].startswith("llmgw: serving on"), other
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(x.get("path") == "/v1/chat/completions" and x["status"] == 200 for x in parsed)
    assert any(x.get("logger", "").startswith("uvicorn") for x in parsed)
    assert key.secret not in "\n".join(lines)


def test_a_log_file_with_several_workers_is_refused(
    home: Path, db_file: str, test_engine: Any, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[database]\nurl = "{db_file}"\n\n[log]\nfile = "{tmp_path / "x.log"}"\n')
    out = subprocess.run(
        [LLMGW, "--config", str(cfg), "serve", "--port", "0", "--workers", "2"],
        env={"LLMGW_HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("Error: log.file works with one worker"), out.stderr
