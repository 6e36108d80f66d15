"""The GigaChat emulator against the official ``gigachat`` client from PyPI, over real HTTP."""

from __future__ import annotations

import base64
import concurrent.futures
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gigachat import GigaChat
from gigachat.exceptions import (
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    UnprocessableEntityError,
)
from gigachat.models import Chat, Function, FunctionParameters, Messages, MessagesRole

from llmgw.emulators import gigachat as emulator
from llmgw.emulators.runner import serve_in_thread

KEY = emulator.DEFAULT_CREDENTIALS


@pytest.fixture
def server() -> Iterator[tuple[str, emulator.GigaChatEmulator, Any]]:
    app = emulator.create_app()
    with serve_in_thread(app) as srv:
        yield srv.url.rstrip("/"), app.state.emulator, app


def client(url: str, **kw: Any) -> GigaChat:
    """The official client pointed at the emulator (plain http on loopback: no TLS settings needed)."""
    opts: dict[str, Any] = {
        "base_url": f"{url}/api/v1",
        "auth_url": f"{url}/api/v2/oauth",
        "credentials": KEY,
        "scope": "GIGACHAT_API_PERS",
        "model": "GigaChat-2",
        "timeout": 10,
    }
    return GigaChat(**(opts | kw))


def test_official_client_authenticates_chats_streams_lists_and_embeds(server: Any) -> None:
    url, emu, _ = server
    with client(url) as giga:
        reply = giga.chat("Привет!")
        assert reply.choices[0].message.content == "GigaChat emulator reply to: Привет!"
        assert reply.choices[0].finish_reason == "stop"
        assert reply.model == "GigaChat-2:2.0.28.2"
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

        chunks = list(giga.stream("count one two three four five"))
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text == "GigaChat emulator reply to: count one two three four five"
        assert len(chunks) > 2
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason == "stop"

        ids = {m.id_ for m in giga.get_models().data}
        assert {"GigaChat-2", "GigaChat-2-Max", "Embeddings"} <= ids

        emb = giga.embeddings(["first text", "second text"])
        assert [len(e.embedding) for e in emb.data] == [1024, 1024]
        assert emb.data[0].embedding != emb.data[1].embedding

        counts = giga.tokens_count(["Hello world", "x"], model="GigaChat-2")
        assert [c.characters for c in counts] == [11, 1]
    assert emu.oauth_calls == 1  # one token served every call


def test_function_calling_round_trip_with_object_arguments(server: Any) -> None:
    url, emu, _ = server
    weather = Function(
        name="weather_forecast",
        description="forecast",
        parameters=FunctionParameters(
            type="object",
            properties={"location": {"type": "string"}, "num_days": {"type": "integer"}},
            required=["location", "num_days"],
        ),
    )
    with client(url) as giga:
        first = giga.chat(
            Chat(
                messages=[Messages(role=MessagesRole.USER, content="weather?")], functions=[weather]
            )
        )
        msg = first.choices[0].message
        assert first.choices[0].finish_reason == "function_call"
        assert msg.function_call is not None
        assert msg.function_call.name == "weather_forecast"
        assert msg.function_call.arguments == {"location": "Москва", "num_days": 3}
        assert msg.functions_state_id
        history = [
            Messages(role=MessagesRole.USER, content="weather?"),
            msg,
            Messages(role=MessagesRole.FUNCTION, name="weather_forecast", content='{"t": 12}'),
        ]
        second = giga.chat(Chat(messages=history, functions=[weather]))
        assert second.choices[0].message.content == 'Function weather_forecast returned {"t": 12}.'
        # Tool results that are not a JSON object get GigaChat's 422.
        history[-1] = Messages(
            role=MessagesRole.FUNCTION, name="weather_forecast", content="12 degrees"
        )
        with pytest.raises(UnprocessableEntityError):
            giga.chat(Chat(messages=history, functions=[weather]))


def test_expired_token_is_refreshed_by_the_client_after_401(server: Any) -> None:
    url, emu, _ = server
    with client(url) as giga:
        giga.chat("one")
        emu.expire_tokens()
        assert giga.chat("two").choices[0].message.content.endswith("two")
    assert emu.oauth_calls == 2


def test_wrong_key_and_unknown_model_raise_the_clients_errors(server: Any) -> None:
    url, _, _ = server
    bad = base64.b64encode(b"someone:else").decode()
    with client(url, credentials=bad) as giga, pytest.raises(AuthenticationError):
        giga.chat("hi")
    with client(url, model="NoSuchModel") as giga, pytest.raises(NotFoundError):
        giga.chat("hi")


def test_personal_account_gets_429_over_one_concurrent_request() -> None:
    app = emulator.create_app(latency_ms=400)
    with serve_in_thread(app) as srv:
        url = srv.url.rstrip("/")
        with client(url) as giga:
            giga.get_token()
            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                futures = [pool.submit(giga.chat, f"q{i}") for i in range(3)]
                outcomes = [f.exception() for f in futures]
    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, RateLimitError) for o in outcomes if o is not None)
    limited = next(o for o in outcomes if isinstance(o, RateLimitError))
    assert b'"message":"Too many requests"' in (limited.content or b"")


def test_oauth_errors_use_code_and_message() -> None:
    app = emulator.create_app(credentials={KEY: "GIGACHAT_API_B2B"})
    with serve_in_thread(app) as srv:
        oauth = srv.url.rstrip("/") + "/api/v2/oauth"

        def post(headers: dict[str, str], scope: str | None) -> httpx.Response:
            data = {"scope": scope} if scope is not None else {}
            return httpx.post(oauth, headers=headers, data=data)

        good = {"Authorization": f"Basic {KEY}", "RqUID": str(uuid.uuid4())}
        assert post(good, "GIGACHAT_API_PERS").json() == {
            "code": 7,
            "message": "scope from db not fully includes consumed scope",
        }
        assert post(good, "").json()["code"] == 5
        assert post(good, "NOPE").json() == {"code": 1, "message": "scope data format invalid"}
        assert (
            post(
                {"Authorization": "Basic %%%", "RqUID": str(uuid.uuid4())}, "GIGACHAT_API_B2B"
            ).status_code
            == 401
        )
        assert post({"Authorization": f"Basic {KEY}"}, "GIGACHAT_API_B2B").status_code == 400
        ok = post(good, "GIGACHAT_API_B2B")
        assert ok.status_code == 200
        assert ok.json()["expires_at"] > 10**12  # milliseconds


def test_faults_answer_what_they_say() -> None:
    app = emulator.create_app(fault="html")
    emu = app.state.emulator
    with serve_in_thread(app) as srv:
        url = srv.url.rstrip("/")
        tok = httpx.post(
            f"{url}/api/v2/oauth",
            headers={"Authorization": f"Basic {KEY}", "RqUID": str(uuid.uuid4())},
            data={"scope": "GIGACHAT_API_PERS"},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {tok}"}
        body = {"model": "GigaChat", "messages": [{"role": "user", "content": "x"}]}
        chat = f"{url}/api/v1/chat/completions"
        r = httpx.post(chat, headers=headers, json=body)
        assert (r.status_code, r.headers["content-type"].split(";")[0]) == (502, "text/html")
        emu.fault = "redirect"
        assert httpx.post(chat, headers=headers, json=body).status_code == 302
        emu.fault = "echo_credentials"
        assert tok in httpx.post(chat, headers=headers, json=body).text
        emu.fault = "invalid_json"
        with pytest.raises(ValueError):
            httpx.post(chat, headers=headers, json=body).json()
        emu.fault = "429"
        assert httpx.post(chat, headers=headers, json=body).json() == {
            "status": 429,
            "message": "Too many requests",
        }
        emu.fault = None
        assert httpx.post(chat, headers=headers, json=body).status_code == 200
        emu.expire_tokens()
        assert httpx.post(chat, headers=headers, json=body).json() == {
            "status": 401,
            "message": "Token has expired",
        }
