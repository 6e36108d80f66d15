"""A Postman collection (v2.1) generated from the gateway's OpenAPI document.

    python -m llmgw.server.postman --output docs/llmgw.postman_collection.json   # regenerate
    python -m llmgw.server.postman --check docs/llmgw.postman_collection.json    # exit 1 if stale

One request per operation, in folders by tag, with the documented request example as its body and
every documented answer (success and errors) as a saved example. Variables: ``baseUrl`` (default
``http://127.0.0.1:8080``) and ``apiKey`` (sent as a bearer token; operations without security
send none). The output is deterministic, so ``tests/test_api_docs.py`` can compare it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

__all__ = ["collection", "main", "render"]

SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
BASE_URL = "http://127.0.0.1:8080"


def _url(path: str, op: dict[str, Any]) -> dict[str, Any]:
    """Postman's URL object; OpenAPI's ``{name}`` path parameters become ``:name`` variables."""
    params = {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "path"}
    segments = [
        f":{s[1:-1]}" if s.startswith("{") and s.endswith("}") else s
        for s in path.strip("/").split("/")
    ]
    url: dict[str, Any] = {
        "raw": "{{baseUrl}}/" + "/".join(segments),
        "host": ["{{baseUrl}}"],
        "path": segments,
    }
    if params:
        url["variable"] = [
            {
                "key": name,
                "value": str(p.get("example", "")),
                "description": p.get("description", ""),
            }
            for name, p in params.items()
        ]
    return url


def _request(method: str, path: str, op: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {
        "method": method.upper(),
        "header": [],
        "url": _url(path, op),
        "description": op.get("description", ""),
    }
    if op.get("security") == []:
        request["auth"] = {"type": "noauth"}
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        request["header"].append({"key": "Content-Type", "value": "application/json"})
        request["body"] = {
            "mode": "raw",
            "raw": json.dumps(body.get("example", {}), indent=2, ensure_ascii=False),
            "options": {"raw": {"language": "json"}},
        }
    return request


def _responses(request: dict[str, Any], op: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for status, response in op.get("responses", {}).items():
        for media_type, media in response.get("content", {}).items():
            if "example" not in media:
                continue
            example = media["example"]
            text = (
                example
                if isinstance(example, str)
                else json.dumps(example, indent=2, ensure_ascii=False)
            )
            code = int(status)
            out.append(
                {
                    "name": f"{status} {response.get('description', '')}".strip(),
                    "originalRequest": request,
                    "status": HTTPStatus(code).phrase,
                    "code": code,
                    "_postman_previewlanguage": "json" if "json" in media_type else "text",
                    "header": [{"key": "Content-Type", "value": media_type}],
                    "body": text,
                }
            )
    return out


def collection(document: dict[str, Any]) -> dict[str, Any]:
    """The Postman v2.1 collection for ``document`` (every operation it holds)."""
    folders: dict[str, list[dict[str, Any]]] = {}
    for path, item in document["paths"].items():
        for method, op in item.items():
            request = _request(method, path, op)
            tag = (op.get("tags") or ["Other"])[0]
            folders.setdefault(tag, []).append(
                {
                    "name": op.get("summary") or op.get("operationId") or f"{method} {path}",
                    "request": request,
                    "response": _responses(request, op),
                }
            )
    info = document["info"]
    return {
        "info": {
            "name": info["title"],
            "description": f"{info.get('description', '')} Generated from the OpenAPI document "
            "(GET /openapi.json) by `python -m llmgw.server.postman`; do not edit by hand.",
            "schema": SCHEMA,
        },
        "auth": {
            "type": "bearer",
            "bearer": [{"key": "token", "value": "{{apiKey}}", "type": "string"}],
        },
        "variable": [
            {"key": "baseUrl", "value": BASE_URL, "type": "string"},
            {"key": "apiKey", "value": "", "type": "string"},
        ],
        "item": [{"name": tag, "item": items} for tag, items in folders.items()],
    }


def render() -> str:
    """The collection of the running code's OpenAPI document, as committed to docs/."""
    from llmgw.server.openapi import openapi_document

    return json.dumps(collection(openapi_document()), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write, print or check the collection; exit 1 when ``--check`` finds it out of date."""
    parser = argparse.ArgumentParser(
        prog="python -m llmgw.server.postman",
        description="Generate the Postman collection (v2.1) from llmgw's OpenAPI document.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--output", type=Path, help="write the collection to this file")
    group.add_argument("--check", type=Path, help="exit 1 if this file is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check is not None:
        current = args.check.read_text(encoding="utf-8") if args.check.exists() else ""
        if current != text:
            print(
                f"{args.check} is out of date; regenerate it with: "
                f"python -m llmgw.server.postman --output {args.check}",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
