"""The alert dashboard's pages over HTTP (the app under its lifespan, alerts ingested through the
real ``POST /alerts/webhook``): who may see them (AUTH-6), the filters, escaping of everything an
alert or a note carries, acknowledge/annotate with CSRF and the audit log, lazy loading.

security.md has no case id of its own for cross-site scripting in pages; the ids named here are
the nearest: IN-7 (template syntax in data passes through literally, never rendered: the SSTI of
CVE-2026-42203), AUTH-6 and API5 (non-admins refused: the CVE-2025-0628 class, low-privilege users
reading admin data), OAUTH-7 (frame-ancestors, no-store, 303 after a POST).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from llmgw.config import Settings
from tests.alerts.amdata import WEBHOOK_TOKEN, am_alert, am_payload, later
from tests.web.conftest import BASE, hidden, sign_in

HOOK = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}

# Attacker-controlled text: Alertmanager passes labels and annotations through from whoever
# writes the alerting rules (or pushes to its API), and notes come from any admin.
XSS_LABEL = "<script>alert('label')</script>"
XSS_ATTR = '"><img src=x onerror=alert(1)>'
XSS_SUMMARY = "{{7*7}} <img src=x onerror=alert('summary')> ${7*7}"
XSS_NOTE = "</textarea><svg onload=alert('note')>"


@pytest.fixture
def db_file(db_url: str) -> str:
    """Every test here runs on SQLite and on a fresh PostgreSQL database (the charts' hour
    buckets are SQL of each dialect's own)."""
    return db_url


@pytest.fixture
async def app(home: Path, db_file: str, web_engine: Engine) -> AsyncIterator[Any]:
    """The gateway with the alert service in mode ``transparent`` (no LLM needed here)."""
    from llmgw.server import create_app

    settings = Settings(
        home=home,
        database={"url": db_file},
        alerts={"webhook_token": WEBHOOK_TOKEN, "mode": "transparent", "poll_interval": 0.05},
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


async def _ingest(client: httpx.AsyncClient, *alerts: dict[str, Any]) -> None:
    r = await client.post("/alerts/webhook", json=am_payload(*alerts), headers=HOOK)
    assert r.status_code == 200, r.text


async def _seed(client: httpx.AsyncClient) -> None:
    """HighCPU fired and resolved, fired again (flapping needs 3); DiskFull warning; an alert
    whose labels and annotations carry markup."""
    await _ingest(client, am_alert(starts=later(0)))
    await _ingest(client, am_alert(status="resolved", starts=later(0), ends=later(60)))
    await _ingest(client, am_alert(starts=later(600)))
    await _ingest(client, am_alert("DiskFull", labels={"severity": "warning"}))
    await _ingest(
        client,
        am_alert(
            XSS_LABEL,
            labels={"team": XSS_ATTR, "severity": XSS_ATTR},
            annotations={"summary": XSS_SUMMARY, "runbook_url": "javascript:alert(2)"},
        )
        | {"generatorURL": "javascript:alert(3)"},
    )


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<a href="/alerts/(\d+)">', html)]


async def test_signed_out_goes_to_sign_in_and_comes_back(
    client: httpx.AsyncClient, make_user: Any
) -> None:
    r = await client.get("/alerts?status=firing")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Falerts%3Fstatus%3Dfiring"
    make_user("ops@example.com", role="admin")
    r = await sign_in(client, "ops@example.com", next_url="/alerts?status=firing")
    assert r.status_code == 303 and r.headers["location"] == "/alerts?status=firing"


async def test_non_admin_is_refused_everywhere_and_changes_nothing(
    client: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    """AUTH-6 / API5 (CVE-2025-0628 class): a signed-in user without the admin role gets a
    403 page that says why, on every page and form; the alert is not acknowledged."""
    await _seed(client)
    make_user("bob@example.com")
    await sign_in(client, "bob@example.com")
    account = await client.get("/account")
    assert 'href="/alerts"' not in account.text  # no link to a page they may not open
    csrf = hidden(account.text, "csrf")
    for method, path in [
        ("GET", "/alerts"),
        ("GET", "/alerts/1"),
        ("POST", "/alerts/1/ack"),
        ("POST", "/alerts/1/note"),
        ("POST", "/alerts/1/reclassify"),
    ]:
        data = {"csrf": csrf, "note": "mine now"} if method == "POST" else None
        r = await client.request(method, path, data=data)
        assert r.status_code == 403, path
        assert "The alert dashboard is for admins" in r.text, path
        assert "HighCPU" not in r.text and "DiskFull" not in r.text
    from llmgw.alerts.queries import AlertHistory

    one = AlertHistory(web_engine).get(1)
    assert one["acked_at"] is None and one["note"] is None


async def test_list_filters_and_charts(
    client: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    await _seed(client)
    make_user("ops@example.com", role="admin")
    await sign_in(client, "ops@example.com")
    # the seeded alerts started on 2026-11-22; the period is a custom range around them
    period = {"from": "2026-11-22T00:00", "to": "2026-11-23T00:00"}
    r = await client.get("/alerts", params=period)
    assert r.status_code == 200
    assert r.headers["content-security-policy"].startswith(
        "default-src 'none'; script-src 'self'; connect-src 'self';"
    )
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]  # OAUTH-7
    assert r.headers["cache-control"] == "no-store"
    assert len(_ids(r.text)) == 4
    assert 'aria-current="page">Alerts</a>' in r.text
    # counts over time: one bar per hour of the range, the hour 03:00 holds all four
    assert r.text.count("<title>2026-11-22 03:00: ") >= 2
    assert "<title>2026-11-22 03:00: 2 critical</title>" in r.text
    assert "<title>2026-11-22 03:00: 1 warning</title>" in r.text
    assert '<span class="pill firing">3 firing</span>' in r.text
    # the label set that fired twice, linked to its alerts
    most = r.text[r.text.index("Fired most often") :]
    assert '<a href="/alerts?q=HighCPU">HighCPU</a>' in most and '<td class="num">2</td>' in most

    async def names(**params: str) -> list[str]:
        page = await client.get("/alerts", params={**period, **params})
        assert page.status_code == 200, page.text
        return re.findall(r'<a href="/alerts/\d+">([^<]*)</a>', page.text)

    assert await names(status="resolved") == ["HighCPU"]
    assert await names(severity="warning") == ["DiskFull"]
    assert await names(q="diskfull") == ["DiskFull"]
    assert await names(q="job=node", status="firing", severity="critical") == ["HighCPU"]
    assert await names(flapping="1") == []
    assert len(await names(source="alertmanager")) == 4 and await names(source="llmgw") == []
    assert await names(to="2026-11-22T03:00") == []  # nothing started before 03:00
    # a category comes from the classification: give DiskFull one through the history service
    from llmgw.alerts.queries import AlertHistory

    history = AlertHistory(web_engine)
    disk = next(a for a in history.list(_filter(q="diskfull"))["data"])
    history.save_classification(disk["id"], "ok", _classification("capacity"), None)
    assert await names(category="capacity") == ["DiskFull"]
    # bad input: the page says what is wrong (400), and still shows the last day
    bad = await client.get("/alerts", params={"status": "sleeping"})
    assert bad.status_code == 400 and "invalid status: firing or resolved" in bad.text
    bad = await client.get("/alerts", params={"from": "yesterday"})
    assert bad.status_code == 400 and "invalid from" in bad.text
    bad = await client.get("/alerts", params={"from": "2026-11-23T00:00", "to": "2026-11-22T00:00"})
    assert bad.status_code == 400 and "must be after" in bad.text
    # paging: 50 per page, "Older" carries the filters and the cursor
    for i in range(55):
        await _ingest(client, am_alert(f"Bulk{i:02d}", starts=later(1000 + i)))
    first = await client.get("/alerts", params=period)
    older = re.search(r'<a href="(/alerts\?[^"]+)">Older', first.text)
    assert len(_ids(first.text)) == 50 and older
    second = await client.get(older.group(1).replace("&amp;", "&"))
    assert len(_ids(second.text)) == 9 and not set(_ids(second.text)) & set(_ids(first.text))


class _Elements(HTMLParser):
    """What a browser would run or follow: script sources, ``on*`` handler attributes, links
    and sources with a ``javascript:``/``data:`` URL."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs).get("src") or "(inline)")
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append(f"{tag} {name}")
            url = (value or "").strip().lower()
            if name in ("href", "src", "action", "formaction") and url.startswith(
                ("javascript:", "data:")
            ):
                self.urls.append(url)


def _markup(html: str) -> tuple[list[str], list[str], list[str]]:
    parser = _Elements()
    parser.feed(html)
    return parser.scripts, parser.handlers, parser.urls


def _filter(**kw: Any) -> Any:
    from llmgw.alerts.queries import AlertFilter

    return AlertFilter(**kw)


def _classification(category: str, summary: str = "Disk almost full") -> dict[str, Any]:
    return {
        "severity": "warning",
        "category": category,
        "summary": summary,
        "probable_cause": "logs grow",
        "recommendations": ["rotate logs"],
        "confidence": 0.8,
        "model": "openai/gpt-4o-mini",
        "prompt_version": "v1",
    }


async def test_attacker_text_is_shown_literally_never_as_markup(
    client: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    """IN-7 (and the XSS it implies for pages): labels, annotations, the generator URL, a note
    and the model's own output carrying markup, script URLs and template syntax are shown as
    text; ``{{7*7}}`` stays ``{{7*7}}`` (no template rendering of data: CVE-2026-42203)."""
    from llmgw.alerts.queries import AlertHistory

    await _seed(client)
    make_user("ops@example.com", role="admin")
    await sign_in(client, "ops@example.com")
    listing = await client.get("/alerts", params={"from": "2026-11-22T00:00"})
    evil = max(_ids(listing.text))
    AlertHistory(web_engine).save_classification(
        evil,
        "ok",
        _classification("security", summary="<b>AI</b><script>alert('ai')</script>"),
        None,
    )
    page = await client.get(f"/alerts/{evil}")
    await client.post(
        f"/alerts/{evil}/note", data={"csrf": hidden(page.text, "csrf"), "note": XSS_NOTE}
    )
    for html in ((await client.get(f"/alerts/{evil}")).text, (await client.get("/alerts")).text):
        for raw in (XSS_LABEL, XSS_ATTR, "<img src=x", "<script>alert", "<svg onload", "<b>AI"):
            assert raw not in html
        assert _markup(html) == (["/static/alerts.js"] if "Live" in html else [], [], [])
        # literally: rendered as a template it would read 49
        assert "{{7*7}} &lt;img src=x onerror=alert(&#39;summary&#39;)&gt; ${7*7}" in html
    one = (await client.get(f"/alerts/{evil}")).text
    assert "&lt;/textarea&gt;&lt;svg onload=alert(&#39;note&#39;)&gt;" in one
    # the runbook URL is text, and a javascript: generator URL is never a link
    assert '<td class="text">javascript:alert(2)</td>' in one
    assert 'href="javascript:' not in one and "<dd>javascript:alert(3)</dd>" in one
    # an unknown severity never becomes a class name
    assert 'class="sev sev-other"' in one


async def test_acknowledge_and_annotate_need_csrf_and_are_audited(
    client: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    from llmgw.admin.audit import AuditService
    from llmgw.alerts.queries import AlertHistory

    await _seed(client)
    make_user("ops@example.com", role="admin")
    await sign_in(client, "ops@example.com")
    page = await client.get("/alerts/2")
    assert page.status_code == 200 and "Not classified: the server runs in mode" in page.text
    csrf = hidden(page.text, "csrf")
    # no token, a wrong token, another origin: refused, nothing written
    for data, headers in [
        ({"note": "x"}, {}),
        ({"csrf": "forged", "note": "x"}, {}),
        ({"csrf": csrf, "note": "x"}, {"Origin": "https://evil.example"}),
    ]:
        r = await client.post("/alerts/2/ack", data=data, headers=headers)
        assert r.status_code == 403 and "This form has expired" in r.text
    assert AlertHistory(web_engine).get(2)["acked_at"] is None
    assert AuditService(web_engine).list(action="alerts.*") == []

    r = await client.post("/alerts/2/ack", data={"csrf": csrf, "note": "on it"})
    assert r.status_code == 303 and r.headers["location"] == "/alerts/2#actions"
    r = await client.post("/alerts/2/note", data={"csrf": csrf, "note": "batch job at 03:00"})
    assert r.status_code == 303
    r = await client.post("/alerts/2/note", data={"csrf": csrf, "note": "   "})
    assert r.status_code == 400 and "the note is empty" in r.text
    r = await client.post("/alerts/2/reclassify", data={"csrf": csrf})
    assert r.status_code == 303
    r = await client.post("/alerts/999999/ack", data={"csrf": csrf})
    assert r.status_code == 404 and "There is no such alert." in r.text

    one = AlertHistory(web_engine).show(2)
    assert one["acked_by"] == "ops@example.com" and one["note"] == "batch job at 03:00"
    kinds = [e["kind"] for e in one["timeline"]]
    assert kinds[0] == "fired"
    assert {"acknowledged", "annotated", "reclassify_requested"} <= set(kinds)
    audit = AuditService(web_engine).list(action="alerts.*")
    assert sorted(a["action"] for a in audit) == ["alerts.ack", "alerts.note", "alerts.reclassify"]
    assert {(a["actor"], a["source"], a["target"]) for a in audit} == {
        ("ops@example.com", "web", "2")
    }
    page = await client.get("/alerts/2")
    assert "acknowledged by ops@example.com" in page.text
    assert "<strong>acknowledged</strong> by ops@example.com" in page.text
    assert "<blockquote>on it</blockquote>" in page.text
    assert ">Acknowledge</button>" not in page.text  # already acknowledged


async def test_alert_page_timeline_occurrences_and_unknown_ids(
    client: httpx.AsyncClient, make_user: Any
) -> None:
    await _seed(client)
    make_user("ops@example.com", role="admin")
    await sign_in(client, "ops@example.com")
    page = await client.get("/alerts/1")
    assert page.status_code == 200
    # both occurrences of the HighCPU label set, this one resolved after a minute
    assert "1 (this one)" in page.text and '<a href="/alerts/2">2</a>' in page.text
    assert '<rect class="span resolved current"' in page.text
    assert '<rect class="span firing"' in page.text
    assert "<strong>fired</strong>" in page.text and "<strong>resolved</strong>" in page.text
    assert "Webhook body #" in page.text and "&#34;version&#34;: &#34;4&#34;" in page.text
    for path in ("/alerts/999999", "/alerts/webhook", "/alerts/1x"):
        r = await client.get(path)
        assert r.status_code == 404 and "There is no such alert." in r.text, path


async def test_pages_say_when_alerts_are_off(
    app: Any, client: httpx.AsyncClient, make_user: Any
) -> None:
    """``alerts.enabled = false``: the pages answer 404 with the reason, not a server error."""
    from llmgw.server.app import gateway_of

    make_user("ops@example.com", role="admin")
    await sign_in(client, "ops@example.com")
    gateway = gateway_of(app)
    gateway.settings = gateway.settings.model_copy(
        update={"alerts": gateway.settings.alerts.model_copy(update={"enabled": False})}
    )
    r = await client.get("/alerts")
    assert r.status_code == 404 and "The alert history is turned off" in r.text


def test_serve_does_not_load_the_dashboard_until_it_is_opened(tmp_path: Path) -> None:
    """The dashboard's module, charts and templates load on the first request to them, not
    when the app is built (``llmgw serve`` start-up and RSS stay as they were)."""
    code = f"""
import sys
from llmgw.config import Settings
from llmgw.server import create_app
create_app(Settings(home={str(tmp_path)!r}, database={{"url": "sqlite:///{tmp_path}/x.db"}}))
print(sorted(m for m in ("llmgw.server.web.alerts", "llmgw.server.web.charts") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


async def test_counts_are_shared_between_requests_for_a_short_while(
    web_app: Any, fake_monotonic: list[float]
) -> None:
    """``Web.remembered``: the dashboard's counts are computed once per ``STATS_TTL`` however
    many tabs refresh, then again; the memo stays small."""
    web = web_app.state.pages.web
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert web.remembered("k", 15.0, compute) == 1
    fake_monotonic[0] += 14.9
    assert web.remembered("k", 15.0, compute) == 1 and len(calls) == 1
    fake_monotonic[0] += 0.2
    assert web.remembered("k", 15.0, compute) == 2
    for i in range(200):
        web.remembered(("other", i), 15.0, lambda: 0)
    assert len(web.memo) <= 64


async def test_silences_alertmanager_reports_are_shown(
    client: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    """What the silence sync learnt from Alertmanager (who silenced the alert, until when and
    why) is on the list and the alert's page; the silence's comment is attacker-controlled
    text like any other (IN-7)."""
    from llmgw.alerts.queries import AlertHistory
    from llmgw.alerts.silences import SilenceSync

    await _seed(client)
    make_user("ops@example.com", role="admin")
    await sign_in(client, "ops@example.com")
    disk = AlertHistory(web_engine).list(_filter(q="diskfull"))["data"][0]
    starts = datetime.fromisoformat(disk["starts_at"])
    starts = starts.replace(microsecond=starts.microsecond // 1000 * 1000)  # the API's precision
    found = {
        (disk["fingerprint"], starts): {
            "state": "silenced",
            "silenced_by": [{"id": "5b1f", "created_by": "ann", "ends_at": "2026-11-23T00:00:00Z",
                             "comment": "maintenance <script>alert('silence')</script>"}],
            "inhibited_by": [],
        }
    }  # fmt: skip
    assert SilenceSync(web_engine, []).apply(found)["silenced"] == 1
    listing = await client.get("/alerts", params={"from": "2026-11-22T00:00"})
    row = listing.text[listing.text.index(f'<a href="/alerts/{disk["id"]}">') :]
    assert row[: row.index("</tr>")].count('<span class="badge silenced">silenced</span>') == 1
    page = (await client.get(f"/alerts/{disk['id']}")).text
    assert '<h2 id="silence-h">Silenced in Alertmanager</h2>' in page
    assert (
        "Silence <code>5b1f</code> by ann until 2026-11-23 00:00:00 UTC: <q>maintenance "
        "&lt;script&gt;alert(&#39;silence&#39;)&lt;/script&gt;</q>"
    ) in page
    assert "<strong>silenced</strong> by alertmanager" in page
    assert _markup(page)[0] == []  # no script element on the alert's page at all
