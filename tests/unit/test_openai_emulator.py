"""The OpenAI emulator against the real ``openai`` package: the wire format must be what OpenAI sends."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import openai
import pytest

from llmgw.emulators import openai_content
from llmgw.emulators.openai import FAULTS, create_app

KEY = "sk-emulator-test-key-0123456789"


@pytest.fixture
def client(make_upstream):
    up = make_upstream(api_key=KEY)
    with openai.OpenAI(base_url=up.base_url, api_key=KEY, max_retries=0) as c:
        yield c


def test_chat_json_echoes_and_counts_whitespace_tokens(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello emulator world"},
        ],
    )
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "Echo: hello emulator world"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 4, 9)


def test_chat_max_tokens_truncates_with_finish_reason_length(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three four five"}],
        max_tokens=2,
    )
    assert r.choices[0].message.content == "Echo: one"
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 2


def test_stream_with_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream these words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream these words"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.total_tokens == 3 + 4
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}


def test_tool_call_when_the_message_names_the_tool(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "please call get_weather for Moscow"}],
        tools=[WEATHER],
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.type == "function"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    args = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert args == {"city": "example", "unit": "celsius", "days": 1}
    assert call.id.startswith("call_")

    # the tool result goes back; the model answers in text
    r2 = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": "please call get_weather for Moscow"},
            {"role": "assistant", "tool_calls": [call.model_dump()]},  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny 20C"},
        ],
        tools=[WEATHER],
    )
    assert r2.choices[0].message.content == "Tool result: sunny 20C"


def test_no_tool_call_unless_asked(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "what is the weather"}],
        tools=[WEATHER],
    )
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].finish_reason == "stop"


def test_streamed_tool_call_reassembles(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "weather please"}],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == "get_weather"
    args = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(args)["city"] == "example"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_embeddings_float_and_base64_agree(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha beta", "gamma"], encoding_format="float"
    )
    assert [d.index for d in floats.data] == [0, 1]
    vec = floats.data[0].embedding
    assert len(vec) == 1536
    assert abs(sum(x * x for x in vec) - 1.0) < 1e-6
    assert floats.usage.prompt_tokens == 3
    # the openai package asks for base64 by default and decodes float32 itself
    default = client.embeddings.create(model="text-embedding-3-small", input="alpha beta")
    assert default.data[0].embedding == pytest.approx(vec, abs=1e-6)
    assert floats.data[1].embedding != vec  # different text, different vector
    short = client.embeddings.create(model="text-embedding-3-small", input="x", dimensions=8)
    assert len(short.data[0].embedding) == 8


def test_embedding_base64_is_float32_little_endian() -> None:
    b64 = openai_content.embedding("hello", 4, as_base64=True)
    floats = openai_content.embedding("hello", 4, as_base64=False)
    assert isinstance(b64, str)
    assert list(struct.unpack("<4f", base64.b64decode(b64))) == pytest.approx(floats)


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "text-embedding-3-small"]
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nope")


def test_wrong_key_is_401_with_openai_envelope(make_upstream) -> None:
    up = make_upstream(api_key=KEY)
    with (
        openai.OpenAI(base_url=up.base_url, api_key="sk-wrong", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        c.models.list()
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(info.value)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"


def test_bad_bodies_are_400(upstream) -> None:
    url = upstream.base_url + "/chat/completions"
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(url, json={"model": "gpt-4o-mini"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(url, json={"model": "gpt-4o-mini", "messages": "hi"})
    assert r.status_code == 400
    r = httpx.post(
        upstream.base_url + "/embeddings", json={"model": "text-embedding-3-small", "input": []}
    )
    assert r.status_code == 400
    r = httpx.get(upstream.base_url + "/nowhere")
    assert r.status_code == 404 and "error" in r.json()


def test_over_max_concurrency_is_429_with_retry_after(make_upstream) -> None:
    up = make_upstream(max_concurrency=1, latency_ms=400)
    import threading

    with openai.OpenAI(base_url=up.base_url, api_key="x", max_retries=0) as c:
        slow = threading.Thread(
            target=c.chat.completions.create,
            kwargs={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "slow"}]},
        )
        slow.start()
        for _ in range(200):  # until the slow request holds the only slot
            if up.stats.in_flight:
                break
            threading.Event().wait(0.005)
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
        slow.join()
    assert info.value.response.headers["retry-after"] == "1"
    assert up.stats.rejected == 1 and up.stats.max_in_flight == 1


def test_fail_rate_injects_500s_repeatably(make_upstream) -> None:
    def run() -> list[int]:
        up = make_upstream(fail_rate=0.5, seed=7)
        codes = []
        for _ in range(20):
            r = httpx.post(
                up.base_url + "/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
            )
            codes.append(r.status_code)
        return codes

    first = run()
    assert set(first) == {200, 500}
    assert run() == first


def test_every_fault_name_is_accepted_and_unknown_rejected() -> None:
    for fault in FAULTS:
        create_app(fault=fault)
    with pytest.raises(ValueError, match="unknown fault"):
        create_app(fault="explode")


def test_cli_fault_choices_match_the_emulator() -> None:
    from llmgw.cli.emulate import OpenAIFault

    assert tuple(f.value for f in OpenAIFault) == FAULTS


def test_n_choices_in_json_and_stream(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "two ways"}], n=2
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage is not None and r.usage.completion_tokens == 2 * 3
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "two ways"}],
            n=2,
            stream=True,
        )
    )
    for i in (0, 1):
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == i)
        assert text == "Echo: two ways"


def test_over_the_context_window_is_400_context_length_exceeded(make_upstream) -> None:
    """As OpenAI answers a prompt longer than the model's window: the real client raises
    BadRequestError with code context_length_exceeded; a prompt that fits is answered."""
    up = make_upstream(context_window=5)
    with openai.OpenAI(base_url=up.base_url, api_key="k", max_retries=0) as c:
        ok = c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three four five"}]
        )
        assert ok.choices[0].message.content == "Echo: one two three four five"
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "one two three four five six"}],
                stream=True,
            )
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"
    assert "maximum context length is 5 tokens" in info.value.message
    assert "resulted in 6 tokens" in info.value.message
