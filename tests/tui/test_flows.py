"""Pilot tests of what a person does in ``llmgw dash``: keys, users, filters, stale polls, exit."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.widgets import DataTable, Input, Static

from llmgw.errors import AuthError, PermissionDenied
from llmgw.tui.screens.base import PolledScreen
from llmgw.tui.widgets.dialogs import ConfirmScreen, FormScreen, SecretScreen


def cells(app: Any, table_id: str = "#rows") -> list[list[str]]:
    """The visible table as text, row by row."""
    table = app.screen.query_one(table_id, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def status(app: Any) -> str:
    return str(app.screen.query_one("#status-line", Static).render())


def screen_text(app: Any) -> str:
    """Every Static's text on the current screen (what a person reads)."""
    return "\n".join(str(w.render()) for w in app.screen.query(Static))


async def type_text(pilot: Any, text: str) -> None:
    await pilot.press(*[{" ": "space", ",": "comma", "=": "equals_sign"}.get(c, c) for c in text])


async def test_create_key_shows_the_secret_once(make_app, ops, wait):
    app = make_app(ops)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait(pilot)
        await pilot.press("4", "n")
        await wait(pilot)
        assert isinstance(app.screen, FormScreen)
        await type_text(pilot, "deploy")
        await pilot.press("tab", "tab")  # user, rpm
        await type_text(pilot, "abc")
        await pilot.press("enter")
        await wait(pilot)
        assert isinstance(app.screen, FormScreen), "an invalid rpm must keep the form open"
        assert "not a whole number" in screen_text(app)
        assert "keys_create" not in ops.calls
        app.screen.query_one("#f-rpm", Input).value = "30"
        await pilot.press("enter")
        await wait(pilot)
        assert isinstance(app.screen, SecretScreen)
        secret = ops.keys[-1]["prefix"] + "." + "x" * 8 + "0001"
        assert secret in screen_text(app)
        assert "shown this once" in screen_text(app)
        await pilot.press("escape")
        await wait(pilot)
        assert isinstance(app.screen, PolledScreen)
        rows = cells(app)
        assert [r for r in rows if r[1] == "deploy" and r[4] == "30"], rows
        assert secret not in screen_text(app), "the secret is shown once only"
        assert all(secret not in " ".join(r) for r in rows)


async def test_revoke_asks_first(make_app, ops, wait):
    app = make_app(ops)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait(pilot)
        await pilot.press("4", "down", "d")  # the second key: chat-bot
        await wait(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "Revoke key sk-llmgw-0002 (chat-bot)?" in screen_text(app)
        await pilot.press("n")
        await wait(pilot)
        assert "keys_revoke" not in ops.calls
        assert "chat-bot" in [r[1] for r in cells(app)]
        await pilot.press("d")
        await wait(pilot)
        await pilot.press("y")
        await wait(pilot)
        assert ops.keys[1]["status"] == "revoked"
        assert "chat-bot" not in [r[1] for r in cells(app)], "a revoked key leaves the live list"
        await pilot.press("a")  # all keys, revoked too
        await wait(pilot)
        assert ["chat-bot", "revoked"] in [[r[1], r[3]] for r in cells(app)]


async def test_rotate_asks_first_and_shows_the_new_secret(make_app, ops, wait):
    app = make_app(ops)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait(pilot)
        await pilot.press("4", "o")
        await wait(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait(pilot)
        assert isinstance(app.screen, SecretScreen)
        assert "rotated" in screen_text(app)
        assert ops.keys[0]["status"] == "revoked"


async def test_edit_limits(make_app, ops, wait):
    app = make_app(ops)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait(pilot)
        await pilot.press("4", "e")
        await wait(pilot)
        form = app.screen
        assert isinstance(form, FormScreen)
        assert form.query_one("#f-rpm", Input).value == "60"
        form.query_one("#f-rpm", Input).value = "0"
        await pilot.press("enter")
        await wait(pilot)
        assert "must be at least 1" in screen_text(app)
        form.query_one("#f-rpm", Input).value = "120"
        form.query_one("#f-tpm", Input).value = ""
        form.query_one("#f-models", Input).value = "gigachat/GigaChat-2-Max, yandex/yandexgpt-lite"
        await pilot.press("enter")
        await wait(pilot)
        assert ops.keys[0]["rpm"] == 120
        assert ops.keys[0]["tpm"] is None, "an empty field clears the limit"
        assert ops.keys[0]["models"] == ["gigachat/GigaChat-2-Max", "yandex/yandexgpt-lite"]
        assert cells(app)[0][4:6] == ["120", "-"]


async def test_filter_requests_and_pause(make_app, ops, wait):
    app = make_app(ops)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait(pilot)
        await pilot.press("2")
        await wait(pilot)
        assert len(cells(app, "#requests")) == 30
        await pilot.press("slash")
        await type_text(pilot, "status=5xx")
        await pilot.press("enter")
        await wait(pilot)
        rows = cells(app, "#requests")
        assert rows and {r[4] for r in rows} == {"502"}
        assert "filter: status=5xx" in status(app)
        await pilot.press("escape")  # clears the filter
        await pilot.press("slash")
        await type_text(pilot, "model=yandex key=0002")
        await wait(pilot)
        rows = cells(app, "#requests")
        assert rows and all("yandex" in r[2] and r[1] == "sk-llmgw-0002" for r in rows)
        await pilot.press("enter", "escape", "p")
        await wait(pilot)
        assert "PAUSED" in status(app)
        before = cells(app, "#requests")
        ops.keys.clear()  # any change in data; the tail must stand still while paused
        await pilot.press("r")
        await wait(pilot)
        assert cells(app, "#requests") == before


async def test_failed_poll_shows_stale_then_recovers(make_app, ops, wait):
    """The server goes away: a notification, "stale since hh:mm", the last rows kept; when it
    comes back the next poll picks it up."""
    app = make_app(ops)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait(pilot)
        await pilot.press("4")
        await wait(pilot)
        ops.go_away()
        await pilot.press("r")
        await wait(pilot)
        assert status(app).startswith("stale since 09:30: cannot reach http://127.0.0.1:8080")
        assert any(n.severity == "error" for n in app._notifications)
        assert len(cells(app)) == 3, "the last data stays on screen"
        ops.fail = None
        await pilot.press("r")
        await wait(pilot)
        assert status(app).startswith("3 of 3; updated 09:30")


async def test_polls_rearm_their_timer(make_app, ops, wait):
    """Each screen polls again after its interval, without a key press (the worker re-arms it)."""
    app = make_app(ops, poll_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait(pilot)
        await asyncio.sleep(1.2)
        assert ops.calls.count("providers_status") >= 3


async def test_usage_polls_less_often_than_the_live_screens(make_app, ops, wait):
    """At ``--interval 0.2`` Providers polls five times a second, but Usage (two statistics
    queries a poll, totals per hour or day) waits ``USAGE_INTERVAL``; ``r`` polls it at once."""
    from llmgw.tui.screens.usage import USAGE_INTERVAL

    assert USAGE_INTERVAL >= 5
    app = make_app(ops, poll_interval=0.2)

    def usage_polls() -> int:
        return sum(1 for c in ops.calls if c.startswith("usage_stats"))

    async with app.run_test(size=(100, 30)) as pilot:
        await wait(pilot)
        await pilot.press("3")
        await wait(pilot)
        assert usage_polls() == 2  # the chart and the breakdown
        await asyncio.sleep(1.2)
        assert usage_polls() == 2
        assert "updated 09:30" in status(app)
        await pilot.press("r")
        await wait(pilot)
        assert usage_polls() == 4
        await pilot.press("1")
        await wait(pilot)
        before = ops.calls.count("providers_status")
        await asyncio.sleep(1.2)
        assert ops.calls.count("providers_status") >= before + 3


async def test_refused_credential_exits_2(make_app, ops):
    ops.fail = PermissionDenied("this key may not use the admin API")
    app = make_app(ops)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
    assert app.return_code == 2


async def test_bad_token_exits_2(make_app, ops):
    ops.fail = AuthError("invalid API key")
    app = make_app(ops)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
    assert app.return_code == 2


async def test_non_admin_exits_2(make_app, user_ops):
    app = make_app(user_ops)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
    assert app.return_code == 2


async def test_users_disable_asks_first(make_app, ops, wait):
    app = make_app(ops)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait(pilot)
        await pilot.press("5", "down", "d")
        await wait(pilot)
        assert "Disable boris@example.com?" in screen_text(app)
        await pilot.press("y")
        await wait(pilot)
        assert ops.users[1]["status"] == "disabled"
        assert cells(app)[1][3] == "disabled"


async def test_usage_period_and_breakdown(make_app, ops, wait):
    app = make_app(ops)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait(pilot)
        await pilot.press("3")
        await wait(pilot)
        assert "usage_stats:hour" in ops.calls and "usage_stats:model" in ops.calls
        await pilot.press("p", "p")  # 24h -> 7d -> 30d
        await wait(pilot)
        assert ops.calls[-2:] == ["usage_stats:day", "usage_stats:model"]
        assert "last 30d by model" in status(app)
        await pilot.press("b", "b")  # model -> version -> provider
        await wait(pilot)
        assert [r[0] for r in cells(app, "#breakdown")] == ["gigachat", "yandex", "openai"]


def test_a_request_refused_before_routing_shows_no_model() -> None:
    """A 400 for a bad model name has provider and model null: the tail shows "-", not
    "None/None" (seen by hand against a real serve)."""
    from llmgw.tui.screens.requests import _field

    assert _field({"provider": None, "model": None, "status": 400}, "model") == "-"
    assert _field({"provider": "local", "model": "gpt-4o-mini"}, "model") == "local/gpt-4o-mini"
    rec = {"provider": "yandex", "model": "yandexgpt-lite", "model_version": "rc"}
    assert _field(rec, "model") == "yandex/yandexgpt-lite:rc"


def test_audit_details_read_as_words_not_python() -> None:
    from llmgw.tui.format import detail_text

    detail = {
        "name": "ci",
        "rpm": {"from": 60, "to": 120},
        "tpm": None,
        "models": None,
        "expires_at": "2026-12-03T09:30:00+00:00",
        "user": None,
    }
    text = detail_text(detail)
    assert text == (
        "name: ci; rpm: 60 → 120; tpm: no limit; models: all models; "
        "expires_at: 12-03 09:30:00; user: none"
    )
    assert "None" not in text and "{" not in text
    assert detail_text({"models": {"from": None, "to": ["a", "b"]}}) == "models: all models → a, b"


async def test_audit_pane_shows_the_highlighted_entry(make_app, ops, wait):
    ops.audit.insert(0, {"id": 3, "at": "2026-12-03T09:29:00+00:00", "actor": "local:ops",
                         "actor_kind": "local", "action": "keys.update",
                         "target": "sk-llmgw-0001", "source": "tui", "remote_addr": None,
                         "detail": {"rpm": {"from": 60, "to": 120},
                                    "tpm": {"from": 40000, "to": None}}})  # fmt: skip
    app = make_app(ops)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait(pilot)
        await pilot.press("6")
        await wait(pilot)
        pane = str(app.screen.query_one("#detail", Static).render())
        assert pane == "keys.update sk-llmgw-0001\nrpm: 60 → 120\ntpm: 40000 → no limit"
        await pilot.press("down")
        await wait(pilot)
        assert str(app.screen.query_one("#detail", Static).render()) == (
            "keys.revoke sk-llmgw-0003\nno detail"
        )


async def test_t_tests_the_highlighted_provider(make_app, ops, wait):
    app = make_app(ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait(pilot)
        await pilot.press("t")
        await wait(pilot)
        assert "providers_test:gigachat:GigaChat-2-Max" in ops.calls
        pane = str(app.screen.query_one("#detail", Static).render())
        assert "last test: OK: 1-token chat with GigaChat-2-Max in 412 ms" in pane
        assert any("gigachat: OK" in n.message for n in app._notifications)
        await pilot.press("down", "down", "t")  # openai: refused
        await wait(pilot)
        pane = str(app.screen.query_one("#detail", Static).render())
        assert "last test: FAILED: openai: connection refused by 127.0.0.1:9" in pane
        assert any(
            n.severity == "error" and n.message.startswith("openai: FAILED")
            for n in app._notifications
        )


def test_custom_period_parsing() -> None:
    from datetime import UTC, datetime, timedelta

    from llmgw.tui.screens.usage import parse_custom, parse_when

    now = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    assert parse_when("2026-12-01", now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_when("2026-12-01 09:00", now) == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert parse_when("-3d", now) == now - timedelta(days=3)
    assert parse_when("-12h", now) == now - timedelta(hours=12)
    assert parse_custom("-2d", "", now) == (now - timedelta(days=2), now)
    for since, until, why in (
        ("", "", "since is required"),
        ("yesterday", "", "is not a time"),
        ("2026-12-02", "2026-12-01", "since must be before until"),
        ("2026-12-04", "", "cannot be in the future"),
        ("2026-12-01", "2026-12-09", "cannot be in the future"),
        ("2024-01-01", "", "at most 400 days"),
    ):
        try:
            parse_custom(since, until, now)
        except ValueError as exc:
            assert why in str(exc), (since, until, str(exc))
        else:
            raise AssertionError(f"{since!r}..{until!r} was accepted")


async def test_usage_custom_period_and_versions(make_app, ops, wait):
    from datetime import UTC, datetime

    app = make_app(ops)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait(pilot)
        await pilot.press("3")
        await wait(pilot)
        assert "yandex/yandexgpt-lite:rc" in [r[0] for r in cells(app, "#breakdown")]
        await pilot.press("c")
        await wait(pilot)
        form = app.screen
        assert isinstance(form, FormScreen)
        form.query_one("#f-since", Input).value = "2026-12-02 12:00"
        form.query_one("#f-until", Input).value = "2026-12-01"
        await pilot.press("enter")
        await wait(pilot)
        assert "since must be before until" in screen_text(app)
        assert isinstance(app.screen, FormScreen), "an invalid period keeps the form open"
        form.query_one("#f-until", Input).value = "2026-12-03 06:00"
        await pilot.press("enter")
        await wait(pilot)
        assert not isinstance(app.screen, FormScreen)
        since = datetime(2026, 12, 2, 12, tzinfo=UTC)
        until = datetime(2026, 12, 3, 6, tzinfo=UTC)
        assert ops.windows[-2:] == [(since, until), (since, until)]
        assert ops.calls[-2:] == ["usage_stats:hour", "usage_stats:model"], "18 h: per hour"
        assert status(app).startswith("12-02 12:00 … 12-03 06:00 by model")
        await pilot.press("b")  # model -> version
        await wait(pilot)
        assert [r[0] for r in cells(app, "#breakdown")] == ["(no version)", "rc"]
        await pilot.press("p")  # custom -> 1h
        await wait(pilot)
        assert "last 1h by version" in status(app)


async def test_usage_costs_in_two_currencies_are_shown_apart(make_app, wait, engine, tmp_path):
    """A real ``LocalAdmin`` on seeded rows: USD traffic on ``openai``, RUB on ``giga``. The
    totals and the breakdown name each currency; nothing is added across them."""
    from datetime import timedelta
    from decimal import Decimal

    from llmgw.admin.local import LocalAdmin
    from llmgw.admin.ops import Actor
    from llmgw.config import Settings, UsageSettings
    from llmgw.usage.recorder import UsageEvent, UsageRecorder

    from .conftest import NOW  # the app's fixed clock

    rec = UsageRecorder(engine, UsageSettings(flush_interval=0.05), tmp_path / "spool")
    rec.start()
    for i, (provider, model, cost) in enumerate(
        [("openai", "gpt-4o-mini", "0.25"), ("giga", "GigaChat-2-Max", "3.9")]
    ):
        rec.record(
            UsageEvent(
                request_id=f"r{i}",
                created_at=NOW - timedelta(hours=2),
                provider=provider,
                model=model,
                total_tokens=100,
                cost=Decimal(cost),
            )
        )
    rec.close()
    settings = Settings(
        providers=[
            {"name": "openai", "kind": "openai", "models": ["gpt-4o-mini"]},
            {"name": "giga", "kind": "gigachat", "models": ["GigaChat-2-Max"]},
        ]
    )
    ops = LocalAdmin(engine, Actor.local(), "tui", settings=settings)
    app = make_app(ops)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait(pilot)
        await pilot.press("3")
        await wait(pilot)
        text = screen_text(app)
        assert "cost 3.9000 RUB + 0.2500 USD" in text
        costs = {r[0]: r[5] for r in cells(app, "#breakdown")}
        assert costs == {"openai/gpt-4o-mini": "0.2500 USD", "giga/GigaChat-2-Max": "3.9000 RUB"}


async def test_text_from_clients_is_shown_literally_never_as_markup(make_app, ops, wait):
    """A key name, a user or a filter holding Rich markup (``[/x]`` would raise MarkupError, ``[b]``
    would turn into styling) is shown as typed: in the table, the confirmation, the notification
    and the status line. Names are chosen by whoever creates a key (IN-7)."""
    ops.keys[0]["name"] = "[/x] [b]not bold"
    ops.keys[0]["user"] = "[red]eve@example.com"
    app = make_app(ops)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait(pilot)
        await pilot.press("4")
        await wait(pilot)
        row = cells(app)[0]
        assert row[1] == "[/x] [b]not bold" and row[2] == "[red]eve@example.com"
        await pilot.press("slash")
        await type_text(pilot, "[/x]")
        await wait(pilot)
        assert "filter: [/x]" in status(app) and len(cells(app)) == 1
        await pilot.press("enter", "d")
        await wait(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "([/x] [b]not bold)" in screen_text(app)
        await pilot.press("y")
        await wait(pilot)
        assert ops.keys[0]["status"] == "revoked"


async def test_budgets_open_from_usage_with_their_spend(make_app, ops, wait):
    """``B`` on Usage opens every budget with this period's spend, share and reset (issue 13)."""
    from textual.widgets import DataTable

    app = make_app(ops)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait(pilot)
        await pilot.press("3")
        await wait(pilot)
        await pilot.press("B")
        await wait(pilot)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "budgets_list" in ops.calls
        table = app.screen.query_one("#budgets-table", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0][:5] == [
            "key ci-pipeline (sk-llmgw-0001)", "81.2%", "812.50", "1000.00 RUB", "day",
        ]  # fmt: skip
        assert rows[1][5:] == ["notify", "2027-01-01 00:00"]
        detail = str(app.screen.query_one("#budgets-detail").render())
        assert "stop (402 budget_exceeded)" in detail and "notified: 80%" in detail
        await pilot.press("down")
        await pilot.pause()
        detail = str(app.screen.query_one("#budgets-detail").render())
        assert detail.startswith("user boris@example.com: 250.00 USD a month, spent 31.04")
        assert "notify only; notify at 50%, 80%, 100% (notified: none yet)" in detail
        await pilot.press("escape")
        await wait(pilot)
        assert type(app.screen).__name__ == "UsageScreen"
