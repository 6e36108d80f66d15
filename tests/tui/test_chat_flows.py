"""Pilot tests of the Chat screen on an in-memory ``ChatSource`` (fast; the same flows against a
real gateway are in ``test_chat_live.py``): conversations started, continued, renamed and
deleted (after a confirmation), the model switched mid-conversation, every setting validated and
sent, Escape cancelling a stream, errors shown in place, a catalog that fails then comes back,
and local mode's connect form."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from textual.widgets import Button, Input, Select, Static

from llmgw.admin.chat import ChatDelta, ChatEvent, ChatOpened, ModelChoice
from llmgw.errors import (
    AuthError,
    BudgetExceeded,
    Conflict,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    Unavailable,
    UpstreamError,
    UsageError,
)
from llmgw.tui.chat_settings import SPECS, fields, summary_line, to_text
from llmgw.tui.screens.chat import ChatScreen
from llmgw.tui.widgets.chat_log import failure
from llmgw.tui.widgets.dialogs import ConfirmScreen, FormScreen
from tests.tui.conftest import FixtureChat


def status(app: Any) -> str:
    return str(app.screen.query_one("#status-line", Static).render())


def answers(app: Any) -> list[str]:
    return [str(w.render()) for w in app.screen.query(".chat-answer")]


def errors(app: Any) -> list[tuple[str, str]]:
    return [(str(w.border_title), str(w.render())) for w in app.screen.query(".chat-error")]


async def send(pilot: Any, text: str) -> None:
    pilot.app.screen.query_one("#prompt", Input).value = text
    await pilot.press("enter")


async def open_chat(pilot: Any, wait: Any) -> ChatScreen:
    await wait(pilot)
    await pilot.press("7")
    await wait(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    return screen


class HangingChat(FixtureChat):
    """Sends one piece, then waits for ever; records that it was cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = False

    async def turn(self, conversation_id: str | None, message: str, *, model: str | None,
                   system: str | None = None,
                   settings: Mapping[str, Any] | None = None) -> AsyncIterator[ChatEvent]:  # fmt: skip
        yield ChatOpened("c-new")
        yield ChatDelta("Thinking")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class FailingChat(FixtureChat):
    """The catalog fails while ``down``; each turn raises the next error of ``errors``
    (after one piece when ``partial``)."""

    def __init__(self, *errs: Exception, partial: bool = False) -> None:
        super().__init__()
        self.down = False
        self.errors = list(errs)
        self.partial = partial

    async def catalog(self) -> list[ModelChoice]:
        if self.down:
            raise Unavailable("cannot reach the llmgw server at http://127.0.0.1:8080")
        return await super().catalog()

    async def turn(self, conversation_id: str | None, message: str, *, model: str | None,
                   system: str | None = None,
                   settings: Mapping[str, Any] | None = None) -> AsyncIterator[ChatEvent]:  # fmt: skip
        if self.partial:
            yield ChatOpened(conversation_id)
            yield ChatDelta("Partial")
        raise self.errors.pop(0)


def test_settings_parse_show_and_summarise() -> None:
    """Every setting /api/chat takes is in the form, with its checks."""
    from llmgw.admin.chat import SETTING_NAMES
    from llmgw.server.routes.conversations import SETTINGS

    assert SETTINGS == SETTING_NAMES, "the protocol names what the server takes"
    assert sorted(s[0] for s in SPECS) == sorted(["system", *SETTING_NAMES])
    parse = {name: p for name, _label, _ph, p in SPECS}
    good = {
        "temperature": ("0.7", 0.7), "top_p": ("1", 1.0), "max_tokens": ("64", 64),
        "stop": ('["END", "##"]', ["END", "##"]), "seed": ("-3", -3),
        "response_format": ("json_object", {"type": "json_object"}),
        "tools": ('[{"type": "function", "function": {"name": "f"}}]',
                  [{"type": "function", "function": {"name": "f"}}]),
        "tool_choice": ("required", "required"), "parallel_tool_calls": ("no", False),
        "reasoning_effort": ("low", "low"), "presence_penalty": ("-2", -2.0),
    }  # fmt: skip
    for name, (text, value) in good.items():
        assert parse[name](text) == value, name
        assert parse[name](to_text(value)) == value, f"{name} round-trips through the form"
    bad = {
        "temperature": "2.5", "top_p": "hot", "max_tokens": "0", "stop": "[1, 2]", "seed": "1.5",
        "response_format": "{", "tools": '{"a": 1}', "tool_choice": "[]",
        "parallel_tool_calls": "maybe", "reasoning_effort": "max", "frequency_penalty": "3",
    }  # fmt: skip
    for name, text in bad.items():
        with pytest.raises(ValueError):
            parse[name](text)
    assert all(parse[name]("") is None for name in parse), "empty: not sent"
    assert summary_line({}) == "default settings (ctrl+o to change)"
    line = summary_line({"system": "Be\nterse.", "temperature": 0.2, "tools": [{}], "seed": None})
    assert line == "system: Be terse. · temperature 0.2 · tools: 1"
    assert [f.value for f in fields({"stop": "END"}) if f.name == "stop"] == ["END"]


def test_failures_are_named() -> None:
    assert failure(BudgetExceeded("spent", retry_after=7200))[0] == "Budget exceeded"
    assert failure(RateLimited("slow down", retry_after=12)) == (
        "Rate limited",
        "try again in 12 s",
    )
    ctx = InvalidRequest("upstream openai rejected the request: maximum context length is 50")
    assert failure(ctx)[0] == "Context too long"
    assert failure(UpstreamError("upstream openai failed (HTTP 500)"))[0] == "Provider unavailable"
    assert failure(Unavailable("cannot reach the llmgw server at x"))[0] == "Gateway unreachable"
    assert failure(ValueError("x")) == ("Failed", "ValueError")
    assert failure(BudgetExceeded("spent", retry_after=90))[1] == "the budget resets in 90 s"
    assert failure(BudgetExceeded("spent", retry_after=86400))[1] == "the budget resets in 24 h"
    assert failure(BudgetExceeded("spent"))[1] == "the budget resets next period"
    assert failure(RateLimited("slow"))[1] == "try again shortly"
    assert failure(AuthError("no"))[0] == "Refused"
    assert failure(ModelNotFound("no such model"))[0] == "Unknown model"
    assert failure(InvalidRequest("temperature out of range"))[0] == "Request refused"
    assert failure(Conflict("two turns at once"))[0] == "Failed"


async def test_a_conversation_is_started_continued_switched_and_its_settings_sent(
    make_app, remote_ops, wait
):
    chat = FixtureChat()
    app = make_app(remote_ops, chat=chat)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot, wait)
        assert screen.query_one("#chat-provider", Select).value == "gigachat"
        assert screen.model == "gigachat/GigaChat-2-Max"
        assert status(app).startswith("3 models at http://127.0.0.1:8080")
        await pilot.press("ctrl+o")
        await wait(pilot)
        form = app.screen
        assert isinstance(form, FormScreen)
        form.query_one("#f-temperature", Input).value = "3"
        form.query_one("#f-system", Input).value = "You are terse."
        form.submit()
        await wait(pilot)
        assert "temperature (0-2): temperature goes from 0 to 2" in str(
            form.query_one("#form-error", Static).render()
        )
        form.query_one("#f-temperature", Input).value = "0.5"
        form.query_one("#f-max_tokens", Input).value = "20"
        form.submit()
        await wait(pilot)
        assert app.screen is screen
        line = str(screen.query_one("#chat-settings-line", Static).render())
        assert line == "system: You are terse. · temperature 0.5 · max_tokens 20"
        await send(pilot, "hello")
        await wait(pilot)
        assert answers(app) == ["Echo: hello"]
        assert status(app) == (
            "gigachat/GigaChat-2-Max · 12 in + 2 out tokens · 812 ms, first token 121 ms"
        )
        assert chat.sent[-1] == {"conversation_id": None, "message": "hello",
                                 "model": "gigachat/GigaChat-2-Max", "system": "You are terse.",
                                 "temperature": 0.5, "max_tokens": 20}  # fmt: skip
        cid = screen.conversation_id
        assert cid is not None and screen.conversations.records[0]["id"] == cid
        # switch provider and model mid-conversation: same conversation, a note in the pane
        screen.query_one("#chat-provider", Select).value = "openai"
        await wait(pilot)
        assert screen.model == "openai/gpt-4o-mini"
        await send(pilot, "again")
        await wait(pilot)
        assert chat.sent[-1]["conversation_id"] == cid
        assert chat.sent[-1]["model"] == "openai/gpt-4o-mini"
        notes = [str(w.render()) for w in screen.query(".chat-note")]
        assert notes == [
            "model: gigachat/GigaChat-2-Max → openai/gpt-4o-mini (the context goes with it)"
        ]
        await pilot.press("ctrl+n")
        await wait(pilot)
        assert answers(app) == [] and screen.conversation_id is None
        await send(pilot, "second one")
        await wait(pilot)
        assert chat.sent[-1]["conversation_id"] is None
        assert len(screen.conversations.records) == 2
        # continue the first: its messages, model and settings come back
        screen.conversations.focus()
        screen.conversations.highlighted = 1
        await pilot.press("enter")
        await wait(pilot)
        assert screen.conversation_id == cid
        assert answers(app) == ["Echo: hello", "Echo: again"]
        assert screen.model == "openai/gpt-4o-mini"
        assert screen.settings["temperature"] == 0.5
    assert chat.closed, "the chat's connections are closed with the app"


async def test_rename_and_delete_with_confirmation(make_app, remote_ops, wait):
    chat = FixtureChat()
    app = make_app(remote_ops, chat=chat)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot, wait)
        await send(pilot, "first")
        await wait(pilot)
        cid = screen.conversation_id
        assert cid is not None
        await pilot.press("ctrl+t")
        await wait(pilot)
        assert isinstance(app.screen, FormScreen)
        app.screen.query_one("#f-title", Input).value = "Renamed [b]chat"
        await pilot.press("enter")
        await wait(pilot)
        assert chat.store[cid]["title"] == "Renamed [b]chat"
        assert str(screen.conversations.get_option_at_index(0).prompt).startswith(
            "● Renamed [b]chat"
        ), "a title is never read as markup"
        screen.conversations.focus()
        await pilot.press("d")
        await wait(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "Renamed [b]chat" in app.screen.question and "2 messages" in app.screen.question
        await pilot.press("n")
        await wait(pilot)
        assert cid in chat.store, "cancelled: nothing deleted"
        await pilot.press("d")
        await wait(pilot)
        await pilot.press("y")
        await wait(pilot)
        assert chat.store == {} and screen.conversations.records == []
        assert screen.conversation_id is None and answers(app) == []
        assert status(app) == "deleted"


async def test_escape_stops_the_stream(make_app, remote_ops, wait):
    chat = HangingChat()
    app = make_app(remote_ops, chat=chat)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot, wait)
        await send(pilot, "think hard")
        for _ in range(50):
            await pilot.pause(0.02)
            if screen.answer:
                break
        assert screen.streaming and "Escape stops" in status(app)
        await pilot.press("1")  # typed into the prompt while it has focus: no screen switch
        assert app.screen is screen
        await pilot.press("escape")
        await wait(pilot)
        assert chat.cancelled, "Escape cancels the stream (the connection closes)"
        assert not screen.streaming and screen.conversation_id is None
        assert answers(app) == ["Thinking [stopped]"]
        assert status(app).startswith("stopped")
        await pilot.press("ctrl+g")
        assert app.focused is screen.query_one("#chat-provider")
        await pilot.press("ctrl+l")
        assert app.focused is screen.conversations
        await pilot.press("escape")  # from elsewhere: back to the prompt
        assert app.focused is screen.query_one("#prompt")
        await pilot.press("escape")  # not streaming: leaves the prompt, so keys work again
        await pilot.press("1")
        await wait(pilot)
        assert app.screen is not screen


async def test_errors_are_shown_in_place(make_app, remote_ops, wait):
    chat = FailingChat(
        BudgetExceeded("the budget of key ci is spent", retry_after=3600),
        RateLimited("rate limit of 1 requests per minute reached", retry_after=42),
        InvalidRequest("upstream openai rejected the request: This model's maximum context "
                       "length is 50 tokens. However, your messages resulted in 80 tokens."),
        UpstreamError("upstream openai failed (HTTP 500)"),
    )  # fmt: skip
    app = make_app(remote_ops, chat=chat)
    async with app.run_test(size=(100, 40)) as pilot:
        await open_chat(pilot, wait)
        for text in ("a", "b", "c", "d"):
            await send(pilot, text)
            await wait(pilot)
        shown = errors(app)
        assert [t for t, _ in shown] == [
            "Budget exceeded", "Rate limited", "Context too long", "Provider unavailable"
        ]  # fmt: skip
        assert shown[0][1] == "the budget of key ci is spent\n→ the budget resets in 60 min"
        assert shown[1][1].endswith("→ try again in 42 s")
        assert "maximum context length is 50 tokens" in shown[2][1]
        assert answers(app) == [], "no empty answer box is left behind"
        assert status(app) == "failed (not stored): upstream openai failed (HTTP 500)"
        assert app.screen.conversation_id is None


async def test_a_failure_mid_stream_keeps_the_partial_answer(make_app, remote_ops, wait):
    chat = FailingChat(UpstreamError("upstream openai failed mid-stream"), partial=True)
    app = make_app(remote_ops, chat=chat)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_chat(pilot, wait)
        await send(pilot, "hi")
        await wait(pilot)
        assert answers(app) == ["Partial"]
        assert errors(app) == [("Provider unavailable", "upstream openai failed mid-stream\n"
                                "→ try again, or pick another provider or model")]  # fmt: skip


async def test_the_catalog_fails_then_comes_back(make_app, remote_ops, wait):
    chat = FailingChat()
    chat.down = True
    app = make_app(remote_ops, chat=chat, poll_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("7")
        await pilot.pause(0.1)
        assert status(app).startswith("stale since 09:30: cannot reach the llmgw server")
        assert any(n.title == "Chat: models failed" for n in app._notifications)
        chat.down = False
        for _ in range(50):  # the screen tries again by itself every poll interval
            await pilot.pause(0.05)
            if not status(app).startswith("stale"):
                break
        assert status(app).startswith("3 models at")
        for _ in range(50):  # App.notify posts a message: the toast lands a step after
            if any(n.message == "Connection restored" for n in app._notifications):
                break
            await pilot.pause(0.02)
        assert any(n.message == "Connection restored" for n in app._notifications)


async def test_local_mode_says_chat_needs_a_server_and_connects(make_app, ops, wait):
    chat = FixtureChat()
    given: list[tuple[str, str]] = []

    def connect(url: str, key: str) -> FixtureChat:
        given.append((url, key))
        if not url.startswith("http"):
            raise UsageError("--url is not an http(s) URL")
        return chat

    app = make_app(ops, connect_chat=connect, local_chat_url="http://127.0.0.1:8080")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot, wait)
        note = str(screen.query_one("#chat-note", Static).render())
        assert note.startswith("Chat needs a running llmgw serve")
        assert screen.query_one("#chat-url", Input).value == "http://127.0.0.1:8080"
        assert screen.query_one("#prompt", Input).disabled
        assert not screen.query_one("#chat-body").display
        await pilot.press("ctrl+n")  # needs a server: nothing happens
        screen.query_one("#chat-url", Input).value = "localhost:8080"
        screen.query_one("#chat-key", Input).value = "llmgw_secret"
        screen.query_one("#chat-connect-button", Button).press()
        await wait(pilot)
        assert status(app) == "--url is not an http(s) URL"
        assert "llmgw_secret" not in status(app)
        screen.query_one("#chat-url", Input).value = "http://127.0.0.1:8080"
        screen.query_one("#chat-connect-button", Button).press()
        await wait(pilot)
        assert given[-1] == ("http://127.0.0.1:8080", "llmgw_secret")
        assert app.chat is chat and not screen.query_one("#chat-connect").display
        assert status(app).startswith("3 models at")
        await send(pilot, "hi")
        await wait(pilot)
        assert answers(app) == ["Echo: hi"]
