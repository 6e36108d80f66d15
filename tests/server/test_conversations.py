"""Conversations end to end: ``llmgw serve`` (uvicorn) in front of the three real emulators over
HTTP. ``POST /api/chat`` keeps the context, a 30-turn conversation on a model with a small
context window is trimmed as docs/chat.md says and still answers (on each provider; GigaChat's
history counted by its ``tokens/count``), switching provider mid-conversation keeps the context,
tool calls inside a conversation (JSON and SSE), ``/api/messages``, rename, export, delete.

Security: API1 BOLA (another user's or key's conversation is 404 on every route, as an unknown
id, and is left unchanged), AUTH (no key: 401)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.config import Settings
from llmgw.emulators import gigachat, openai, yandexgpt
from llmgw.emulators.runner import RunningServer, serve_in_thread
from llmgw.server.app import gateway_of

from .conftest import UPSTREAM_KEY

WINDOW = 400
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
MODELS = ["local/gpt-4o-mini", "gigachat/GigaChat-2", "yandex/yandexgpt-lite"]


@pytest.fixture
def emulators() -> Iterator[dict[str, RunningServer]]:
    with (
        serve_in_thread(gigachat.create_app(max_concurrency=10)) as giga,
        serve_in_thread(yandexgpt.create_app()) as yc,
        serve_in_thread(openai.create_app(api_key=UPSTREAM_KEY)) as oa,
    ):
        yield {"gigachat": giga, "yandex": yc, "local": oa}


@pytest.fixture
def gateway(
    emulators: dict[str, RunningServer],
    home: Path,
    db_file: str,
    test_engine: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[RunningServer]:
    from llmgw.server import create_app

    monkeypatch.setenv("GIGACHAT_CREDENTIALS", gigachat.DEFAULT_CREDENTIALS)
    monkeypatch.setenv("YANDEX_API_KEY", yandexgpt.DEFAULT_API_KEY)
    monkeypatch.setenv("EMULATOR_API_KEY", UPSTREAM_KEY)
    small = {"context_window": WINDOW}
    settings = Settings(
        home=home,
        database={"url": db_file},
        usage={"flush_interval": 0.05},
        providers=[
            {
                "name": "gigachat",
                "kind": "gigachat",
                "base_url": f"{emulators['gigachat'].url}/api/v1",
                "auth_url": f"{emulators['gigachat'].url}/api/v2/oauth",
                "scope": "GIGACHAT_API_B2B",
                "api_key_env": "GIGACHAT_CREDENTIALS",
                "models": ["GigaChat-2"],
                "model_info": {"GigaChat-2": small},
            },
            {
                "name": "yandex",
                "kind": "yandexgpt",
                "base_url": emulators["yandex"].url,
                "folder_id": yandexgpt.DEFAULT_FOLDER,
                "api_key_env": "YANDEX_API_KEY",
                "models": ["yandexgpt-lite", "yandexgpt"],
                "model_info": {"yandexgpt-lite": small},
            },
            {
                "name": "local",
                "kind": "openai",
                "base_url": f"{emulators['local'].url}/v1",
                "api_key_env": "EMULATOR_API_KEY",
                "models": ["gpt-4o-mini"],
                "model_info": {"gpt-4o-mini": small},
                "prices": {"gpt-4o-mini": {"input": "0.15", "output": "0.60"}},
            },
        ],
    )
    with serve_in_thread(create_app(settings)) as server:
        catalog = gateway_of(server.app).catalog
        deadline = time.monotonic() + 10
        while catalog.refreshed_at is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield server


@pytest.fixture
def admin(test_engine: Any) -> LocalAdmin:
    return LocalAdmin(test_engine, Actor.local())


def _user_key(admin: LocalAdmin, email: str) -> dict[str, str]:
    admin.users_create(email)
    return {"Authorization": "Bearer " + str(admin.keys_create(email, user=email)["key"])}


@pytest.fixture
def ann(admin: LocalAdmin) -> dict[str, str]:
    return _user_key(admin, "ann@example.com")


@pytest.fixture
def bob(admin: LocalAdmin) -> dict[str, str]:
    return _user_key(admin, "bob@example.com")


def _turn(gw: RunningServer, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{gw.url}/api/chat", json=body, headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _sse(gw: RunningServer, auth: dict[str, str], **body: Any) -> tuple[httpx.Response, list[Any]]:
    r = httpx.post(f"{gw.url}/api/chat", json={**body, "stream": True}, headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    events = [
        json.loads(line[6:])
        for line in r.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    assert r.text.endswith("data: [DONE]\n\n")
    return r, events


@pytest.mark.parametrize("model", MODELS)
def test_thirty_turns_on_a_small_window_are_trimmed_and_still_answer(
    gateway: RunningServer, emulators: dict[str, RunningServer], ann: dict[str, str], model: str
) -> None:
    first = _turn(gateway, ann, model=model, system="You are terse.", message="turn 0 " + "w " * 20)
    cid = first["conversation"]["id"]
    assert first["conversation"]["context"]["dropped_turns"] == 0
    assert first["conversation"]["context"]["counted_by"] == "estimate"  # far from the window
    for i in range(1, 30):
        last = _turn(gateway, ann, conversation_id=cid, message=f"turn {i} " + "w " * 20)
    ctx = last["conversation"]["context"]
    assert ctx["strategy"] == "drop_oldest_turns" and ctx["context_window"] == WINDOW
    assert ctx["fits"] and ctx["prompt_tokens"] <= WINDOW - ctx["reserved_for_answer"]
    assert ctx["dropped_turns"] > 0 and ctx["dropped_messages"] == 2 * ctx["dropped_turns"]
    assert ctx["counted_by"] == (
        "gigachat tokens/count" if model.startswith("gigachat") else "estimate"
    )
    answer = last["choices"][0]["message"]["content"]
    assert "turn 29" in answer  # the newest turn is always sent, and answered
    # the upstream received the system prompt and only the kept turns
    if model.startswith("gigachat"):
        sent = emulators["gigachat"].app.state.emulator.requests[-1]["messages"]
    elif model.startswith("yandex"):
        sent = emulators["yandex"].app.state.emulator.requests[-1]["messages"]
    else:
        sent = None
    if sent is not None:
        assert len(sent) == 1 + ctx["kept_messages"]
        assert sent[0]["role"] == "system" and "You are terse." in json.dumps(sent[0])
        assert "turn 0 " not in json.dumps(sent, ensure_ascii=False)
    # the whole history is kept: trimming only changes what is sent
    msgs = httpx.get(
        f"{gateway.url}/api/messages", params={"conversation_id": cid}, headers=ann, timeout=10
    ).json()["data"]
    assert len(msgs) == 60 and [m["seq"] for m in msgs] == list(range(60))
    assert msgs[0]["content"].startswith("turn 0") and msgs[-1]["model"] == model
    conv = httpx.get(f"{gateway.url}/api/conversations/{cid}", headers=ann, timeout=10).json()
    assert conv["messages"] == 60 and conv["usage"]["prompt_tokens"] > 0
    if model.startswith("local"):  # priced: usage and cost per conversation
        assert float(conv["usage"]["cost"]) > 0


def test_switching_provider_mid_conversation_keeps_the_context(
    gateway: RunningServer, emulators: dict[str, RunningServer], ann: dict[str, str]
) -> None:
    one = _turn(gateway, ann, model="local/gpt-4o-mini", message="my name is Ann")
    cid = one["conversation"]["id"]
    two = _turn(gateway, ann, conversation_id=cid, model="gigachat/GigaChat-2", message="my name?")
    assert two["model"].startswith("GigaChat")
    giga_saw = json.dumps(emulators["gigachat"].app.state.emulator.requests[-1]["messages"])
    assert "my name is Ann" in giga_saw and "Echo: my name is Ann" in giga_saw
    three = _turn(gateway, ann, conversation_id=cid, model="yandex/yandexgpt-lite", message="again")
    assert three["conversation"]["model"] == "yandex/yandexgpt-lite"
    yandex_saw = json.dumps(
        emulators["yandex"].app.state.emulator.requests[-1]["messages"], ensure_ascii=False
    )
    assert "my name is Ann" in yandex_saw and "GigaChat emulator reply to: my name?" in yandex_saw
    four = _turn(gateway, ann, conversation_id=cid, message="and now?")  # the last model stays
    assert four["conversation"]["model"] == "yandex/yandexgpt-lite"
    msgs = httpx.get(
        f"{gateway.url}/api/messages", params={"conversation_id": cid}, headers=ann, timeout=10
    ).json()["data"]
    answered = [m["model"] for m in msgs if m["role"] == "assistant"]
    assert answered == [
        "local/gpt-4o-mini",
        "gigachat/GigaChat-2",
        "yandex/yandexgpt-lite",
        "yandex/yandexgpt-lite",
    ]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_tool_calls_inside_a_conversation(
    gateway: RunningServer, ann: dict[str, str], model: str, stream: bool
) -> None:
    first = _turn(gateway, ann, model=model, tools=[WEATHER], message="weather in Moscow?")
    call = first["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "weather"
    cid = first["conversation"]["id"]
    result = {"role": "tool", "tool_call_id": call["id"], "content": '{"t": -5}'}
    if stream:  # the tools are kept by the conversation: the result turn names none
        r, events = _sse(gateway, ann, conversation_id=cid, messages=[result])
        assert r.headers["x-llmgw-conversation-id"] == cid
        text = "".join(
            (e["choices"][0]["delta"].get("content") or "") for e in events if e.get("choices")
        )
    else:
        second = _turn(gateway, ann, conversation_id=cid, messages=[result])
        text = second["choices"][0]["message"]["content"]
    assert "-5" in text
    msgs = httpx.get(
        f"{gateway.url}/api/messages", params={"conversation_id": cid}, headers=ann, timeout=10
    ).json()["data"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
    assert msgs[1]["tool_calls"][0]["function"]["name"] == "weather"
    assert msgs[2]["tool_call_id"] == call["id"] and "-5" in msgs[3]["content"]


def test_a_streamed_turn_is_stored_before_done(gateway: RunningServer, ann: dict[str, str]) -> None:
    r, events = _sse(gateway, ann, model="local/gpt-4o-mini", message="stream this please")
    cid = r.headers["x-llmgw-conversation-id"]
    assert events[-1]["usage"]["total_tokens"] > 0
    msgs = httpx.get(
        f"{gateway.url}/api/messages", params={"conversation_id": cid}, headers=ann, timeout=10
    ).json()["data"]
    assert [(m["role"], m["content"]) for m in msgs] == [
        ("user", "stream this please"),
        ("assistant", "Echo: stream this please"),
    ]


def test_a_failed_turn_stores_nothing(gateway: RunningServer, ann: dict[str, str]) -> None:
    r = httpx.post(
        f"{gateway.url}/api/chat",
        json={"model": "local/no-such-model", "message": "hi"},
        headers=ann,
        timeout=10,
    )
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    r = httpx.post(f"{gateway.url}/api/chat", json={"message": "hi"}, headers=ann, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = httpx.post(
        f"{gateway.url}/api/chat", json={"model": "local/gpt-4o-mini"}, headers=ann, timeout=10
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "message"
    listed = httpx.get(f"{gateway.url}/api/conversations", headers=ann, timeout=10).json()
    assert listed["data"] == []


def test_list_rename_append_export_delete(gateway: RunningServer, ann: dict[str, str]) -> None:
    cid = _turn(gateway, ann, model="local/gpt-4o-mini", message="first question")["conversation"][
        "id"
    ]
    url = f"{gateway.url}/api/conversations/{cid}"
    listed = httpx.get(f"{gateway.url}/api/conversations", headers=ann, timeout=10).json()
    assert [c["title"] for c in listed["data"]] == ["first question"]
    renamed = httpx.patch(url, json={"title": "Renamed"}, headers=ann, timeout=10)
    assert renamed.status_code == 200 and renamed.json()["title"] == "Renamed"
    bad = httpx.patch(url, json={"title": ""}, headers=ann, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "title"
    added = httpx.post(
        f"{gateway.url}/api/messages",
        json={"conversation_id": cid, "role": "user", "content": "a note"},
        headers=ann,
        timeout=10,
    )
    assert added.status_code == 200 and added.json()["data"][0]["seq"] == 2
    exported = httpx.get(f"{url}/export", headers=ann, timeout=10).json()
    assert exported["format"] == "json" and len(exported["data"]) == 3
    md = httpx.get(f"{url}/export?format=markdown", headers=ann, timeout=10).json()["content"]
    assert md.startswith("# Renamed\n") and "## assistant (local/gpt-4o-mini)" in md
    assert "a note" in md
    gone = httpx.delete(url, headers=ann, timeout=10)
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert httpx.get(url, headers=ann, timeout=10).status_code == 404


def test_another_owners_conversation_is_not_found_everywhere(  # API1 BOLA
    gateway: RunningServer,
    ann: dict[str, str],
    bob: dict[str, str],
    make_key: Callable[..., Any],
) -> None:
    cid = _turn(gateway, ann, model="local/gpt-4o-mini", message="ann's secret plan")[
        "conversation"
    ]["id"]
    keyless = {"Authorization": f"Bearer {make_key('no-user').secret}"}  # a key without a user
    url = f"{gateway.url}/api/conversations/{cid}"
    for other in (bob, keyless):
        attempts = [
            httpx.get(url, headers=other),
            httpx.patch(url, json={"title": "mine"}, headers=other),
            httpx.get(f"{url}/export?format=markdown", headers=other),
            httpx.delete(url, headers=other),
            httpx.get(f"{gateway.url}/api/messages?conversation_id={cid}", headers=other),
            httpx.post(
                f"{gateway.url}/api/messages",
                json={"conversation_id": cid, "role": "user", "content": "x"},
                headers=other,
            ),
            httpx.post(
                f"{gateway.url}/api/chat",
                json={"conversation_id": cid, "message": "what was the plan?"},
                headers=other,
                timeout=10,
            ),
        ]
        for r in attempts:
            assert r.status_code == 404, (r.request.method, r.request.url, r.text)
            assert "secret plan" not in r.text
        listed = httpx.get(f"{gateway.url}/api/conversations", headers=other).json()["data"]
        assert listed == []
    unknown = httpx.get(f"{gateway.url}/api/conversations/not-a-uuid", headers=bob)
    assert unknown.status_code == 404
    assert httpx.get(url).status_code == 401  # no key at all
    mine = httpx.get(url, headers=ann).json()  # nothing changed for the owner
    assert mine["title"] == "ann's secret plan" and mine["messages"] == 2


def test_the_openapi_examples_have_the_shape_of_the_real_answers(
    gateway: RunningServer, ann: dict[str, str]
) -> None:
    """Every Conversations operation in the OpenAPI document: its 200 example has exactly the
    fields the server answers with (lists: the fields of their items; nested objects too)."""
    from llmgw.server.openapi import openapi_document

    def keys(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("object") == "list" and isinstance(value.get("data"), list):
                return keys(value["data"][0]) if value["data"] else None
            return {k: keys(v) for k, v in value.items() if isinstance(v, dict)} | {
                "": sorted(value)
            }
        return None

    turn = _turn(gateway, ann, model="local/gpt-4o-mini", message="Weather in Paris")
    cid = turn["conversation"]["id"]
    checked = []
    ops = [
        (path, method, op)
        for path, item in openapi_document()["paths"].items()
        for method, op in item.items()
        if "Conversations" in op["tags"]
    ]
    ops.sort(key=lambda o: o[1] == "delete")  # the delete last
    for path, method, op in ops:
        url = gateway.url + path.replace("{id}", cid)
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        example_body = dict(body["example"]) if body else None
        if example_body and "conversation_id" in example_body:
            example_body["conversation_id"] = cid
        params = {
            p["name"]: (cid if p["name"] == "conversation_id" else p["example"])
            for p in op.get("parameters", [])
            if p["in"] == "query"
        }
        r = httpx.request(
            method.upper(), url, headers=ann, json=example_body, params=params, timeout=30
        )
        assert r.status_code == 200, (method, path, r.text)
        example = op["responses"]["200"]["content"]["application/json"]["example"]
        got, want = keys(r.json()), keys(example)
        if path == "/api/chat":  # the completion is the upstream's (more fields by provider)
            assert set(want[""]) <= set(got[""]), (method, path)
            got, want = got["conversation"], want["conversation"]
        assert got == want, (method, path)
        checked.append(op["operationId"])
    assert len(checked) == 8


def test_a_stream_cut_by_the_client_is_billed_but_not_stored(
    gateway: RunningServer,
    emulators: dict[str, RunningServer],
    ann: dict[str, str],
    read_usage: Callable[[], list[dict[str, Any]]],
) -> None:
    cid = _turn(gateway, ann, model="local/gpt-4o-mini", message="first")["conversation"]["id"]
    emulators["local"].app.state.emulator.chunk_delay = 0.3
    body = {"conversation_id": cid, "message": "a slow " + "word " * 30, "stream": True}
    with httpx.stream("POST", f"{gateway.url}/api/chat", json=body, headers=ann, timeout=30) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and "Echo" in line:
                break  # the first piece of text: hang up
    deadline = time.monotonic() + 10
    while True:  # the relay notices the hang-up and records the call
        rows = [u for u in read_usage() if cid in str(u["metadata"] or "")]
        if len(rows) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [u["status"] for u in rows] == [200, 499]
    msgs = httpx.get(
        f"{gateway.url}/api/messages", params={"conversation_id": cid}, headers=ann, timeout=10
    ).json()["data"]
    assert [m["content"] for m in msgs] == ["first", "Echo: first"]  # the cut turn: not stored


def test_a_call_over_the_keys_limit_reads_nothing_and_calls_no_upstream(  # RL-1, RL-5 cost
    gateway: RunningServer,
    emulators: dict[str, RunningServer],
    admin: LocalAdmin,
    ann: dict[str, str],
) -> None:
    """RL-1 on ``/api/chat``: admission comes before the conversation is read. A key with
    ``rpm=1`` gets its second turn refused (429 with ``Retry-After``) and that call loads no
    conversation from the database and makes no GigaChat ``tokens/count`` (nor chat) call, though
    the same turn on the first call did both (a caller over its limit cannot amplify load)."""
    from sqlalchemy import event

    # a conversation long enough that continuing it asks GigaChat for a count
    cid = _turn(gateway, ann, model="gigachat/GigaChat-2", message="history " + "w " * 400)[
        "conversation"
    ]["id"]
    limited = {
        "Authorization": "Bearer "
        + str(admin.keys_create("ann-rpm1", user="ann@example.com", rpm=1)["key"])
    }
    emu = emulators["gigachat"].app.state.emulator
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = gateway_of(gateway.app).engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        calls, counts = emu.api_calls, emu.token_counts
        first = _turn(gateway, limited, conversation_id=cid, message="and now?")
        assert first["conversation"]["context"]["counted_by"] == "gigachat tokens/count"
        assert emu.token_counts == counts + 1 and emu.api_calls == calls + 2  # count + chat
        assert any("conversation_messages" in s for s in statements)  # the history was read
        time.sleep(0.2)  # the turn's own writes (usage, the stored turn) are done
        calls, counts, sent = emu.api_calls, emu.token_counts, len(emu.requests)
        statements.clear()

        r = httpx.post(
            f"{gateway.url}/api/chat",
            json={"conversation_id": cid, "message": "once more"},
            headers=limited,
            timeout=30,
        )
        assert r.status_code == 429, r.text
        assert "rate limit reached" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        time.sleep(0.2)
        assert emu.api_calls == calls and emu.token_counts == counts
        assert len(emu.requests) == sent
        assert not [s for s in statements if "conversation" in s.lower()], statements
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    # nothing of the refused turn was stored
    msgs = httpx.get(
        f"{gateway.url}/api/messages", params={"conversation_id": cid}, headers=ann, timeout=10
    ).json()["data"]
    assert [m["content"] for m in msgs if m["role"] == "user"][-1] == "and now?"
