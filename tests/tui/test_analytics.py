"""``A`` on the Usage screen (issue 13 item 3): top keys, users and models by cost per currency,
the weekday x hour heat map, streaming and errors per provider, the month-end forecast and the
recommendations, on a seeded month of usage (tests/usage_month.py) in a real database: locally
through ``LocalAdmin`` (SQLite and PostgreSQL) and with ``--url`` through a real server's admin
API (``RemoteAdmin``). Both show what ``llmgw usage top|patterns|forecast|recommend`` compute.
"""

from __future__ import annotations

import io
import tomllib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy.engine import Engine
from textual.widgets import Static

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.admin.remote import RemoteAdmin
from llmgw.config import Settings
from llmgw.emulators.runner import serve_in_thread
from llmgw.tui.app import LlmgwApp
from llmgw.tui.screens.analytics import AnalyticsScreen
from llmgw.usage.analytics import forecast, patterns, top
from tests import usage_month
from tests.tui.test_docs_screenshots import svg_text

NOW = usage_month.END - timedelta(hours=12)
"""The dashboard's clock: 2026-11-30 12:00 UTC, the seeded month's last day."""


def clock() -> Any:
    return NOW


def month_settings(**extra: Any) -> Settings:
    """The seeded month's providers (so their currencies are known)."""
    return Settings.model_validate({**tomllib.loads(usage_month.config_toml()), **extra})


def local_app(engine: Engine) -> LlmgwApp:
    """The dashboard in local mode as ``llmgw dash`` wires it."""
    ops = LocalAdmin(engine, Actor.local(), source="tui", settings=month_settings(), clock=clock)
    return LlmgwApp(ops, clock=clock, poll_interval=3600)


async def open_analytics(pilot: Any, wait: Any) -> AnalyticsScreen:
    """Usage (``3``), the period cycled to 30 days (``p`` twice), then ``A``."""
    await wait(pilot)
    await pilot.press("3")
    await wait(pilot)
    await pilot.press("p", "p")
    await wait(pilot)
    await pilot.press("A")
    await wait(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, AnalyticsScreen)
    return screen


def part(screen: AnalyticsScreen, name: str) -> str:
    """A part of the view as its lines read on screen (the width it has there)."""
    static = screen.query_one(f"#analytics-{name}", Static)
    out = io.StringIO()
    console = Console(file=out, width=static.content_region.width, color_system=None)
    console.print(static.content)
    return out.getvalue()


def expected(ops: Any) -> dict[str, Any]:
    """What the CLI computes for the same 30-day window and clock (``llmgw usage ...``)."""
    since = NOW - timedelta(days=30)
    start = NOW.replace(hour=0) - timedelta(days=56)
    return {
        "top": top(ops.usage_stats(since=since, by="key"), "cost", 5),
        "patterns": patterns(
            ops.usage_stats(since=since, by="hour"), ops.usage_stats(since=since, by="provider")
        ),
        "forecast": forecast(ops.usage_stats(since=start, by="day"), NOW.date()),
        "recommend": ops.usage_recommend(since=since),
    }


def check_view(screen: AnalyticsScreen, want: dict[str, Any]) -> None:
    """A top row, the busiest heat-map cell, the forecast figure and a recommendation's
    saving, as a person reads them."""
    shown = part(screen, "top")
    first_usd = next(r for r in want["top"] if r["currency"] == "USD")
    row = next(line for line in shown.splitlines() if line.startswith("USD   1   "))
    assert first_usd["key_name"] in row, shown  # the keys' ranking in dollars, first row
    assert f"{Decimal(first_usd['value']):,.4f}" in row.split(first_usd["key_name"])[1], shown
    assert "RUB" in shown and "Top users by cost" in shown and "Top models by cost" in shown
    assert "openai/gpt-4o" in shown
    heat = want["patterns"]["heatmap"]
    n, day, hour = 0, "", 0
    for d in heat:  # the first busiest cell, Monday first, midnight first
        for h, count in enumerate(d["hours"]):
            if count > n:
                n, day, hour = count, d["weekday"], h
    shown = part(screen, "patterns")
    assert f"busiest: {day} {hour:02d}:00-{hour + 1:02d}:00 UTC, {n} requests" in shown, shown
    assert day in ("Mon", "Tue", "Wed", "Thu", "Fri") and 7 <= hour < 19  # office hours
    assert "█" in shown and "░" in shown
    streamed = f"{want['patterns']['stream_share']:.1%} streamed"
    assert streamed in shown
    giga = next(e for e in want["patterns"]["errors_by_provider"] if e["provider"] == "giga")
    assert any("giga" in line and f"{giga['error_share']:.1%}" in line
               for line in shown.splitlines()), shown  # fmt: skip
    shown = part(screen, "forecast")
    assert "Forecast to the end of 2026-11" in shown
    for f in want["forecast"]:
        line = next(line for line in shown.splitlines() if line.strip().startswith(f["currency"]))
        assert f"{Decimal(f['forecast']):,.2f}" in line, shown
        assert f"{Decimal(f['low']):,.2f} - {Decimal(f['high']):,.2f}" in line, shown
    assert " vs " in shown and "back-tested days" in " ".join(shown.split())
    shown = " ".join(part(screen, "recommend").split())
    cheaper = next(r for r in want["recommend"] if r["subject"] == "openai/gpt-4o")
    (cur, value), *_ = cheaper["saving"].items()
    assert f"cheaper model {Decimal(value):,.2f} {cur}" in shown, shown
    assert "deprecated version" in shown and "idle key" in shown


async def test_analytics_of_a_seeded_month_locally(engine: Engine, wait: Any) -> None:
    """Local mode (SQLite and PostgreSQL): every part as the CLI computes it; Escape closes."""
    usage_month.seed(engine)
    app = local_app(engine)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_analytics(pilot, wait)
        assert screen.label == "last 30d"
        check_view(screen, expected(app.ops))
        assert "could not" not in part(screen, "top")
        await pilot.press("escape")
        await wait(pilot)
        assert not isinstance(app.screen, AnalyticsScreen)


async def test_analytics_fit_80x24_and_scroll(engine: Engine, wait: Any) -> None:
    """At 80x24 the title and the hint stay on screen and the parts scroll between them."""
    usage_month.seed(engine)
    app = local_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_analytics(pilot, wait)
        check_view(screen, expected(app.ops))
        for name in ("top", "patterns", "forecast", "recommend"):
            assert max(len(line) for line in part(screen, name).splitlines()) <= 76
        body = screen.query_one("#analytics-body")
        assert body.max_scroll_y > 0
        await pilot.press("end")
        await wait(pilot)
        assert body.scroll_y == body.max_scroll_y
        text = svg_text(app.export_screenshot())
        assert "Analytics" in text and "Escape closes" in text


async def test_analytics_through_a_real_server(
    home: Path, wait: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``llmgw dash --url``: the same figures through ``/admin/v1/usage/stats`` and
    ``/admin/v1/usage/recommend`` of a real server on the seeded database."""
    from llmgw.server import create_app
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    db_url = f"sqlite:///{home / 'remote.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    usage_month.seed(engine)
    local = LocalAdmin(engine, Actor.local(), settings=month_settings(), clock=clock)
    local.users_create("ops@example.com", role="admin")
    key = str(local.keys_create("ops", user="ops@example.com")["key"])
    monkeypatch.setenv("ANALYTICS_TEST_KEY", "not-a-real-key")  # no request reaches them
    providers = [
        {**p, "api_key_env": "ANALYTICS_TEST_KEY", "base_url": "http://127.0.0.1:9/v1",
         "auth_url": "http://127.0.0.1:9/oauth", "folder_id": "b1gtest"}
        for p in tomllib.loads(usage_month.config_toml())["providers"]
    ]  # fmt: skip
    for p in providers:
        if p["kind"] != "gigachat":
            del p["auth_url"]
        if p["kind"] != "yandexgpt":
            del p["folder_id"]
    settings = Settings.model_validate(
        {"home": home, "database": {"url": db_url}, "providers": providers}
    )
    server = serve_in_thread(create_app(settings))
    ops = RemoteAdmin(server.url, key, "tui")
    try:
        app = LlmgwApp(ops, clock=clock, poll_interval=3600)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_analytics(pilot, wait)
            want = expected(local)
            check_view(screen, want)
            assert screen.data is not None and not screen.data.errors
            assert screen.data.forecast == want["forecast"]  # local and remote agree
            assert [r["value"] for r in screen.data.top["keys"]] == [
                r["value"] for r in want["top"]
            ]
    finally:
        ops.close()
        server.stop()
        engine.dispose()


async def test_a_server_gone_is_said_in_place(home: Path, wait: Any) -> None:
    """Every part says it could not be read and why; the dashboard goes on."""
    ops = RemoteAdmin("http://127.0.0.1:9", "llmgw_x", "tui", connect_timeout=0.5)
    app = LlmgwApp(ops, clock=clock, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait(pilot)
        await pilot.press("3")
        await wait(pilot)
        await pilot.press("A")
        await wait(pilot)
        screen = app.screen
        assert isinstance(screen, AnalyticsScreen)
        loading = str(screen.query_one("#analytics-loading", Static).content)
        assert loading == "some parts could not be read (forecast, patterns, recommend, top)"
        assert "could not read the forecast: " in part(screen, "forecast")
        assert "127.0.0.1:9" in part(screen, "recommend")
        await pilot.press("escape")
        await wait(pilot)
        assert not isinstance(app.screen, AnalyticsScreen)
    ops.close()


@pytest.fixture
def month_app(home: Path) -> Any:
    """The dashboard in local mode on a SQLite database holding the seeded month."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(f"sqlite:///{home / 'month.db'}")
    upgrade(engine)
    usage_month.seed(engine)
    yield local_app(engine)
    engine.dispose()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_analytics_snapshot(snap_compare: Any, month_app: LlmgwApp, wait: Any, size: Any) -> None:
    """At 80x24 the title, the first rankings and the hint; at 160x48 keys and users side by
    side, the heat map next to the providers' error shares, and the forecast."""

    async def show(pilot: Any) -> None:
        await open_analytics(pilot, wait)

    assert snap_compare(month_app, terminal_size=size, run_before=show)


@pytest.mark.parametrize(
    ("size", "must_show"),
    [
        ((80, 24), ["Analytics (last 30d)", "Top keys by cost", "summariser", "Escape closes"]),
        ((160, 48), ["Top users by cost", "busiest: Mon 07:00-08:00 UTC", "Forecast to the end of 2026-11",
                     "95% interval"]),
    ],
    ids=["80x24", "160x48"],
)  # fmt: skip
async def test_analytics_screenshots(
    month_app: LlmgwApp, wait: Any, tmp_path: Path, size: Any, must_show: list[str]
) -> None:
    """docs/tui-analytics-80x24.svg and docs/tui-analytics-160x48.svg (docs/tui.md,
    docs/analytics.md): the seeded month's analytics."""
    from tests.tui.test_docs_screenshots import check_and_keep, render

    async def steps(pilot: Any) -> None:
        await open_analytics(pilot, wait)

    name = f"tui-analytics-{size[0]}x{size[1]}.svg"
    await render(month_app, size, steps, tmp_path / name)
    check_and_keep(name, (tmp_path / name).read_text(), must_show, [])
