"""``/alerts``: the alert dashboard (the live list with filters and charts, one alert's page with
its timeline and AI classification, acknowledge, annotate and re-classify).

It reads and changes the history through the same services as ``/api/alerts`` and
``llmgw alerts`` (``AlertHistory``, ``LocalAlerts`` with the signed-in user as actor and source
``web``, so every change is in the occurrence's timeline and the audit log). Admins only: the
signed-in user's role must be ``admin`` (a session carries a role, not token scopes); anyone
else gets a 403 page. Loaded on the first request to one of these pages, so ``llmgw serve``
does not import it, its templates or its charts for users who never open them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from llmgw.alerts.classifier import Category
from llmgw.alerts.modes import present
from llmgw.alerts.queries import AlertFilter, AlertHistory, alert_record
from llmgw.errors import LlmgwError, NotFound
from llmgw.identity.sessions import SessionInfo
from llmgw.server.web.charts import (
    SEVERITY_CLASSES,
    buckets,
    severity_class,
    stacked_bars,
    timeline,
)
from llmgw.server.web.core import Form, Web, posted, secure_headers, see_other, signed_in

if TYPE_CHECKING:
    from llmgw.alerts.ops import LocalAlerts

__all__ = [
    "alert_ack",
    "alert_get",
    "alert_note",
    "alert_reclassify",
    "alerts_get",
    "alerts_js",
]

RANGES = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(days=1),
          "7d": timedelta(days=7), "30d": timedelta(days=30)}  # fmt: skip
"""The time ranges the filter offers (``24h`` by default); charts per hour up to a day."""
PAGE = 50
STATS_TTL = 15.0
"""Seconds the counts and charts are shared between requests (the live refresh's interval)."""
CATEGORIES: tuple[str, ...] = get_args(Category)
SOURCES = ("alertmanager", "llmgw")
"""Where alerts come from: Alertmanager's webhook, or the gateway's own breaker transitions."""
_JS = Path(__file__).with_name("static") / "alerts.js"
_RAW_LIMIT = 64 * 1024


# -- access --------------------------------------------------------------------------------


def _refused(web: Web, session: SessionInfo) -> Response:
    return web.error(
        "Not allowed",
        "The alert dashboard is for admins. Ask an admin to give your account the admin role "
        "(llmgw users set-role EMAIL admin).",
        status=403,
        session=session,
    )


def _off(web: Web, session: SessionInfo) -> Response | None:
    if web.gateway.settings.alerts.enabled:
        return None
    return web.error(
        "Alerts are off",
        "The alert history is turned off on this server (alerts.enabled = false).",
        status=404,
        session=session,
    )


async def _reader(web: Web, request: Request) -> SessionInfo | Response:
    session = await signed_in(web, request)
    if isinstance(session, Response):
        return session
    if session.role != "admin":
        return _refused(web, session)
    return _off(web, session) or session


async def _writer(web: Web, request: Request) -> tuple[SessionInfo, Form] | Response:
    got = await posted(web, request)
    if isinstance(got, Response):
        return got
    session, _ = got
    if session.role != "admin":
        return _refused(web, session)
    return _off(web, session) or got


def _ops(web: Web, session: SessionInfo, request: Request) -> LocalAlerts:
    from llmgw.alerts.ops import LocalAlerts

    return LocalAlerts(web.engine, web.actor(session, request), source="web")


def _alert_id(request: Request) -> int | None:
    raw = str(request.path_params.get("id", ""))
    return int(raw) if raw.isdigit() and len(raw) <= 18 else None


# -- the list ------------------------------------------------------------------------------


def _local_time(text: str, name: str) -> datetime:
    """A ``datetime-local`` value (``YYYY-MM-DDTHH:MM``), read as UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise LlmgwError(f"invalid {name}: use YYYY-MM-DD HH:MM (UTC)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _filters(query: Any, now: datetime) -> tuple[AlertFilter, dict[str, str], datetime, str]:
    """The list's filter from the query string: the ``AlertFilter``, the form's values, the
    charts' start and their bucket (``hour`` or ``day``)."""
    form = {name: str(query.get(name, ""))[:200] for name in
            ("status", "severity", "category", "q", "range", "from", "to", "acked", "flapping",
             "source")}  # fmt: skip
    if form["range"] not in RANGES:
        form["range"] = "24h"
    since = now - RANGES[form["range"]]
    until = None
    if form["from"]:
        since = _local_time(form["from"], "from")
    if form["to"]:
        until = _local_time(form["to"], "to")
        if until <= since:
            raise LlmgwError("invalid time range: 'to' must be after 'from'")
    f = AlertFilter(
        status=form["status"] or None,
        severity=form["severity"] or None,
        category=form["category"] or None,
        q=form["q"].strip() or None,
        since=since,
        until=until,
        acked={"yes": True, "no": False}.get(form["acked"]),
        flapping=True if form["flapping"] == "1" else None,
        source=form["source"] or None,
    )
    f.check()
    by = "hour" if (until or now) - since <= timedelta(days=2) else "day"
    return f, form, since, by


def _list_data(web: Web, query: Any, now: datetime) -> dict[str, Any]:
    history = AlertHistory(web.engine)
    error = None
    try:
        f, form, since, by = _filters(query, now)
        page = history.list(f, limit=PAGE, cursor=query.get("cursor") or None)
    except LlmgwError as exc:
        error = exc.message
        f, form, since, by = AlertFilter(since=now - RANGES["24h"]), {}, now - RANGES["24h"], "hour"
        page = history.list(f, limit=PAGE)
    # The counts are the same for every open dashboard: one stats query per STATS_TTL, however
    # many tabs refresh (the period's start is rounded to the minute so they share it).
    since = since.replace(second=0, microsecond=0)
    stats = web.remembered(
        ("alert-stats", since.isoformat(), by), STATS_TTL, lambda: history.stats(since=since, by=by)
    )
    until = f.until or now
    chart = stacked_bars(stats["over_time"], buckets(since, until, by), by)
    severities = sorted(set(SEVERITY_CLASSES) | {k for k in stats["by_severity"] if k != "none"})
    keep = {k: v for k, v in form.items() if v}
    rows = []
    for a in page["data"]:
        ann = a["annotations"] or {}
        cls = a["classification"]
        rows.append(
            {**a, "sev_class": severity_class(a["severity"]),
             "summary": ann.get("summary") or ann.get("description") or "",
             "ai_summary": cls.get("summary") if cls.get("status") == "ok" else None}
        )  # fmt: skip
    return {
        "rows": rows,
        "next": "/alerts?" + urlencode({**keep, "cursor": page["next_cursor"]})
        if page["next_cursor"]
        else None,
        "first": "/alerts?" + urlencode(keep) if query.get("cursor") else None,
        "form": form,
        "error": error,
        "stats": stats,
        "chart": chart,
        "by": by,
        "since": since,
        "until": until,
        "severities": severities,
        "categories": CATEGORIES,
        "ranges": list(RANGES),
        "sources": SOURCES,
    }


async def alerts_get(web: Web, request: Request) -> Response:
    """GET /alerts: the live list with filters, and counts over time."""
    session = await _reader(web, request)
    if isinstance(session, Response):
        return session
    data = await web.db(_list_data, web, request.query_params, datetime.now(UTC))
    return web.page(
        "alerts.html",
        status=400 if data["error"] else 200,
        me=session,
        nav="alerts",
        script=True,
        **data,
    )


# -- one alert -----------------------------------------------------------------------------


def _occurrences(web: Web, fingerprint: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from llmgw.alerts.store import ALERTS

    with web.engine.connect() as conn:
        rows = conn.execute(
            sa.select(ALERTS)
            .where(ALERTS.c.fingerprint == fingerprint)
            .order_by(ALERTS.c.starts_at.desc(), ALERTS.c.id.desc())
            .limit(50)
        ).all()
    return [alert_record(r) for r in rows]


def _safe_link(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) address, else ``None`` (never a ``javascript:``
    or ``data:`` link from a label or an annotation)."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _alert_data(web: Web, alert_id: int, now: datetime) -> dict[str, Any]:
    history = AlertHistory(web.engine)
    alert = history.show(alert_id)
    alert["sev_class"] = severity_class(alert["severity"])
    view = present(alert, web.gateway.settings.alerts.mode)
    occurrences = _occurrences(web, alert["fingerprint"])
    try:
        raw = history.delivery(alert_id)
        text = json.dumps(raw["payload"], indent=2, ensure_ascii=False)
        cut = len(text) > _RAW_LIMIT
        delivery = {**raw, "text": text[:_RAW_LIMIT], "cut": cut}
    except NotFound:
        delivery = None
    return {
        "alert": alert,
        "view": view,
        "cls": alert["classification"],
        "occurrences": occurrences,
        "strip": timeline(occurrences, now),
        "generator": _safe_link(alert["generator_url"]),
        "delivery": delivery,
        "mode": web.gateway.settings.alerts.mode,
    }


async def alert_get(web: Web, request: Request) -> Response:
    """GET /alerts/{id}: one occurrence with its timeline, classification and actions."""
    session = await _reader(web, request)
    if isinstance(session, Response):
        return session
    ident = _alert_id(request)
    try:
        if ident is None:
            raise NotFound("no such alert")
        data = await web.db(_alert_data, web, ident, datetime.now(UTC))
    except NotFound:
        return web.error("Not found", "There is no such alert.", status=404, session=session)
    return web.page("alert.html", me=session, nav="alerts", **data)


async def _change(web: Web, request: Request, action: str) -> Response:
    got = await _writer(web, request)
    if isinstance(got, Response):
        return got
    session, form = got
    ident = _alert_id(request)
    note = form.get("note", "").strip()
    try:
        if ident is None:
            raise NotFound("no such alert")
        ops = _ops(web, session, request)
        if action == "ack":
            await web.db(ops.ack, ident, note or None)
        elif action == "note":
            await web.db(ops.annotate, ident, note)
        else:
            await web.db(ops.reclassify, ident)
            service = getattr(web.gateway, "alerts", None)
            if service is not None:
                service.wake()
    except NotFound:
        return web.error("Not found", "There is no such alert.", status=404, session=session)
    except LlmgwError as exc:
        return web.error("Not saved", exc.message, status=400, session=session)
    return see_other(f"/alerts/{ident}#actions")


async def alert_ack(web: Web, request: Request) -> Response:
    """POST /alerts/{id}/ack: acknowledge (with an optional note)."""
    return await _change(web, request, "ack")


async def alert_note(web: Web, request: Request) -> Response:
    """POST /alerts/{id}/note: set the note (the timeline keeps every earlier one)."""
    return await _change(web, request, "note")


async def alert_reclassify(web: Web, request: Request) -> Response:
    """POST /alerts/{id}/reclassify: queue a fresh classification."""
    return await _change(web, request, "reclassify")


async def alerts_js(web: Web, request: Request) -> Response:
    """GET /static/alerts.js: the list's live refresh (the one script of the pages)."""
    response = Response(_JS.read_bytes(), media_type="text/javascript")
    secure_headers(response)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
