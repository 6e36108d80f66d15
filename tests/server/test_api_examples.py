"""The OpenAPI document's examples are what the gateway answers: each operation's request example is
sent to a real gateway (provider ``local`` on the OpenAI emulator, as docs/api.md assumes) and the
answer has the documented status and the example's fields."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmgw.config import Settings
from llmgw.server.openapi import openapi_document

from .conftest import MODELS, UPSTREAM_KEY, running


@pytest.fixture
def local_settings(
    upstream_factory: Callable[..., Any],
    home: Path,
    db_file: str,
    test_engine: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    monkeypatch.setenv("EMULATOR_API_KEY", UPSTREAM_KEY)
    up = upstream_factory()
    return Settings(
        home=home,
        database={"url": db_file},
        providers=[
            {
                "name": "local",
                "kind": "openai",
                "base_url": f"{up.url}/v1",
                "api_key_env": "EMULATOR_API_KEY",
                "models": list(MODELS),
            }
        ],
        aliases={"chat-default": ["local/gpt-4o-mini"]},
    )


def _shape(value: Any) -> Any:
    """Keys of objects (recursively, first list item only) and the JSON type of everything else."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def _covers(answer: Any, example: Any) -> bool:
    """Every field of the example's shape is in the answer's, with the same type (null: any)."""
    if isinstance(example, dict):
        return isinstance(answer, dict) and all(
            k in answer and _covers(answer[k], v) for k, v in example.items()
        )
    if isinstance(example, list):
        return isinstance(answer, list) and (
            not example or bool(answer) and _covers(answer[0], example[0])
        )
    return (
        example is None
        or answer is None
        or example == answer
        or {example, answer} <= {"int", "float"}
    )


async def test_every_request_example_gets_the_documented_answer(
    local_settings: Settings, key: Any
) -> None:
    auth = {"Authorization": f"Bearer {key.secret}"}
    checked = []
    async with running(local_settings) as (_, client):
        for path, item in openapi_document()["paths"].items():
            for method, op in item.items():
                if "Admin" in op["tags"]:  # an admin key and existing objects: test_admin_api.py
                    continue
                if "Alerts" in op["tags"]:  # the webhook token and alerts: tests/alerts/
                    continue
                if "Pages" in op["tags"]:  # HTML forms with a session and CSRF: tests/web/
                    continue
                if "OAuth" in op["tags"]:  # form posts with live codes: tests/server/test_oauth.py
                    continue
                if "Conversations" in op["tags"]:  # existing conversations: test_conversations.py
                    continue
                url = path
                for p in op.get("parameters", []):
                    url = url.replace("{" + p["name"] + "}", str(p["example"]))
                body = op.get("requestBody", {}).get("content", {}).get("application/json")
                r = await client.request(
                    method, url, headers=auth, json=body["example"] if body else None
                )
                assert r.status_code == 200, (method, path, r.text)
                media = op["responses"]["200"]["content"]
                kind = r.headers["content-type"].split(";")[0]
                assert kind in media, (method, path, kind)
                if kind == "application/json" and path != "/openapi.json":
                    example = media[kind]["example"]
                    assert _covers(_shape(r.json()), _shape(example)), (path, r.json(), example)
                checked.append(op["operationId"])
                if "text/event-stream" in media:  # the streamed form of the same request
                    stream = {**body["example"], "stream": True} if body else None
                    r = await client.post(url, headers=auth, json=stream)
                    assert r.headers["content-type"].startswith("text/event-stream")
                    assert r.text.startswith("data: {") and r.text.endswith("data: [DONE]\n\n")
    assert {"createChatCompletion", "createEmbedding", "listModels", "liveness"} <= set(checked)
