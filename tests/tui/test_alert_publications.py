"""An open alert's publications in the dashboard, from real ``alert_publications`` rows (the
fire sent to PagerDuty, the resolve failed after three 400s) on SQLite and PostgreSQL: in local
mode through ``LocalAlerts`` and with ``--url`` through ``RemoteAlerts`` and a real server, at
80x24."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from textual.widgets import Static

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.alerts.ops import LocalAlerts, RemoteAlerts
from llmgw.alerts.payload import parse_delivery
from llmgw.alerts.publishers import records
from llmgw.alerts.store import AlertStore
from llmgw.config import AlertsSettings, Settings
from llmgw.emulators.runner import serve_in_thread
from llmgw.tui.app import LlmgwApp
from llmgw.tui.screens.alert_detail import AlertDetailScreen
from tests.alerts.amdata import WEBHOOK_TOKEN, am_alert, am_payload, later
from tests.tui.conftest import clock


def _seed(engine: Engine) -> int:
    """One NodeDown fired and resolved; the fire published, the resolve given up."""
    store = AlertStore(engine, AlertsSettings())
    for status in ("firing", "resolved"):
        alert = am_alert(
            "NodeDown", status=status, ends=later(300) if status == "resolved" else None
        )
        store.ingest(parse_delivery(am_payload(alert)))
    alert_id = 1  # the newest, the one Enter opens
    records.begin(engine, alert_id, "pd-db", "pagerduty", "fire", later(1))
    records.settle(engine, alert_id, "pd-db", "pagerduty", "fire", later(2), state="sent",
                   external_id="llmgw-3f2a9c1e7b", http_status=202)  # fmt: skip
    for n in range(3):
        records.begin(engine, alert_id, "pd-db", "pagerduty", "resolve", later(301 + n))
    records.settle(engine, alert_id, "pd-db", "pagerduty", "resolve", later(305), state="failed",
                   http_status=400, error="HTTP 400: Invalid routing key [bold]x[/]")  # fmt: skip
    return alert_id


ROWS = [
    f"fire    pd-db (pagerduty)  sent  HTTP 202  1 attempt  {later(2):%m-%d %H:%M:%S}",
    "        id llmgw-3f2a9c1e7b",
    f"resolve pd-db (pagerduty)  failed  HTTP 400  3 attempts  {later(305):%m-%d %H:%M:%S}",
    "        last error: HTTP 400: Invalid routing key [bold]x[/]",  # as sent, not markup
]


async def _shown(app: LlmgwApp, wait: Any) -> list[str]:
    """The Publications rows of the newest alert's detail, at 80x24."""
    async with app.run_test(size=(80, 24)) as pilot:
        await wait(pilot)
        await pilot.press("8")
        await wait(pilot)
        await pilot.press("enter")
        await wait(pilot)
        assert isinstance(app.screen, AlertDetailScreen)
        title = app.screen.query_one("#alert-publications-title", Static)
        assert title.display and str(title.render()) == "Publications"
        rows = str(app.screen.query_one("#alert-publications", Static).render()).splitlines()
    assert all(len(row) <= 76 for row in rows)  # one line each at 80 columns
    return rows


async def test_local_detail_lists_each_publication(engine: Engine, wait: Any) -> None:
    _seed(engine)
    me = Actor("local:ops", "local")
    app = LlmgwApp(LocalAdmin(engine, me, source="tui"), clock=clock, poll_interval=3600,
                   alerts=LocalAlerts(engine, me, "tui", mode="enriched"))  # fmt: skip
    assert await _shown(app, wait) == ROWS


async def test_remote_detail_lists_each_publication(home: Any, wait: Any) -> None:
    """``llmgw dash --url``: the same rows through the server's ``GET /api/alerts/{id}``."""
    from llmgw.server import create_app
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    db_url = f"sqlite:///{home / 'remote.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    _seed(engine)
    admin = LocalAdmin(engine, Actor.local())
    admin.users_create("ops@example.com", role="admin")
    key = str(admin.keys_create("ops", user="ops@example.com")["key"])
    settings = Settings(home=home, database={"url": db_url}, providers=[],
                        alerts={"webhook_token": WEBHOOK_TOKEN})  # fmt: skip
    server = serve_in_thread(create_app(settings))
    source = RemoteAlerts(server.url, key, "tui")
    try:
        app = LlmgwApp(admin, clock=clock, poll_interval=3600, alerts=source)
        assert await _shown(app, wait) == ROWS
    finally:
        source.close()
        server.stop()
        engine.dispose()
