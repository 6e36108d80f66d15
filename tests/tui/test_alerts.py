"""The Alerts screen (8): snapshots at 80x24 and 160x48 with fixed alerts and clock, and pilot
tests of what a person does there: filter by status, severity and text, open an alert (its
timeline and AI classification, marked as such), acknowledge and re-classify after a
confirmation, and what a failed poll looks like."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Static

from llmgw.errors import Unavailable
from llmgw.tui.screens.alert_detail import AlertDetailScreen
from llmgw.tui.screens.alerts import AlertsScreen
from llmgw.tui.widgets.dialogs import ConfirmScreen, FormScreen

SIZES = [(80, 24), (160, 48)]


def ids(app: Any) -> list[str]:
    """The alert ids in the table, top to bottom."""
    table = app.screen.query_one("#alerts", DataTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


def text(app: Any) -> str:
    """Every Static's text on the current screen."""
    return "\n".join(str(w.render()) for w in app.screen.query(Static))


async def open_alerts(pilot: Any, wait: Any) -> None:
    await wait(pilot)
    await pilot.press("8")
    await wait(pilot)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_alerts_snapshot(snap_compare, make_app, ops, alerts, wait, size):
    """The live list: severity colours, firing/resolved, the AI column, the preview pane."""

    async def show(pilot):
        await open_alerts(pilot, wait)

    assert snap_compare(make_app(ops, alerts=alerts), terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_alert_detail_snapshot(snap_compare, make_app, ops, alerts, wait, size):
    """One alert: facts, labels, the timeline and the classification marked as AI output
    (beside the facts at 160 columns, below them at 80)."""

    async def show(pilot):
        await open_alerts(pilot, wait)
        await pilot.press("enter")
        await wait(pilot)

    assert snap_compare(make_app(ops, alerts=alerts), terminal_size=size, run_before=show)


def test_alert_publications_snapshot(snap_compare, make_app, ops, alerts, wait):
    """A resolved alert's publications at 80x24, scrolled to: the fire sent (HTTP 202, the
    dedup key), the resolve failed after 3 attempts with its last error, then the timeline."""

    async def show(pilot):
        await open_alerts(pilot, wait)
        await pilot.press(*["down"] * 5, "enter")  # #2 NodeDown
        await wait(pilot)
        await pilot.press(*["down"] * 6)  # the body scrolls (the AI box stays below)
        await wait(pilot)

    assert snap_compare(make_app(ops, alerts=alerts), terminal_size=(80, 24), run_before=show)


async def test_filters_by_status_severity_and_text(make_app, ops, alerts, wait):
    app = make_app(ops, alerts=alerts)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_alerts(pilot, wait)
        assert isinstance(app.screen, AlertsScreen)
        assert ids(app) == ["7", "6", "5", "4", "3", "2", "1"]
        assert "7 alerts, 5 firing" in text(app)
        await pilot.press("s")  # firing
        await wait(pilot)
        assert ids(app) == ["7", "6", "5", "4", "1"]
        assert alerts.calls[-1] == "search:firing:None:None"  # asked of the source, not sliced
        await pilot.press("s")  # resolved
        await wait(pilot)
        assert ids(app) == ["3", "2"]
        assert "status: resolved" in text(app)
        await pilot.press("s", "v")  # all statuses, critical
        await wait(pilot)
        assert ids(app) == ["7", "2"]
        assert "severity: critical" in text(app)
        await pilot.press("v", "v")  # warning
        await wait(pilot)
        assert ids(app) == ["6", "3"]
        await pilot.press("v", "v")  # info, all
        await wait(pilot)
        assert len(ids(app)) == 7
        await pilot.press("slash")
        for ch in "disk":
            await pilot.press(ch)
        await asyncio.sleep(0.5)  # the query goes out once typing pauses
        await wait(pilot)
        assert ids(app) == ["6"]
        assert alerts.calls[-1] == "search:None:None:disk"
        assert "text: disk" in text(app)
        await pilot.press("escape")  # clears the text
        await asyncio.sleep(0.5)
        await wait(pilot)
        assert len(ids(app)) == 7


async def test_nothing_matches(make_app, ops, alerts, wait):
    app = make_app(ops, alerts=alerts)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_alerts(pilot, wait)
        await pilot.press("slash")
        app.screen.query_one("#filter", Input).value = "no-such-thing"
        await asyncio.sleep(0.5)
        await wait(pilot)
        assert ids(app) == []
        assert "no alert matches" in text(app)
        await pilot.press("enter", "a", "c")  # nothing selected: nothing happens
        await wait(pilot)
        assert isinstance(app.screen, AlertsScreen)


async def test_detail_shows_timeline_and_ai_output_marked(make_app, ops, alerts, wait):
    app = make_app(ops, alerts=alerts)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_alerts(pilot, wait)
        await pilot.press("enter")  # the newest: HighCPU, classified, flapping
        await wait(pilot)
        assert isinstance(app.screen, AlertDetailScreen)
        shown = text(app)
        assert "#7 HighCPU" in shown and "FLAPPING" in shown
        assert "AI output, verify before acting" in shown
        assert "openai/gpt-4o-mini, prompt v1" in shown
        assert "CPU of node7 pinned at 98%" in shown
        assert "Move the batch job to the spare pool" in shown
        assert app.screen.query_one("#alert-ai").border_title == "AI-generated classification"
        assert "fired" in shown and "classified" in shown  # the timeline
        assert "show:7" in alerts.calls
        await pilot.press("escape")
        await wait(pilot)
        assert isinstance(app.screen, AlertsScreen)
        await pilot.press("down", "down", "enter")  # ApiErrors: the classification timed out
        await wait(pilot)
        shown = text(app)
        assert "#5 ApiErrors" in shown
        assert "timeout: the model did not answer in time" in shown
        assert "AI output" not in shown  # no AI text where the model gave none


async def test_acknowledge_asks_first_and_is_shown(make_app, ops, alerts, wait):
    app = make_app(ops, alerts=alerts)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_alerts(pilot, wait)
        await pilot.press("down", "a")  # DiskFull
        await wait(pilot)
        assert isinstance(app.screen, FormScreen)
        assert "Acknowledge #6 DiskFull (firing, warning)?" in text(app)
        await pilot.press("escape")  # cancelled: nothing sent
        await wait(pilot)
        assert not [c for c in alerts.calls if c.startswith("ack")]
        await pilot.press("a")
        await wait(pilot)
        app.screen.query_one("#f-note", Input).value = "on it"
        await pilot.press("enter")
        await wait(pilot)
        assert isinstance(app.screen, AlertsScreen)
        assert "ack:6:on it" in alerts.calls
        table = app.screen.query_one("#alerts", DataTable)
        assert str(table.get_row_at(1)[5]) == "yes"  # the list polled again
        assert "acknowledged by local:ops" in text(app)
        await pilot.press("a")  # once is enough: no second dialog
        await wait(pilot)
        assert isinstance(app.screen, AlertsScreen)
        assert [c for c in alerts.calls if c.startswith("ack")] == ["ack:6:on it"]


async def test_reclassify_from_the_detail_asks_first(make_app, ops, alerts, wait):
    app = make_app(ops, alerts=alerts)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_alerts(pilot, wait)
        await pilot.press("enter", "c")
        await wait(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "Re-classify #7 HighCPU?" in text(app)
        await pilot.press("n")
        await wait(pilot)
        assert "reclassify:7" not in alerts.calls
        await pilot.press("c")
        await wait(pilot)
        await pilot.press("y")
        await wait(pilot)
        assert isinstance(app.screen, AlertDetailScreen)
        assert "reclassify:7" in alerts.calls
        shown = text(app)
        assert "pending: not classified yet" in shown  # polled again after the change
        assert "The previous result, until then" in shown


async def test_a_failed_change_is_a_notice(make_app, ops, alerts, wait):
    app = make_app(ops, alerts=alerts)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_alerts(pilot, wait)
        alerts.fail = Unavailable("cannot reach http://127.0.0.1:8080", hint="is it running?")
        await pilot.press("c")
        await wait(pilot)
        await pilot.press("y")
        await wait(pilot)
        titles = [n.title for n in app._notifications]
        assert "Alert change failed" in titles
        await pilot.press("r")
        await wait(pilot)
        assert "stale since 09:30" in text(app)  # the list stays, its status line says so
        assert len(ids(app)) == 7
        alerts.fail = None
        await pilot.press("r")
        await wait(pilot)
        assert "stale" not in text(app)


async def test_without_an_alert_source_the_screen_says_so(make_app, ops, wait):
    app = make_app(ops)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_alerts(pilot, wait)
        assert "started without the alert history" in text(app)


async def test_alert_text_is_shown_as_sent_never_as_markup(make_app, ops, alerts, wait):
    """IN-7 in the dashboard: names, labels and annotations come from whoever can make
    Alertmanager fire; Rich markup in them (even broken markup) is shown literally."""
    from tests.tui.conftest import _alert

    evil = "Disk[/]Full[bold]"
    summary = "[red]boom[/] [/nope] ${HOME} {{7*7}}"
    alerts.alerts.insert(0, _alert(8, evil, "critical", "firing", 0, None))
    alerts.alerts[0]["annotations"] = {"summary": summary}
    app = make_app(ops, alerts=alerts)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_alerts(pilot, wait)
        table = app.screen.query_one("#alerts", DataTable)
        row = [str(c) for c in table.get_row_at(0)]
        assert row[3] == evil and row[8] == summary
        assert evil in text(app) and summary in text(app)  # the preview pane
        await pilot.press("enter")
        await wait(pilot)
        assert isinstance(app.screen, AlertDetailScreen)
        assert f"#8 {evil}" in text(app) and summary in text(app)
        await pilot.press("a")
        await wait(pilot)
        assert isinstance(app.screen, FormScreen)
        assert f"Acknowledge #8 {evil} (firing, critical)?" in text(app)
        await pilot.press("enter")
        await wait(pilot)
        assert "ack:8:None" in alerts.calls
        assert "acknowledged by local:ops" in text(app)


async def test_silenced_alerts_say_so(make_app, ops, alerts, wait):
    """What Alertmanager reports about silences: the status cell says silenced (not the red
    firing), the preview and the open alert say who silenced it, until when and why."""
    app = make_app(ops, alerts=alerts)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_alerts(pilot, wait)
        table = app.screen.query_one("#alerts", DataTable)
        assert [str(table.get_row_at(i)[2]) for i in range(4)] == [
            "firing", "firing", "firing", "silenced"
        ]  # fmt: skip
        await pilot.press("down", "down", "down")
        await wait(pilot)
        said = "silenced by ana@example.com until 12-05 09:30:00: renewal booked"
        assert said in text(app)
        await pilot.press("enter")
        await wait(pilot)
        assert f"{said} (Alertmanager, checked 12-03 09:30:00)" in text(app)
        assert "firing" in text(app)  # still firing: Alertmanager only keeps it quiet
