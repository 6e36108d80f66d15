"""``llmgw emulate openai`` as a user runs it: a real process printing a base URL that works."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.cli.conftest import Emulate


@pytest.mark.timeout(60)
def test_prints_a_base_url_and_config_that_work(emulate: Emulate) -> None:
    proc, lines = emulate("openai", "--port", "0", "--api-key", "sk-demo", "--latency-ms", "1")
    try:
        base = next(x for x in lines if x.startswith("base URL: ")).split()[-1]
        assert f'base_url = "{base}"' in lines
        assert any(x.startswith('api_key_env = "') for x in lines)
        r = httpx.post(
            f"{base}/chat/completions",
            headers={"Authorization": "Bearer sk-demo"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Echo: hi"
        assert httpx.get(f"{base}/models").status_code == 401  # the key is required
    finally:
        proc.terminate()
        assert proc.wait(10) == 0 or proc.returncode < 0
        proc.stdout.close()  # type: ignore[union-attr]


def test_port_in_use_is_a_one_line_error(cli) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        result = cli("emulate", "openai", "--port", str(port))
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_switches_are_usage_errors(cli) -> None:
    assert cli("emulate", "openai", "--fail-rate", "1.5").exit_code == 2
    result = cli("emulate", "openai", "--fault", "explode")
    assert result.exit_code == 2 and "explode" in result.stderr
