"""The API reference stays true to the OpenAPI document: every operation has examples and its errors,
docs/api.md covers every operation, and the Postman collection is generated from the current document."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from llmgw.server.openapi import openapi_document
from llmgw.server.postman import collection, main

ROOT = Path(__file__).resolve().parents[1]
POSTMAN = ROOT / "docs" / "llmgw.postman_collection.json"
ERROR_KEYS = {"message", "type", "param", "code"}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in openapi_document()["paths"].items()
        for method, op in item.items()
    ]


@pytest.mark.parametrize(("method", "path", "op"), operations(), ids=lambda v: str(v)[:40])
def test_every_operation_has_a_summary_examples_and_its_errors(
    method: str, path: str, op: dict[str, Any]
) -> None:
    where = f"{method} {path}: add it to server/openapi_examples.py OPERATIONS"
    assert op.get("summary") and op.get("description") and op.get("tags"), where
    if "requestBody" in op:  # JSON, or the pages' url-encoded forms
        for media in op["requestBody"]["content"].values():
            assert "example" in media, where
    for p in op.get("parameters", []):
        assert "example" in p, where
    responses = op["responses"]
    assert any(s.startswith(("2", "3")) for s in responses), where  # a form POST: 303
    for status, response in responses.items():
        for media_type, media in response.get("content", {}).items():
            assert "example" in media, f"{where} ({status} {media_type})"
            if media.get("schema", {}).get("$ref", "").endswith("/Error"):
                assert set(media["example"]["error"]) == ERROR_KEYS, f"{where} ({status})"
    if op.get("security") != []:  # everything behind a key documents the key's errors
        assert "401" in responses, where


def test_api_md_covers_every_operation() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [f"{m} {p}" for m, p, _ in operations() if f"`{m} {p}`" not in text]
    assert not missing, f"docs/api.md has no section for {missing}"


def test_postman_collection_is_generated_from_the_current_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--check", str(POSTMAN)]) == 0, capsys.readouterr().err


def test_postman_check_fails_on_a_stale_collection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "c.json"
    stale.write_text(POSTMAN.read_text(encoding="utf-8").replace("Create embeddings", "Old"))
    assert main(["--check", str(stale)]) == 1
    assert "python -m llmgw.server.postman --output" in capsys.readouterr().err
    assert main(["--output", str(stale)]) == 0 and main(["--check", str(stale)]) == 0


def test_postman_collection_holds_every_operation_with_its_answers() -> None:
    """Whatever the document holds (routes added later included) becomes a request."""
    doc = openapi_document()
    doc["paths"]["/v1/things/{thing}"] = {
        "delete": {
            "operationId": "deleteThing",
            "summary": "Delete a thing",
            "tags": ["Admin"],
            "parameters": [{"name": "thing", "in": "path", "example": "t1"}],
            "responses": {"204": {"description": "Deleted."}},
        }
    }
    made = collection(doc)
    assert made["info"]["schema"].endswith("/v2.1.0/collection.json")
    requests = {
        (r["request"]["method"], r["request"]["url"]["raw"]): r
        for folder in made["item"]
        for r in folder["item"]
    }
    expected = {
        (m, "{{baseUrl}}" + re.sub(r"\{(\w+)\}", r":\1", p)) for m, p, _ in operations()
    } | {("DELETE", "{{baseUrl}}/v1/things/:thing")}
    assert set(requests) == expected
    assert (
        requests[("DELETE", "{{baseUrl}}/v1/things/:thing")]["request"]["url"]["variable"][0][
            "value"
        ]
        == "t1"
    )
    chat = requests[("POST", "{{baseUrl}}/v1/chat/completions")]
    codes = {r["code"] for r in chat["response"]}
    assert {200, 400, 401, 404, 429, 502} <= codes
    health = requests[("GET", "{{baseUrl}}/healthz")]
    assert health["request"]["auth"] == {"type": "noauth"}
