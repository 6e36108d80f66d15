"""The Chat screen against a real ``llmgw serve`` in front of real ``llmgw emulate openai``
processes (free loopback ports), driven as a person would: a conversation created, streamed,
continued with another provider's model, renamed and deleted (after a confirmation), continued
again from the list; errors shown in place: a provider that is down, a context that is too long,
a key over its rate limit and a user over its budget. Snapshots of the screen at 80x24 and
160x48 (pytest-textual-snapshot) and ``docs/tui-chat.svg`` are taken against the same gateway.

Setup: ``openai`` (an emulator streaming a word every 20 ms, models gpt-4o-mini and gpt-4o),
``small`` (an emulator answering 400 ``context_length_exceeded`` past 40 tokens, model tiny),
``gone`` (a closed port). Each test uses its own user and key, so its conversation list holds
only its own conversations.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.widgets import Input, Select, Static

from llmgw.admin.chat_remote import RemoteChat
from llmgw.admin.remote import RemoteAdmin
from llmgw.tui.app import LlmgwApp
from llmgw.tui.screens.chat import ChatScreen
from llmgw.tui.widgets.dialogs import ConfirmScreen, FormScreen
from tests.tui.conftest import FixtureOps, clock
from tests.tui.test_docs_screenshots import check_and_keep, render
from tests.tui.test_live_server import LLMGW, _free_port, _wait_http

pytestmark = pytest.mark.slow


@dataclass
class Gateway:
    url: str
    port: int
    key: Callable[..., str]
    """``key(email, rpm=None, budget=None)``: a new user (an admin) and its key."""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("chat-live")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    env["LLMGW_HOME"] = str(tmp)
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def spawn(args: list[str], name: str, ready: str) -> None:
        log = (tmp / f"{name}.log").open("wb")
        logs.append(log)
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        _wait_http(ready, proc, tmp / f"{name}.log", timeout=90)  # a loaded CI box is slow

    main, small = _free_port(), _free_port()
    spawn(
        [
            LLMGW,
            "emulate",
            "openai",
            "--port",
            str(main),
            "--chunk-delay-ms",
            "20",
            "--models",
            "gpt-4o-mini,gpt-4o",
        ],
        "main",
        f"http://127.0.0.1:{main}/v1/models",
    )
    spawn([LLMGW, "emulate", "openai", "--port", str(small), "--context-window", "40",
           "--models", "tiny"], "small", f"http://127.0.0.1:{small}/v1/models")  # fmt: skip
    cfg = tmp / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp / "gw.db"}"\n\n'
        f'[[providers]]\nname = "openai"\nkind = "openai"\n'
        f'base_url = "http://127.0.0.1:{main}/v1"\nmodels = ["gpt-4o-mini", "gpt-4o"]\n'
        '[providers.prices."gpt-4o-mini"]\ninput = "100000"\noutput = "100000"\n\n'
        f'[[providers]]\nname = "small"\nkind = "openai"\n'
        f'base_url = "http://127.0.0.1:{small}/v1"\nmodels = ["tiny"]\n\n'
        f'[[providers]]\nname = "gone"\nkind = "openai"\n'
        f'base_url = "http://127.0.0.1:{_free_port()}/v1"\nmodels = ["m"]\n'
    )

    def cli(*args: str) -> str:
        done = subprocess.run([LLMGW, "--config", str(cfg), *args], env=env,
                              capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        return done.stdout

    def key(email: str, rpm: int | None = None, budget: str | None = None) -> str:
        cli("users", "create", "--email", email, "--role", "admin")
        limits = ["--rpm", str(rpm)] if rpm else []
        made = json.loads(cli("keys", "create", "-n", email, "--user", email, *limits, "--json"))
        if budget:
            cli("budgets", "set", budget, "--user", email, "--period", "day",
                "--currency", "USD", "--hard-stop")  # fmt: skip
        return str(made["key"])

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    spawn([LLMGW, "--config", str(cfg), "serve", "--port", str(port)], "serve", f"{url}/readyz")
    try:
        yield Gateway(url, port, key)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for log in logs:
            log.close()


class Renamed(httpx.AsyncHTTPTransport):
    """Real HTTP to the gateway's port, while the screen names it ``http://gateway.test`` (the
    snapshots must not show a port that changes each run)."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        return await super().handle_async_request(request)


def steady_timer() -> Callable[[], float]:
    """A clock that moves 0.25 s at each reading: fixed latencies on the status line."""
    t = [0.0]

    def now() -> float:
        t[0] += 0.25
        return t[0]

    return now


def status(app: Any) -> str:
    return str(app.screen.query_one("#status-line", Static).render())


def answers(app: Any) -> list[str]:
    return [str(w.render()) for w in app.screen.query(".chat-answer")]


def errors(app: Any) -> list[tuple[str, str]]:
    return [(str(w.border_title), str(w.render())) for w in app.screen.query(".chat-error")]


async def until(pilot: Any, check: Callable[[], bool], what: str, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"{what} never happened; status: {status(pilot.app)}"
        await pilot.pause(0.05)


async def chat_screen(pilot: Any) -> ChatScreen:
    await pilot.press("7")
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    await until(pilot, lambda: bool(screen.catalog), "the catalog")
    for box in screen.query(Input):
        box.cursor_blink = False
    return screen


async def say(pilot: Any, screen: ChatScreen, text: str) -> None:
    """Type a message, send it and wait for the answer (or the error)."""
    screen.query_one("#prompt", Input).value = text
    before = len(answers(pilot.app)) + len(errors(pilot.app))
    await pilot.press("enter")
    await until(
        pilot,
        lambda: not screen.streaming and len(answers(pilot.app)) + len(errors(pilot.app)) > before,
        f"the answer to {text!r}",
    )
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def pick(screen: ChatScreen, provider: str, model: str) -> None:
    screen.query_one("#chat-provider", Select).value = provider
    screen._fill_models(model)


def app_for(gw: Gateway, key: str, *, admin: RemoteAdmin | None = None, **kw: Any) -> LlmgwApp:
    chat = RemoteChat(gw.url, key, **kw)
    ops: Any = admin or FixtureOps(mode="remote")
    return LlmgwApp(ops, clock=clock, poll_interval=3600, chat=chat)


async def test_a_conversation_from_start_to_delete(gw: Gateway) -> None:
    """Create, stream, switch model mid-conversation, rename, continue from the list, delete
    after a confirmation: every step checked against the server's own records."""
    key = gw.key("flow@example.com")
    admin = RemoteAdmin(gw.url, key, source="tui")
    app = app_for(gw, key, admin=admin)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await chat_screen(pilot)
            ids = [m.id for m in screen.catalog]
            assert ids == ["gone/m", "openai/gpt-4o", "openai/gpt-4o-mini", "small/tiny"]
            pick(screen, "openai", "openai/gpt-4o-mini")
            screen.query_one("#prompt", Input).value = "hello gateway from the dashboard"
            pieces: list[str] = []
            pane = screen.log_pane
            update = pane.update_answer

            def record(text: str) -> None:
                pieces.append(text)
                update(text)

            pane.update_answer = record  # type: ignore[method-assign]
            await pilot.press("enter")
            await until(pilot, lambda: not screen.streaming and bool(screen.last), "the answer")
            assert pieces[:2] == ["Echo:", "Echo: hello"], "streamed piece by piece"
            assert answers(app) == ["Echo: hello gateway from the dashboard"]
            assert status(app).startswith("gpt-4o-mini · 5 in + 6 out tokens · ")
            cid = screen.conversation_id
            assert cid is not None
            await until(pilot, lambda: bool(screen.conversations.records), "the list")
            assert screen.conversations.records[0]["id"] == cid
            # another provider's model mid-conversation: the context goes with it
            pick(screen, "small", "small/tiny")
            await say(pilot, screen, "and now tiny")
            assert answers(app)[-1] == "Echo: and now tiny"
            assert screen.conversation_id == cid
            history = await app.chat.messages(cid)  # type: ignore[union-attr]
            assert [(m.role, m.model) for m in history] == [
                ("user", None), ("assistant", "openai/gpt-4o-mini"),
                ("user", None), ("assistant", "small/tiny"),
            ]  # fmt: skip
            # rename (ctrl+t) and see it in the list and on the server
            await pilot.press("ctrl+t")
            await until(pilot, lambda: isinstance(app.screen, FormScreen), "the rename form")
            app.screen.query_one("#f-title", Input).value = "Gateway [bold]demo"
            await pilot.press("enter")
            await until(pilot, lambda: status(app) == "renamed", "the rename")
            await app.workers.wait_for_complete()
            assert screen.conversations.records[0]["title"] == "Gateway [bold]demo"
            # a new conversation, then back to the first from the list
            await pilot.press("ctrl+n")
            await say(pilot, screen, "second conversation")
            await until(pilot, lambda: len(screen.conversations.records) == 2, "two in the list")
            screen.conversations.focus()
            screen.conversations.highlighted = [
                r["id"] for r in screen.conversations.records
            ].index(cid)
            await pilot.press("enter")
            await until(pilot, lambda: screen.conversation_id == cid, "the first again")
            await until(pilot, lambda: len(answers(app)) == 2, "its messages")
            assert answers(app) == ["Echo: hello gateway from the dashboard", "Echo: and now tiny"]
            assert screen.model == "small/tiny", "continued with its last model"
            # delete: asked first; n keeps it, y deletes it on the server
            screen.conversations.focus()
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            question = app.screen.question  # type: ignore[attr-defined]
            assert "'Gateway [bold]demo'" in question and "4 messages" in question
            await pilot.press("n")
            await pilot.pause(0.2)
            assert len(await app.chat.conversations()) == 2  # type: ignore[union-attr]
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            await pilot.press("y")
            await until(pilot, lambda: status(app) == "deleted", "the delete")
            await app.workers.wait_for_complete()
            left = await app.chat.conversations()  # type: ignore[union-attr]
            assert [r["title"] for r in left] == ["second conversation"]
            assert [r["title"] for r in screen.conversations.records] == ["second conversation"]
            assert screen.conversation_id is None and answers(app) == []
    finally:
        admin.close()


async def test_errors_are_shown_in_the_conversation_pane(gw: Gateway) -> None:
    """A provider that is down and a context too long: a box in the pane says which, the turn
    is not stored, and the conversation goes on."""
    app = app_for(gw, gw.key("errors@example.com"))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await chat_screen(pilot)
        pick(screen, "openai", "openai/gpt-4o-mini")
        await say(pilot, screen, "first question")
        cid = screen.conversation_id
        assert cid is not None
        pick(screen, "gone", "gone/m")
        await say(pilot, screen, "are you there")
        title, text = errors(app)[-1]
        assert title == "Provider unavailable", text
        assert "gone" in text and "→ try again, or pick another provider or model" in text
        pick(screen, "small", "small/tiny")
        await say(pilot, screen, " ".join(["word"] * 45))
        title, text = errors(app)[-1]
        assert title == "Context too long", text
        assert "maximum context length is 40 tokens" in text
        assert "start a new conversation (ctrl+n)" in text
        pick(screen, "openai", "openai/gpt-4o-mini")
        await say(pilot, screen, "still here")
        assert answers(app)[-1] == "Echo: still here"
        assert screen.conversation_id == cid
        stored = await app.chat.messages(cid)  # type: ignore[union-attr]
        assert [m.content for m in stored if m.role == "user"] == ["first question", "still here"]


async def test_rate_limit_and_budget_are_shown_in_place(gw: Gateway) -> None:
    """A key over its rpm gets "Rate limited" with when to try again; a user whose budget is
    spent gets "Budget exceeded" with when it resets (402 from the gateway)."""
    app = app_for(gw, gw.key("limited@example.com", rpm=2))
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await chat_screen(pilot)
        pick(screen, "openai", "openai/gpt-4o-mini")
        for n in range(4):
            await say(pilot, screen, f"turn {n}")
            if errors(app):
                break
        title, text = errors(app)[0]
        assert title == "Rate limited", text
        assert "→ try again in " in text and " s" in text
    app = app_for(gw, gw.key("spender@example.com", budget="0.5"))
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await chat_screen(pilot)
        pick(screen, "openai", "openai/gpt-4o-mini")
        await say(pilot, screen, "spend it all")
        deadline = time.monotonic() + 15  # the spend reaches the budget tracker within ~1 s
        while not errors(app) and time.monotonic() < deadline:
            await pilot.pause(0.5)
            await say(pilot, screen, "more")
        title, text = errors(app)[0]
        assert title == "Budget exceeded", text
        assert "→ the budget resets in " in text


SIZES = [(80, 24), (160, 48)]


async def _scene(pilot: Any) -> None:
    """Two turns on two providers' models, then a context too long, shown in place."""
    screen = await chat_screen(pilot)
    screen.settings = {"system": "You are terse.", "temperature": 0.2, "max_tokens": 60}
    screen._show_settings()
    pick(screen, "openai", "openai/gpt-4o-mini")
    await say(pilot, screen, "What is llmgw?")
    pick(screen, "small", "small/tiny")
    await say(pilot, screen, "Say it with the small model")
    await say(
        pilot, screen, "Now repeat everything we said so far, in full detail, " + "again " * 12
    )
    await until(pilot, lambda: len(screen.conversations.records) == 1, "the list")
    await pilot.app.workers.wait_for_complete()
    screen.query_one("#prompt", Input).focus()
    pilot.app.clear_notifications()  # the toast's timing varies; the error stays in the pane
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_live_snapshot(snap_compare: Any, gw: Gateway, size: tuple[int, int]) -> None:
    """The screen after a real exchange: the list, the pickers, the settings line, a model
    switch, and "Context too long" in the pane (each size its own user: a fresh list)."""
    key = gw.key(f"snap{size[0]}@example.com")
    chat = RemoteChat("http://gateway.test", key, transport=Renamed(gw.port), timer=steady_timer())
    app = LlmgwApp(FixtureOps(mode="remote"), clock=clock, poll_interval=3600, chat=chat)
    assert snap_compare(app, terminal_size=size, run_before=_scene)


async def test_docs_chat_screenshot(gw: Gateway, tmp_path: Path) -> None:
    """docs/tui-chat.svg: the same scene at 100x30; no key in it (the key is shaped like one)."""
    key = gw.key("docs@example.com")
    chat = RemoteChat("http://gateway.test", key, transport=Renamed(gw.port), timer=steady_timer())
    app = LlmgwApp(FixtureOps(mode="remote"), clock=clock, poll_interval=3600, chat=chat)
    out = tmp_path / "tui-chat.svg"
    await render(app, (100, 30), _scene, out)
    check_and_keep(
        "tui-chat.svg",
        out.read_text(),
        ["Conversations", "What is llmgw?", "Context too long", "temperature 0.2"],
        [key],
    )
