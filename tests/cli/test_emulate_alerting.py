"""``llmgw emulate slack|pagerduty|rootly`` as a user runs them in CI: a real process that prints
the URLs to use, and shows (on ``/_emulator/received`` and in the ``--log`` file) what it received."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Emulate


def _value(lines: list[str], prefix: str) -> str:
    return next(line for line in lines if line.startswith(prefix)).split(prefix, 1)[1].split()[0]


def _send(command: str, lines: list[str]) -> httpx.Response:
    if command == "slack":
        return httpx.post(_value(lines, "webhook URL: "), json={"text": "[FIRING] HighCPU"})
    if command == "pagerduty":
        return httpx.post(_value(lines, "events URL: "), json={
            "routing_key": _value(lines, "routing key: "), "event_action": "trigger",
            "dedup_key": "am-03e24befa7b11611",
            "payload": {"summary": "[FIRING] HighCPU", "source": "node1", "severity": "critical"}})  # fmt: skip
    return httpx.post(
        _value(lines, "base URL: ") + "/v1/alerts",
        headers={"Authorization": "Bearer " + _value(lines, "API key: "),
                 "Content-Type": "application/vnd.api+json"},
        json={"data": {"type": "alerts", "attributes": {"source": "alertmanager", "summary": "[FIRING] HighCPU"}}},
    )  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("command", "status"), [("slack", 200), ("pagerduty", 202), ("rootly", 201)]
)
def test_emulator_command_shows_what_it_received(
    command: str, status: int, tmp_path: Path, emulate: Emulate
) -> None:
    log = tmp_path / "received.jsonl"
    proc, lines = emulate(
        command, "--port", "0", "--log", str(log), "--fault", "429", "--fault-count", "1"
    )
    try:
        url = lines[0].rsplit(" ", 1)[-1]
        limited = _send(command, lines)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
        assert _send(command, lines).status_code == status
        received = httpx.get(f"{url}/_emulator/received").json()["received"]
        assert [r["status"] for r in received] == [429, status]
        assert "HighCPU" in json.dumps(received[1]["body"])
        logged = [json.loads(line) for line in log.read_text().splitlines()]
        assert [r["status"] for r in logged] == [429, status]
        assert "Bearer [redacted]" in json.dumps(logged) or command != "rootly"
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
