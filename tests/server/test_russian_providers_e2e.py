"""GigaChat and YandexGPT end to end: the ``openai`` package -> llmgw on uvicorn -> the emulators."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from llmgw.config import Settings
from llmgw.emulators import gigachat, yandexgpt
from llmgw.emulators.runner import RunningServer, serve_in_thread

FOLDER = yandexgpt.DEFAULT_FOLDER
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "forecast",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def upstreams() -> Iterator[tuple[RunningServer, RunningServer]]:
    with (
        serve_in_thread(gigachat.create_app(max_concurrency=10)) as giga,
        serve_in_thread(yandexgpt.create_app()) as yc,
    ):
        yield giga, yc


@pytest.fixture
def gateway(
    upstreams: tuple[RunningServer, RunningServer], ru_settings: Callable[..., Settings]
) -> Iterator[RunningServer]:
    from llmgw.server import create_app

    giga, yc = upstreams
    settings = ru_settings(
        giga.url,
        yc.url,
        giga={"models": ["GigaChat-2", "Embeddings"]},
        yandex={"models": ["yandexgpt-lite", "yandexgpt", "text-search-doc"]},
    )
    with serve_in_thread(create_app(settings)) as server:
        yield server


@pytest.fixture
def oa(gateway: RunningServer, make_key: Callable[..., Any]) -> openai.OpenAI:
    key = make_key("e2e")
    return openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=key.secret, max_retries=0, timeout=20
    )


def emu_of(server: RunningServer) -> Any:
    return server.app.state.emulator


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gigachat/GigaChat-2", "GigaChat emulator reply to: привет"),
        ("yandex/yandexgpt-lite", "yandexgpt-lite/latest reply to: привет"),
    ],
)
def test_chat_json_and_stream(oa: openai.OpenAI, model: str, expected: str) -> None:
    resp = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "привет"}])
    assert resp.choices[0].message.content == expected
    assert resp.usage is not None and resp.usage.total_tokens > 0
    stream = oa.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "привет"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize("model", ["gigachat/GigaChat-2", "yandex/yandexgpt"])
def test_tool_call_round_trip(oa: openai.OpenAI, model: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "weather in Moscow?"}]
    first = oa.chat.completions.create(model=model, messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name == "weather" and isinstance(json.loads(call.function.arguments), dict)
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"t": -5}'},
    ]
    second = oa.chat.completions.create(model=model, messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    assert second.choices[0].finish_reason == "stop"
    assert "-5" in (second.choices[0].message.content or "")


def test_embeddings(oa: openai.OpenAI) -> None:
    giga = oa.embeddings.create(model="gigachat/Embeddings", input=["one", "two"])
    assert [len(d.embedding) for d in giga.data] == [1024, 1024]
    yc = oa.embeddings.create(model="yandex/text-search-doc", input="one")
    assert len(yc.data[0].embedding) == 256 and yc.usage.prompt_tokens > 0


def test_rc_version_reaches_the_rc_model_uri(
    oa: openai.OpenAI, upstreams: tuple[RunningServer, RunningServer]
) -> None:
    resp = oa.chat.completions.create(
        model="yandex/yandexgpt-lite:rc", messages=[{"role": "user", "content": "hi"}]
    )
    assert emu_of(upstreams[1]).requests[-1]["modelUri"] == f"gpt://{FOLDER}/yandexgpt-lite/rc"
    assert resp.choices[0].message.content == "yandexgpt-lite/rc reply to: hi"
    assert resp.system_fingerprint == yandexgpt.MODEL_VERSIONS["yandexgpt-lite"]["rc"]


@pytest.mark.parametrize("fault", ["echo_credentials", "html", "invalid_json", "redirect"])
def test_bad_upstream_answer_is_a_sanitized_502(
    oa: openai.OpenAI, upstreams: tuple[RunningServer, RunningServer], fault: str
) -> None:
    emu_of(upstreams[0]).fault = fault
    with pytest.raises(openai.APIStatusError) as info:
        oa.chat.completions.create(
            model="gigachat/GigaChat-2", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 502
    body = info.value.response.text
    assert gigachat.DEFAULT_CREDENTIALS not in body
    assert not any(tok in body for tok in emu_of(upstreams[0]).tokens)


def test_versions_are_priced_and_reported_apart_in_roubles(
    oa: openai.OpenAI, test_engine: Any, gateway: RunningServer
) -> None:
    """Issue 13, parts 1-2, end to end: YandexGPT Pro ``:rc`` (Pro 5.1, 4 units a token) and
    ``:latest`` (Pro 5, 6 units) through the real gateway with no price configured: each row is
    priced by the bundled table in RUB, rounded up to whole units, and ``--by model`` and
    ``--by version`` keep the two apart."""
    import time
    from decimal import ROUND_CEILING, Decimal

    from llmgw.admin.local import LocalAdmin
    from llmgw.admin.ops import Actor

    tokens: dict[str, tuple[int, int]] = {}
    for version in ("rc", "latest"):
        resp = oa.chat.completions.create(
            model=f"yandex/yandexgpt:{version}", messages=[{"role": "user", "content": "привет"}]
        )
        assert resp.usage is not None
        tokens[version] = (resp.usage.prompt_tokens, resp.usage.completion_tokens)
    settings = gateway.app.state.gateway.settings
    ops = LocalAdmin(test_engine, Actor.local(), settings=settings)
    deadline = time.monotonic() + 10
    while sum(r["requests"] for r in ops.usage_stats(by="model")) < 2:
        assert time.monotonic() < deadline, "the usage rows were not written"
        time.sleep(0.05)
    rows = {r["model"]: r for r in ops.usage_stats(by="model")}
    for version, multiplier in (("rc", 4), ("latest", 6)):
        p, c = tokens[version]
        units = (Decimal(p + c) * multiplier).to_integral_value(ROUND_CEILING)
        row = rows[f"yandex/yandexgpt:{version}"]
        assert row["currency"] == "RUB" and row["costs"] == {"RUB": row["cost"]}
        assert Decimal(row["cost"]) == units * Decimal("0.20") / 1000 > 0
    versions = {r["version"]: r["requests"] for r in ops.usage_stats(by="version")}
    assert versions == {"rc": 1, "latest": 1}
