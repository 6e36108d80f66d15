"""The Alerts screen in local mode, on a real database (SQLite and PostgreSQL): alerts stored by
the webhook's own ``AlertStore``, read and changed through ``LocalAlerts`` as ``llmgw dash``
wires it; the filters are the history's SQL, an acknowledgement lands in the alert's timeline
and in the audit log with source ``tui``."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable, Input, Static

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.alerts.ops import LocalAlerts
from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.queries import AlertHistory
from llmgw.alerts.store import AlertStore
from llmgw.config import AlertsSettings
from llmgw.tui.app import LlmgwApp
from llmgw.tui.screens.alerts import AlertsScreen
from llmgw.tui.widgets.dialogs import FormScreen
from tests.alerts.amdata import am_alert, am_payload, later
from tests.tui.conftest import clock


def _names(app: Any) -> list[str]:
    table = app.screen.query_one("#alerts", DataTable)
    return [str(table.get_row_at(i)[3]) for i in range(table.row_count)]


async def test_local_alerts_screen_on_a_real_database(engine: Any, wait: Any) -> None:
    store = AlertStore(engine, AlertsSettings())
    for payload in (
        am_payload(am_alert("HighCPU", starts=later(0))),
        am_payload(am_alert("DiskFull", starts=later(5), labels={"severity": "warning"})),
        am_payload(am_alert("DiskFull", status="resolved", starts=later(5), ends=later(60),
                            labels={"severity": "warning"})),
    ):  # fmt: skip
        store.ingest(parse_delivery(payload))
    me = Actor("local:ops", "local")
    app = LlmgwApp(
        LocalAdmin(engine, me, source="tui"),
        clock=clock,
        poll_interval=3600,
        alerts=LocalAlerts(engine, me, "tui", mode="enriched"),
    )
    async with app.run_test(size=(120, 36)) as pilot:
        await wait(pilot)
        await pilot.press("8")
        await wait(pilot)
        assert isinstance(app.screen, AlertsScreen)
        assert sorted(_names(app)) == ["DiskFull", "HighCPU"]
        await pilot.press("s")  # firing
        await wait(pilot)
        assert _names(app) == ["HighCPU"]
        await pilot.press("s", "slash")  # resolved, then text
        app.screen.query_one("#filter", Input).value = "highcpu"
        await pilot.pause(0.5)
        await wait(pilot)
        assert _names(app) == []  # HighCPU is firing, not resolved: the filters combine
        await pilot.press("escape", "s")  # any status, no text
        await pilot.pause(0.5)
        await wait(pilot)
        assert sorted(_names(app)) == ["DiskFull", "HighCPU"]
        row = _names(app).index("HighCPU")
        for _ in range(row):
            await pilot.press("down")
        await pilot.press("a")
        await wait(pilot)
        assert isinstance(app.screen, FormScreen)
        app.screen.query_one("#f-note", Input).value = "looking"
        await pilot.press("enter")
        await wait(pilot)
        preview = str(app.screen.query_one("#detail", Static).render())
        assert "acknowledged by local:ops" in preview

    history = AlertHistory(engine)
    (alert,) = history.list(_filter("HighCPU"), limit=5)["data"]
    assert alert["acked_by"] == "local:ops" and alert["note"] == "looking"
    kinds = [e["kind"] for e in history.show(alert["id"])["timeline"]]
    assert "acknowledged" in kinds
    audit = LocalAdmin(engine, me).audit_list(action="alerts.*")
    assert [(a["action"], a["target"], a["source"]) for a in audit] == [
        ("alerts.ack", str(alert["id"]), "tui")
    ]


def _filter(name: str) -> Any:
    from llmgw.alerts.queries import AlertFilter

    return AlertFilter(alertname=name)
