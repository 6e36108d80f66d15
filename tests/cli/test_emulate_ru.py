"""``llmgw emulate gigachat|yandexgpt`` as a user runs them: a real process that prints the URLs to use."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Emulate


def _value(lines: list[str], prefix: str) -> str:
    return next(line for line in lines if line.startswith(prefix)).split(prefix, 1)[1].split()[0]


@pytest.mark.timeout(60)
def test_gigachat_command_prints_urls_that_work(emulate: Emulate) -> None:
    proc, lines = emulate("gigachat", "--port", "0", "--token-ttl", "60")
    try:
        base, auth, key = (
            _value(lines, "base URL: "),
            _value(lines, "auth URL: "),
            _value(lines, "authorization key: "),
        )
        token = httpx.post(
            auth,
            headers={"Authorization": f"Basic {key}", "RqUID": str(uuid.uuid4())},
            data={"scope": "GIGACHAT_API_PERS"},
        ).json()["access_token"]
        models = httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {token}"}).json()
        assert any(m["id"] == "GigaChat-2" for m in models["data"])
        assert f'base_url = "{base}"' in lines
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]


@pytest.mark.timeout(60)
def test_yandexgpt_command_creates_a_service_account_key(tmp_path: Path, emulate: Emulate) -> None:
    key_file = tmp_path / "sa.json"
    proc, lines = emulate("yandexgpt", "--port", "0", "--service-account-key", str(key_file))
    try:
        assert key_file.exists() and (key_file.stat().st_mode & 0o777) == 0o600
        url, folder, api_key = (
            _value(lines, "base URL: "),
            _value(lines, "folder:   "),
            _value(lines, "API key:  "),
        )
        r = httpx.post(
            f"{url}/foundationModels/v1/completion",
            headers={"Authorization": f"Api-Key {api_key}"},
            json={
                "modelUri": f"gpt://{folder}/yandexgpt-lite/rc",
                "messages": [{"role": "user", "text": "hi"}],
            },
        )
        assert (
            r.json()["result"]["alternatives"][0]["message"]["text"]
            == "yandexgpt-lite/rc reply to: hi"
        )
        assert f'service_account_key_file = "{key_file}"' in lines
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
