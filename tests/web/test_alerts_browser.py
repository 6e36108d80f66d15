"""The alert dashboard in a real browser: Debian's headless Chromium driven by Playwright
(``executable_path=/usr/bin/chromium``; no browser is downloaded) against a real gateway on
uvicorn, alerts sent through the real ``POST /alerts/webhook`` and classified through the
router by the OpenAI emulator.

The admin signs in, filters the list, opens an alert (AI classification marked as such, its
timeline and occurrences), acknowledges it with a note carrying markup; the live refresh brings
a new alert in without a reload; a non-admin gets the refusal. No script an alert or a note
carries ever runs (no dialog opens: IN-7 and the XSS it implies), and the page raises no CSP
violation. Screenshots in light and dark mode (``prefers-color-scheme``) are taken on the way;
``UPDATE_SCREENSHOTS=1`` copies them to ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from llmgw.config import Settings
from tests.alerts.amdata import WEBHOOK_TOKEN, am_alert, am_payload
from tests.web.conftest import PASSWORD
from tests.web.test_browser import CHROMIUM, DOCS, _need_chromium

HOOK = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
SHOTS = ("alerts-list-light.png", "alerts-list-dark.png", "alerts-alert-light.png",
         "alerts-alert-dark.png")  # fmt: skip


@pytest.fixture
def gateway(
    home: Path, db_file: str, web_engine: Engine, make_upstream: Callable[..., Any]
) -> Iterator[str]:
    """``llmgw serve``'s app on uvicorn with the alert service classifying through the router
    to the OpenAI emulator (a real HTTP upstream)."""
    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    llm = make_upstream()
    settings = Settings(
        home=home,
        database={"url": db_file},
        providers=[llm.provider_config("openai", models=["gpt-4o-mini"])],
        aliases={"alerts-classifier": ["openai/gpt-4o-mini"]},
        alerts={"webhook_token": WEBHOOK_TOKEN, "poll_interval": 0.05, "retry_backoff": 0},
    )
    server = serve_in_thread(create_app(settings))
    try:
        yield server.url
    finally:
        server.stop()


def _z(when: datetime) -> datetime:
    return when.replace(microsecond=0)


def _send(url: str, *alerts: dict[str, Any]) -> None:
    r = httpx.post(f"{url}/alerts/webhook", json=am_payload(*alerts), headers=HOOK, timeout=10)
    assert r.status_code == 200, r.text


def _ingest(url: str, now: datetime) -> None:
    """A morning's worth of alerts: HighCPU flapping (fired three times within the hour, the
    first two resolved after a few minutes), a disk
    filling up, an error rate, a certificate, and one whose labels and annotations carry
    markup and template syntax."""
    for i, minutes in enumerate((50, 30, 10)):
        start = _z(now - timedelta(minutes=minutes))
        fired = am_alert(starts=start, annotations={
            "summary": "CPU above 90% on node1", "description": "5m load 14.2 on 8 cores"})  # fmt: skip
        _send(url, fired)
        if i < 2:
            _send(url, fired | {"status": "resolved", "endsAt": (start + timedelta(minutes=8))
                                .isoformat().replace("+00:00", "Z")})  # fmt: skip
    _send(
        url,
        am_alert("DiskFull", starts=_z(now - timedelta(hours=5)),
                 labels={"severity": "warning", "mountpoint": "/var"},
                 annotations={"summary": "/var on db1 is 93% full", "runbook_url":
                              "https://runbooks.example/disk"}),
        am_alert("APIErrorRate", starts=_z(now - timedelta(hours=9)),
                 labels={"severity": "error", "service": "checkout"},
                 annotations={"summary": "5xx ratio 7% on checkout"}),
    )  # fmt: skip
    _send(
        url,
        am_alert("CertExpiry", starts=_z(now - timedelta(hours=14)),
                 labels={"severity": "info"}, annotations={"summary": "TLS cert expires in 12 days"}),
        am_alert("<script>alert('name')</script>", starts=_z(now - timedelta(hours=2)),
                 labels={"severity": "critical", "team": '"><img src=x onerror=alert(1)>'},
                 annotations={"summary": "{{7*7}} <img src=x onerror=alert('summary')>"})
        | {"generatorURL": "javascript:alert('gen')"},
    )  # fmt: skip


def _wait_classified(engine: Engine, n: int) -> None:
    from llmgw.alerts.queries import AlertFilter, AlertHistory

    history = AlertHistory(engine)
    deadline = time.monotonic() + 60
    while len(history.list(AlertFilter(classification="ok"), limit=100)["data"]) < n:
        assert time.monotonic() < deadline, "the worker did not classify the alerts in time"
        time.sleep(0.2)


@pytest.mark.slow
def test_alert_dashboard_in_chromium(
    gateway: str, make_user: Any, web_engine: Engine, tmp_path: Path
) -> None:
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    from llmgw.admin.audit import AuditService
    from llmgw.alerts.queries import AlertFilter, AlertHistory

    make_user("ops@example.com", role="admin")
    make_user("bob@example.com")
    now = datetime.now(UTC)
    _ingest(gateway, now)
    _wait_classified(web_engine, 7)
    shots = tmp_path / "shots"
    shots.mkdir()
    dialogs: list[str] = []
    problems: list[str] = []

    def dialog(d: Any) -> None:
        dialogs.append(d.message)
        d.dismiss()

    def console(m: Any) -> None:
        if m.type == "error":
            problems.append(m.text)

    def watch(page: Any) -> None:
        page.on("dialog", dialog)
        page.on("console", console)
        page.set_default_timeout(20_000)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            light = browser.new_context(
                viewport={"width": 1280, "height": 900}, color_scheme="light"
            )
            page = light.new_page()
            watch(page)
            page.goto(f"{gateway}/alerts")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            page.get_by_label("Email").fill("ops@example.com")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()

            expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
            table = page.locator("#alert-list table")
            expect(table.locator("tbody tr")).to_have_count(7)
            expect(
                page.get_by_role("img", name="Alerts started per hour by severity")
            ).to_be_visible()
            expect(page.get_by_text("Live", exact=True)).to_be_visible()  # the script ran
            # attacker text is shown as text (and nothing ran)
            expect(table.get_by_role("link", name="<script>alert('name')</script>")).to_be_visible()
            expect(
                table.get_by_text("{{7*7}} <img src=x onerror=alert('summary')>")
            ).to_be_visible()
            # the AI summary is marked as AI output in the list
            expect(table.locator(".ai-inline .badge.ai").first).to_have_text("AI")
            page.screenshot(path=str(shots / "alerts-list-light.png"), full_page=True)

            # filter: severity warning -> DiskFull only; clear brings everything back
            page.get_by_label("Severity", exact=True).select_option("warning")
            page.get_by_role("button", name="Filter").click()
            page.wait_for_url("**/alerts?*severity=warning*")
            expect(table.locator("tbody tr")).to_have_count(1)
            expect(table.get_by_role("link", name="DiskFull")).to_be_visible()
            page.get_by_role("link", name="Clear").click()
            expect(table.locator("tbody tr")).to_have_count(7)
            page.get_by_label("Text", exact=True).fill("checkout")
            page.get_by_label("Text", exact=True).press("Enter")
            expect(table.locator("tbody tr")).to_have_count(1)
            page.get_by_role("link", name="Clear").click()

            # live refresh: a new alert arrives through the webhook, the list shows it unasked
            _send(gateway, am_alert("LateArrival", starts=_z(datetime.now(UTC)),
                                    labels={"severity": "warning"}))  # fmt: skip
            expect(table.get_by_role("link", name="LateArrival")).to_be_visible(timeout=40_000)
            expect(page.locator("#live-status")).to_contain_text("updated")

            # one alert: the newest HighCPU occurrence (the third time it fired: flapping)
            table.get_by_role("link", name="HighCPU").first.click()
            expect(page.get_by_role("heading", name="HighCPU", exact=True)).to_be_visible()
            expect(page.locator(".facts .badge.flapping")).to_have_text("flapping")
            ai = page.locator("section.ai-box")
            expect(ai.get_by_text("AI-generated")).to_be_visible()
            expect(
                ai.get_by_text("Written by a language model (openai/gpt-4o-mini")
            ).to_be_visible()
            expect(page.get_by_role("img", name="Firing periods of this label set")).to_be_visible()
            expect(page.locator("svg rect.span")).to_have_count(3)
            expect(page.locator("ol.timeline")).to_contain_text("fired")
            page.get_by_label("Note (optional)").fill("on it <svg onload=alert('note')>")
            page.get_by_role("button", name="Acknowledge").click()
            expect(page.locator(".facts")).to_contain_text("acknowledged by ops@example.com")
            expect(page.locator("ol.timeline blockquote").first).to_have_text(
                "on it <svg onload=alert('note')>"
            )
            alert_url = page.url.split("#")[0]
            page.screenshot(path=str(shots / "alerts-alert-light.png"), full_page=True)

            # the same pages in dark mode, as an OS set to dark shows them
            dark = browser.new_context(
                viewport={"width": 1280, "height": 900},
                color_scheme="dark",
                storage_state=light.storage_state(),
            )
            dpage = dark.new_page()
            watch(dpage)
            dpage.goto(f"{gateway}/alerts")
            expect(dpage.locator("#alert-list table tbody tr")).to_have_count(8)
            bg = dpage.evaluate("getComputedStyle(document.body).backgroundColor")
            assert bg == "rgb(13, 17, 23)"
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == (
                "rgb(255, 255, 255)"
            )
            dpage.screenshot(path=str(shots / "alerts-list-dark.png"), full_page=True)
            dpage.goto(alert_url)
            expect(dpage.get_by_text("AI-generated")).to_be_visible()
            dpage.screenshot(path=str(shots / "alerts-alert-dark.png"), full_page=True)

            # a signed-in user who is not an admin: the refusal, and no alert data
            other = browser.new_context()
            bob = other.new_page()
            watch(bob)
            bob.goto(f"{gateway}/login?next=%2Falerts")
            bob.get_by_label("Email").fill("bob@example.com")
            bob.get_by_label("Password").fill(PASSWORD)
            bob.get_by_role("button", name="Sign in").click()
            expect(bob.get_by_role("heading", name="Not allowed")).to_be_visible()
            expect(bob.get_by_text("The alert dashboard is for admins")).to_be_visible()
            assert "HighCPU" not in bob.content()
        finally:
            browser.close()

    assert dialogs == [], f"script from alert data ran: {dialogs}"
    assert not [m for m in problems if "Content Security Policy" in m], problems
    acked = AlertHistory(web_engine).list(AlertFilter(acked=True))["data"]
    assert [a["alertname"] for a in acked] == ["HighCPU"]
    assert acked[0]["acked_by"] == "ops@example.com"
    audit = AuditService(web_engine).list(action="alerts.ack")
    assert [(a["actor"], a["source"]) for a in audit] == [("ops@example.com", "web")]
    for name in SHOTS:
        data = (shots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        assert WEBHOOK_TOKEN.encode() not in data
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        for name in SHOTS:
            shutil.copy(shots / name, DOCS / name)
