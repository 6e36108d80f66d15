"""AUTH-7 for the emulators: ``llmgw emulate NAME`` runs as a real process and is sent requests
that carry credentials (right and wrong ones, in headers, bodies, query strings and URLs); none of
them appears in what it logs: its output (uvicorn's messages, tracebacks) and, for the alerting
emulators, the received log (``/_emulator/received`` and the ``--log`` file).

Credentials are passed on the command line so the banner shows a placeholder instead; every
secret below is then expected zero times in the whole output.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Emulate

pytestmark = pytest.mark.timeout(60)

WRONG = "sk-wrong-" + "9" * 32  # a key-shaped value the emulators refuse


def _value(lines: list[str], prefix: str) -> str:
    return next(line for line in lines if line.startswith(prefix)).split(prefix, 1)[1].split()[0]


def _output(proc: subprocess.Popen[str], banner: list[str]) -> str:
    """Everything the process printed: its banner and what it wrote until it stopped."""
    proc.terminate()
    proc.wait(10)
    assert proc.stdout is not None
    rest = proc.stdout.read()
    proc.stdout.close()
    return "\n".join(banner) + "\n" + rest


def _assert_absent(secrets: list[str], *logs: str) -> None:
    for secret in secrets:
        for log in logs:
            assert secret not in log, f"a credential ({secret[:6]}...) is in the log:\n{log}"


def test_auth7_openai_emulator_logs_no_api_key(emulate: Emulate) -> None:
    key = "sk-emulator-" + uuid.uuid4().hex
    proc, lines = emulate("openai", "--port", "0", "--api-key", key)
    base = _value(lines, "base URL: ")
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    ok = httpx.post(
        f"{base}/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=chat
    )
    assert ok.status_code == 200
    wrong = httpx.post(
        f"{base}/chat/completions", headers={"Authorization": f"Bearer {WRONG}"}, json=chat
    )
    assert wrong.status_code == 401
    _assert_absent([key, WRONG], _output(proc, lines))


def test_auth7_gigachat_emulator_logs_no_credentials_or_tokens(emulate: Emulate) -> None:
    key = base64.b64encode(f"{uuid.uuid4()}:{uuid.uuid4()}".encode()).decode()
    proc, lines = emulate("gigachat", "--port", "0", "--credentials", key)
    base, auth = _value(lines, "base URL: "), _value(lines, "auth URL: ")
    got = httpx.post(
        auth,
        headers={"Authorization": f"Basic {key}", "RqUID": str(uuid.uuid4())},
        data={"scope": "GIGACHAT_API_PERS"},
    )
    token = got.json()["access_token"]
    wrong_key = base64.b64encode(b"someone:else-entirely").decode()
    refused = httpx.post(
        auth,
        headers={"Authorization": f"Basic {wrong_key}", "RqUID": str(uuid.uuid4())},
        data={"scope": "GIGACHAT_API_PERS"},
    )
    assert refused.status_code == 401
    chat = {"model": "GigaChat-2", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(
        f"{base}/chat/completions", headers={"Authorization": f"Bearer {token}"}, json=chat
    )
    assert r.status_code == 200
    assert (
        httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {WRONG}"}).status_code == 401
    )
    _assert_absent([key, token, wrong_key, WRONG], _output(proc, lines))


def test_auth7_yandexgpt_emulator_logs_no_api_key_or_iam_token(emulate: Emulate) -> None:
    key = "AQVN" + uuid.uuid4().hex + uuid.uuid4().hex
    proc, lines = emulate("yandexgpt", "--port", "0", "--api-key", key)
    url, folder = _value(lines, "base URL: "), _value(lines, "folder:   ")
    body = {
        "modelUri": f"gpt://{folder}/yandexgpt-lite/rc",
        "messages": [{"role": "user", "text": "hi"}],
    }
    ok = httpx.post(
        f"{url}/foundationModels/v1/completion",
        headers={"Authorization": f"Api-Key {key}"},
        json=body,
    )
    assert ok.status_code == 200
    wrong = httpx.post(
        f"{url}/foundationModels/v1/completion",
        headers={"Authorization": f"Bearer {WRONG}", "x-folder-id": folder},
        json=body,
    )
    assert wrong.status_code == 401
    _assert_absent([key, WRONG], _output(proc, lines))


def _received(url: str, log: Path) -> tuple[str, str]:
    return httpx.get(f"{url}/_emulator/received").text, log.read_text()


def test_auth7_slack_emulator_logs_no_token_or_webhook_secret(
    tmp_path: Path, emulate: Emulate
) -> None:
    token, log = "xoxb-" + uuid.uuid4().hex, tmp_path / "received.jsonl"
    proc, lines = emulate("slack", "--port", "0", "--bot-token", token, "--log", str(log))
    url = lines[0].rsplit(" ", 1)[-1]
    hook = "WebhookSecret" + uuid.uuid4().hex
    r = httpx.post(f"{url}/services/T0001/B0001/{hook}", json={"text": "[FIRING] HighCPU"})
    assert r.status_code in (200, 404)  # an unknown webhook is still logged
    api = _value(lines, "Web API base URL: ")
    sent = httpx.post(
        f"{api}chat.postMessage",
        headers={"Authorization": f"Bearer {token}"},
        json={"channel": "C0000000001", "text": "[FIRING] HighCPU"},
    )
    assert sent.status_code == 200
    form = httpx.post(f"{api}chat.postMessage", data={"token": token, "channel": "x", "text": "t"})
    assert form.status_code == 200
    received, logged = _received(url, log)
    assert "HighCPU" in received and "[redacted]" in logged  # it did log, without the secrets
    assert len(json.loads(received)["received"]) == 3
    _assert_absent([token, hook], received, logged, _output(proc, lines))


def test_auth7_pagerduty_emulator_logs_no_routing_key(tmp_path: Path, emulate: Emulate) -> None:
    key, log = uuid.uuid4().hex, tmp_path / "received.jsonl"
    proc, lines = emulate("pagerduty", "--port", "0", "--routing-keys", key, "--log", str(log))
    url = lines[0].rsplit(" ", 1)[-1]
    event = {"event_action": "trigger", "dedup_key": "am-1",
             "payload": {"summary": "[FIRING] HighCPU", "source": "node1", "severity": "critical"}}  # fmt: skip
    assert httpx.post(f"{url}/v2/enqueue", json={**event, "routing_key": key}).status_code == 202
    other = uuid.uuid4().hex  # well-formed, not accepted: refused and logged
    assert httpx.post(f"{url}/v2/enqueue", json={**event, "routing_key": other}).status_code == 400
    received, logged = _received(url, log)
    assert "HighCPU" in received and logged.count("[redacted]") == 2
    _assert_absent([key, other], received, logged, _output(proc, lines))


def test_auth7_rootly_emulator_logs_no_api_key_or_webhook_secret(
    tmp_path: Path, emulate: Emulate
) -> None:
    key, log = "rootly_" + uuid.uuid4().hex, tmp_path / "received.jsonl"
    proc, lines = emulate("rootly", "--port", "0", "--api-key", key, "--log", str(log))
    base = _value(lines, "base URL: ")
    alert = {"data": {"type": "alerts", "attributes": {"source": "alertmanager", "summary": "[FIRING] HighCPU"}}}  # fmt: skip
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/vnd.api+json"}
    assert httpx.post(f"{base}/v1/alerts", headers=headers, json=alert).status_code == 201
    wrong = "whsec_" + uuid.uuid4().hex
    hook = f"{base}/webhooks/incoming/generic_webhooks"
    assert httpx.post(hook, json={"title": "HighCPU", "secret": wrong}).status_code == 401
    assert httpx.post(hook, params={"secret": wrong}, json={"title": "x"}).status_code == 401
    received, logged = _received(base, log)
    assert "HighCPU" in received and len(json.loads(received)["received"]) == 3
    _assert_absent([key, wrong], received, logged, _output(proc, lines))
