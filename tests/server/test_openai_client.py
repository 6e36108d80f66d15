"""The official ``openai`` package, unchanged, against llmgw on uvicorn in front of the emulator."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from llmgw.server.app import gateway_of


@pytest.fixture
def oa(gateway_server: Any, key: Any) -> openai.OpenAI:
    """An ``openai.OpenAI`` client pointed at the gateway with a gateway key."""
    return openai.OpenAI(
        base_url=f"{gateway_server.url}/v1", api_key=key.secret, max_retries=0, timeout=20
    )


def _usage(
    gateway_server: Any, read_usage: Callable[[], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    assert gateway_of(gateway_server.app).flush_usage(10.0)
    return read_usage()


def test_chat_json(oa: openai.OpenAI, gateway_server: Any, key: Any, read_usage: Any) -> None:
    resp = oa.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
    )
    assert resp.choices[0].message.content == "Echo: hello there"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    rows = _usage(gateway_server, read_usage)
    assert len(rows) == 1
    row = rows[0]
    assert (row["provider"], row["model"], row["endpoint"], row["status"]) == (
        "openai",
        "gpt-4o-mini",
        "chat",
        200,
    )
    assert row["prompt_tokens"] == resp.usage.prompt_tokens
    assert row["completion_tokens"] == resp.usage.completion_tokens
    assert row["key_id"].replace("-", "") == key.info.id.hex
    assert float(row["cost"]) > 0  # priced in the test settings


def test_chat_stream_with_usage(oa: openai.OpenAI, gateway_server: Any, read_usage: Any) -> None:
    stream = oa.chat.completions.create(
        model="chat-default",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(text) == "Echo: stream me please"
    assert usage is not None and usage.completion_tokens > 0
    rows = _usage(gateway_server, read_usage)
    assert len(rows) == 1
    assert rows[0]["stream"] in (1, True)
    assert rows[0]["completion_tokens"] == usage.completion_tokens
    assert rows[0]["prompt_tokens"] == usage.prompt_tokens
    assert rows[0]["ttft_ms"] is not None


def test_chat_stream_without_usage_has_no_usage_chunk(
    oa: openai.OpenAI, gateway_server: Any, read_usage: Any
) -> None:
    chunks = list(
        oa.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x y"}], stream=True
        )
    )
    assert chunks and all(c.usage is None for c in chunks)
    # ...but the usage record still has the upstream's token counts.
    rows = _usage(gateway_server, read_usage)
    assert rows[0]["completion_tokens"] > 0


def test_embeddings(oa: openai.OpenAI, gateway_server: Any, read_usage: Any) -> None:
    resp = oa.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert len(resp.data) == 2 and len(resp.data[0].embedding) > 10
    rows = _usage(gateway_server, read_usage)
    assert rows[0]["endpoint"] == "embeddings"
    assert rows[0]["prompt_tokens"] == resp.usage.prompt_tokens


def test_models_list(oa: openai.OpenAI) -> None:
    ids = {m.id for m in oa.models.list()}
    assert ids == {"openai/gpt-4o-mini", "openai/text-embedding-3-small", "chat-default"}


def test_models_retrieve(
    oa: openai.OpenAI, make_key: Callable[..., Any], gateway_server: Any
) -> None:
    """``client.models.retrieve()`` works for provider/model ids (with their slash) and aliases;
    an unknown id, or one the key may not use, is ``NotFoundError`` alike."""
    model = oa.models.retrieve("openai/gpt-4o-mini")
    assert (model.id, model.object, model.owned_by) == ("openai/gpt-4o-mini", "model", "openai")
    assert oa.models.retrieve("chat-default").owned_by == "llmgw"
    with pytest.raises(openai.NotFoundError) as err:
        oa.models.retrieve("openai/not-configured")
    assert err.value.code == "model_not_found"
    narrow = make_key("narrow", models=["openai/text-embedding-3-small"])
    oa2 = openai.OpenAI(base_url=f"{gateway_server.url}/v1", api_key=narrow.secret, max_retries=0)
    assert (
        oa2.models.retrieve("openai/text-embedding-3-small").id == "openai/text-embedding-3-small"
    )
    with pytest.raises(openai.NotFoundError):
        oa2.models.retrieve("openai/gpt-4o-mini")


def test_errors_surface_as_openai_exceptions(
    oa: openai.OpenAI, gateway_server: Any, read_usage: Any
) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        oa.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert nf.value.code == "model_not_found"
    bad = openai.OpenAI(base_url=f"{gateway_server.url}/v1", api_key="llmgw_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    # The 404 after authentication is recorded; the 401 (no key) is not.
    time.sleep(0.05)
    rows = _usage(gateway_server, read_usage)
    assert [(r["status"], r["error_type"]) for r in rows] == [(404, "model_not_found")]
