"""Snapshots of every screen at 80x24 and 160x48, with fixed data and a fixed clock.

Update them after an intended change with ``pytest tests/tui --snapshot-update`` and look at the
report before committing.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input

SCREENS = ["1", "2", "3", "4", "5", "6"]
SIZES = [(80, 24), (160, 48)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
    "key", SCREENS, ids=["providers", "requests", "usage", "keys", "users", "audit"]
)
def test_screen(snap_compare, make_app, ops, wait, key, size):
    """Each screen in local mode, as a person at an 80x24 SSH session or a large terminal sees it."""

    async def show(pilot):
        await wait(pilot)
        await pilot.press(key)
        await wait(pilot)

    assert snap_compare(make_app(ops), terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_providers_live(snap_compare, make_app, remote_ops, wait, size):
    """Remote mode: live state with requests/min, in flight and history sparklines, no local note."""
    assert snap_compare(make_app(remote_ops), terminal_size=size, run_before=wait)


def test_help(snap_compare, make_app, ops, wait):
    """``?`` lists every binding with its id, the app's and the screen's."""

    async def show(pilot):
        await wait(pilot)
        await pilot.press("4", "question_mark")
        await wait(pilot)

    assert snap_compare(make_app(ops), terminal_size=(80, 24), run_before=show)


def test_stale(snap_compare, make_app, ops, wait):
    """A failed poll: the status line says stale since when and why; the last data stays."""

    async def show(pilot):
        await wait(pilot)
        ops.go_away()
        await pilot.press("r")
        await wait(pilot)

    assert snap_compare(make_app(ops), terminal_size=(80, 24), run_before=show)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat(snap_compare, make_app, remote_ops, wait, size):
    """Chat after two streamed answers (the model switched between them): the conversation
    list, the provider and model pickers, the settings line, the conversation, and the tokens
    and latency of the answer on the status line."""
    from tests.tui.conftest import FixtureChat

    async def chat(pilot):
        await wait(pilot)
        await pilot.press("7")
        await wait(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False  # the cursor would be caught on or off at random
        screen = pilot.app.screen
        screen.settings = {"system": "You are terse.", "temperature": 0.2}
        screen._show_settings()
        screen.query_one("#prompt").value = "What is llmgw?"
        await pilot.press("enter")
        await wait(pilot)
        screen.query_one("#chat-provider").value = "openai"
        await wait(pilot)
        screen.query_one("#prompt").value = "And in one word?"
        await pilot.press("enter")
        await wait(pilot)

    source = FixtureChat()
    app = make_app(remote_ops, chat=source)
    source.store["c0"] = {"id": "c0", "title": "Yesterday's question", "messages": 6,
                     "model": "yandex/yandexgpt-lite", "system": None, "settings": {}}  # fmt: skip
    assert snap_compare(app, terminal_size=size, run_before=chat)


def test_chat_local(snap_compare, make_app, ops, wait):
    """Local mode: the Chat screen says it needs a running server and asks for a URL and key."""

    async def show(pilot):
        await wait(pilot)
        await pilot.press("7")
        await wait(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False

    app = make_app(ops, local_chat_url="http://127.0.0.1:8080")
    assert snap_compare(app, terminal_size=(80, 24), run_before=show)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_budgets(snap_compare, make_app, ops, wait, size):
    """``B`` on Usage (issue 13): at 80x24 the subject, share used, spend and amount fit, the
    pane under the table has every field of the highlighted budget and the hint says how to
    close it and where budgets are changed."""

    async def show(pilot):
        await wait(pilot)
        await pilot.press("3")
        await wait(pilot)
        await pilot.press("B")
        await wait(pilot)

    assert snap_compare(make_app(ops), terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_provider_admin(snap_compare, make_app, ops, wait, size):
    """``m`` on Providers (issue 16): the config file's providers marked read-only, the stored
    ones enabled, disabled and ignored (shadowed by the config file), the credential only ever
    "sealed"; the pane says what the highlighted one is."""

    async def show(pilot):
        await wait(pilot)
        await pilot.press("m")
        await wait(pilot)
        await pilot.press("down", "down", "down")
        await wait(pilot)

    assert snap_compare(make_app(ops), terminal_size=size, run_before=show)


def test_provider_add_form(snap_compare, make_app, ops, wait):
    """The new-provider form at 80x24: every field on screen, the typed key shown as dots."""

    async def show(pilot):
        await wait(pilot)
        await pilot.press("m")
        await wait(pilot)
        await pilot.press("n")
        await wait(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        pilot.app.screen.query_one("#f-name", Input).value = "vllm"
        pilot.app.screen.query_one("#f-api_key", Input).value = "sk-never-on-screen-123456"
        await wait(pilot)

    assert snap_compare(make_app(ops), terminal_size=(80, 24), run_before=show)


def test_alias_admin(snap_compare, make_app, ops, wait):
    """``a`` on the provider management screen at 80x24: the config file's alias read-only, a
    weighted stored one, and one whose target no provider offers now (unresolved)."""

    async def show(pilot):
        await wait(pilot)
        await pilot.press("m")
        await wait(pilot)
        await pilot.press("a")
        await wait(pilot)

    assert snap_compare(make_app(ops), terminal_size=(80, 24), run_before=show)
