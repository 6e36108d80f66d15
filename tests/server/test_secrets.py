"""AUTH-7: secrets issued during a run appear nowhere: logs, error bodies, metrics, usage rows."""

from __future__ import annotations

import logging
from typing import Any

import httpx

MSG = [{"role": "user", "content": "hello"}]


async def test_no_secret_anywhere(
    client: httpx.AsyncClient,
    app: Any,
    key: Any,
    upstream_key: str,
    upstream_factory: Any,
    flushed_usage: Any,
    caplog: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = {"Authorization": f"Bearer {key.secret}"}
    bodies: list[str] = []
    requests: list[tuple[str, str, Any, dict[str, str]]] = [
        ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MSG}, auth),
        (
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": MSG, "stream": True},
            auth,
        ),
        ("POST", "/v1/chat/completions", {"model": "nope", "messages": MSG}, auth),
        ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "api_key": upstream_key}, auth),
        ("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": key.secret}, auth),
        ("GET", "/v1/models", None, {"x-api-key": key.secret}),
        ("GET", "/v1/models", None, {"Authorization": f"Bearer {key.secret}x"}),
        ("GET", "/v1/models", None, {"Authorization": f"Basic {key.secret}"}),
        ("GET", f"/v1/models?api_key={key.secret}", None, {}),
    ]
    for method, path, body, headers in requests:
        r = await client.request(method, path, json=body, headers=headers)
        bodies.append(r.text)
    metrics = (await client.get("/metrics")).text
    rows = await flushed_usage(app)
    assert len(rows) == 5  # authenticated requests only
    # the embedding input legitimately echoes the text it was given; everything else must not
    haystacks = {
        # the server's loggers (the test's own httpx client logs the URLs it requests)
        "logs": "\n".join(
            r.getMessage() + (r.exc_text or "")
            for r in caplog.records
            if not r.name.startswith(("httpx", "httpcore"))
        ),
        "metrics": metrics,
        "usage": repr(rows),
        "errors": "\n".join(b for b in bodies if '"error"' in b),
    }
    for where, text in haystacks.items():
        assert key.secret not in text, where
        assert upstream_key not in text, where
