"""Usage rows record the ``finish_reason`` the client got and the stream flag (issue 13:
``llmgw usage recommend`` finds prompts that keep hitting ``max_tokens`` from them), through
``/v1/chat/completions`` and through a conversation's ``/api/chat`` alike."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmgw.server.app import gateway_of

from .conftest import running

MSG = [{"role": "user", "content": "tell me a long story about the sea and the wind"}]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_finish_reason_length_and_stop_are_recorded(
    settings: Any, test_engine: Any, auth: Any, read_usage: Any, stream: bool, path: str
) -> None:
    async with running(settings) as (app, client):
        for max_tokens in (2, None):
            body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MSG, "stream": stream}
            if path == "/api/chat":  # a new conversation, the same message
                body = {"model": "gpt-4o-mini", "message": MSG[0]["content"], "stream": stream}
            if max_tokens is not None:
                body["max_tokens"] = max_tokens
            r = await client.post(path, json=body, headers=auth)
            assert r.status_code == 200, r.text
            assert ('"length"' in r.text) == (max_tokens is not None)
        assert await asyncio.to_thread(gateway_of(app).flush_usage, 10.0)
    got = [(r["finish_reason"], bool(r["stream"])) for r in read_usage()]  # oldest first
    assert got == [("length", stream), ("stop", stream)]
