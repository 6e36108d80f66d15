"""The alert history's HTTP face: ``POST /alerts/webhook`` (Alertmanager) and ``/api/alerts``.

``/api/alerts`` (list, stats, health, one alert with its timeline, its raw delivery, ack, note,
re-classify) needs an admin's API key, like ``/admin/v1``; acknowledgements, notes and
re-classifications go to the audit log with the admin's name.

The webhook has its own bearer token (``alerts.webhook_token``, never an API key) and answers
2xx only once the delivery is committed (``AlertStore.ingest`` in a worker thread); nothing
slow happens in the request: classification runs later from the job queue. Statuses follow
Alertmanager's retry rules (IN-6): 401 bad token, 404 webhook not configured, 413 too large,
400 unusable payload (Alertmanager does not retry a 4xx; it sends the group again at its next
``group_interval``), 503 only when the database failed (Alertmanager retries with backoff).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy.exc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from llmgw.admin.ops import Actor
from llmgw.errors import (
    AuthError,
    DatabaseError,
    InvalidRequest,
    LlmgwError,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from llmgw.server.body import decode_json, receive_body
from llmgw.server.errors import error_response
from llmgw.server.pipeline import send_json
from llmgw.server.routes.admin import require_admin
from llmgw.server.state import Gateway

if TYPE_CHECKING:  # the history's modules load on the first request that needs them
    from llmgw.alerts.queries import AlertHistory

__all__ = ["WEBHOOK_PATH", "WebhookRoute", "alert_routes"]

WEBHOOK_PATH = "/alerts/webhook"
API = "/api/alerts"
log = logging.getLogger("llmgw.alerts")


def _bearer(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value)
    return b""


class WebhookRoute:
    """``POST /alerts/webhook`` as a plain ASGI app that answers its own errors, so the app
    dispatches it by its exact path (``GatewayApp.direct``) instead of through Starlette's scan
    of every route, its ``Request``/``Response`` objects and its exception middleware (issue 14:
    the scan of about 70 routes was a large part of a delivery's CPU in the webhook's process).
    """

    __slots__ = ("expected", "g", "limit")

    def __init__(self, g: Gateway) -> None:
        s = g.settings.alerts
        token = s.webhook_token
        self.g = g
        self.expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None
        self.limit = s.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._store(scope, receive)
        except LlmgwError as exc:
            await error_response(exc, self.g.scrubber)(scope, receive, send)
            return
        await send_json(send, orjson.dumps(body))

    async def _store(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        g, limit = self.g, self.limit
        stats = g.alerts.stats
        if self.expected is None:
            raise NotFound(
                "the alert webhook is not configured: set alerts.webhook_token"
                " (LLMGW_ALERTS__WEBHOOK_TOKEN)",
                code="webhook_not_configured",
            )
        if not hmac.compare_digest(_bearer(scope), self.expected):
            stats.deliveries["unauthorized"] += 1
            raise AuthError(
                "the alert webhook needs its bearer token", code="invalid_webhook_token"
            )
        from llmgw.alerts.payload import parse_delivery, without_nul

        try:
            raw = await receive_body(scope, receive, limit)
            payload = decode_json(raw)
            if b"\\u0000" in raw:  # only JSON's escape can put a NUL in a string
                payload = without_nul(payload)
            delivery = parse_delivery(payload)
        except PayloadTooLarge:
            stats.deliveries["too_large"] += 1
            log.error("alert delivery refused: larger than %d bytes", limit)
            raise
        except InvalidRequest as exc:
            stats.deliveries["invalid"] += 1
            log.error("alert delivery refused (Alertmanager will not retry it): %s", exc.message)
            raise
        try:
            try:
                result = await g.alerts.ingest(delivery)
            except sqlalchemy.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # A pooled connection the database dropped (a restart): the transaction rolled
                # back, so one more try on a fresh connection is safe.
                result = await g.alerts.ingest(delivery)
        except (sqlalchemy.exc.SQLAlchemyError, DatabaseError, OSError) as exc:
            stats.deliveries["failed"] += 1
            log.error("alert delivery not stored (answered 503): %s", type(exc).__name__)
            err = Unavailable(
                "the alert history could not store this delivery; retry",
                code="storage_unavailable",
            )
            err.retry_after = 1.0
            raise err from None
        if result.duplicate:
            stats.deliveries["duplicate"] += 1
        else:
            stats.deliveries["stored"] += 1
            for name in ("new", "resolved", "updated", "stale"):
                stats.alerts[name] += getattr(result, name)
            if result.new_ids:
                g.alerts.wake()
        return {
            "status": "stored",
            "delivery_id": result.delivery_id,
            "duplicate": result.duplicate,
            "new": result.new,
            "resolved": result.resolved,
        }


def alert_routes(g: Gateway) -> list[Route]:
    """The alert routes bound to gateway ``g`` (none when ``alerts.enabled`` is false)."""
    s = g.settings.alerts
    if not s.enabled:
        return []

    async def caller(request: Request) -> Actor:
        key = await g.auth.authenticate(request.scope["headers"])
        actor: Actor = require_admin(key, request.scope)
        return actor

    def history() -> AlertHistory:
        h: AlertHistory = g.alerts.history
        return h

    def answer(record: object) -> Response:
        return Response(orjson.dumps(record), media_type="application/json")

    def alert_id(request: Request) -> int:
        raw = request.path_params["id"]
        if not raw.isdigit() or len(raw) > 18:
            raise NotFound(f"no alert {raw[:40]!r}")
        return int(raw)

    async def note_of(request: Request, *, required: bool) -> str | None:
        raw = await receive_body(request.scope, request.receive, 64 * 1024)
        body = decode_json(raw) if raw.strip() else {}
        note = body.get("note")
        if note is not None and not isinstance(note, str):
            raise InvalidRequest("invalid note: a string", param="note")
        if required and not note:
            raise InvalidRequest("invalid note: a non-empty string is required", param="note")
        return note

    def audit(actor: Actor, request: Request, action: str, target: int) -> None:
        from llmgw.admin.audit import AuditService

        source = request.headers.get("x-llmgw-source", "api").lower()
        AuditService(g.engine).record(
            actor, action, str(target), source=source if source in ("cli", "tui", "web") else "api"
        )

    async def list_alerts(request: Request) -> Response:
        from llmgw.alerts.modes import present
        from llmgw.alerts.queries import AlertFilter

        await caller(request)
        q = request.query_params
        f = AlertFilter(
            status=q.get("status"),
            severity=q.get("severity"),
            alertname=q.get("alertname"),
            category=q.get("category"),
            classification=q.get("classification"),
            q=q.get("q"),
            labels=tuple(q.getlist("label")),
            since=_time(q.get("since"), "since"),
            until=_time(q.get("until"), "until"),
            flapping=_flag(q.get("flapping"), "flapping"),
            acked=_flag(q.get("acked"), "acked"),
            source=q.get("source"),
        )
        limit = _int(q.get("limit"), "limit", 50)
        page = await asyncio.to_thread(history().list, f, limit=limit, cursor=q.get("cursor"))
        mode = s.mode
        for record in page["data"]:
            record["view"] = present(record, mode)
        return answer(page)

    async def show(request: Request) -> Response:
        from llmgw.alerts.modes import present

        await caller(request)
        record = await asyncio.to_thread(history().show, alert_id(request))
        record["view"] = present(record, s.mode)
        return answer(record)

    async def delivery(request: Request) -> Response:
        await caller(request)
        return answer(await asyncio.to_thread(history().delivery, alert_id(request)))

    async def stats(request: Request) -> Response:
        await caller(request)
        q = request.query_params
        since = _time(q.get("since"), "since")
        return answer(await asyncio.to_thread(history().stats, since=since, by=q.get("by", "hour")))

    async def health(request: Request) -> Response:
        await caller(request)
        w = g.alerts.worker
        st = g.alerts.stats
        depth = await asyncio.to_thread(w.queue.depth) if w is not None else {}
        return answer(
            {
                "mode": s.mode,
                "model": s.model,
                "prompt_version": s.prompt_version,
                "worker": "running" if w is not None and w.last_error is None else "failing",
                "worker_error": w.last_error if w is not None else None,
                "queue": depth,
                "classifications": st.classifications,
                "cache": st.cache,
                "deliveries": st.deliveries,
                "problems": g.alerts.problems(),
            }
        )

    async def ack(request: Request) -> Response:
        actor = await caller(request)
        ident = alert_id(request)
        note = await note_of(request, required=False)
        record = await asyncio.to_thread(history().ack, ident, actor.name, note)
        await asyncio.to_thread(audit, actor, request, "alerts.ack", ident)
        return answer(record)

    async def note(request: Request) -> Response:
        actor = await caller(request)
        ident = alert_id(request)
        text = await note_of(request, required=True)
        record = await asyncio.to_thread(history().annotate, ident, actor.name, text or "")
        await asyncio.to_thread(audit, actor, request, "alerts.note", ident)
        return answer(record)

    async def reclassify(request: Request) -> Response:
        actor = await caller(request)
        ident = alert_id(request)
        record = await asyncio.to_thread(history().reclassify, ident, actor.name)
        await asyncio.to_thread(audit, actor, request, "alerts.reclassify", ident)
        g.alerts.wake()
        return answer(record)

    def publishing() -> Any:
        p = g.alerts.publishing
        if p is None:
            raise NotFound("alert publishing is not running", hint="it runs in `llmgw serve`")
        return p

    async def targets(request: Request) -> Response:
        await caller(request)
        return answer(publishing().describe())

    async def publish_test(request: Request) -> Response:
        actor = await caller(request)
        name = request.path_params["name"]
        result = await publishing().test(name)
        from llmgw.admin.audit import AuditService

        source = request.headers.get("x-llmgw-source", "api").lower()
        await asyncio.to_thread(
            AuditService(g.engine).record, actor, "alerts.publish_test", name,
            source=source if source in ("cli", "tui", "web") else "api",
        )  # fmt: skip
        return answer(result)

    async def publications(request: Request) -> Response:
        from llmgw.alerts.publishers.records import publications as rows

        await caller(request)
        ident = alert_id(request)
        await asyncio.to_thread(history().get, ident)  # 404 for an unknown alert
        return answer({"object": "list", "data": await asyncio.to_thread(rows, g.engine, ident)})

    return [
        Route(WEBHOOK_PATH, WebhookRoute(g), methods=["POST"]),
        Route(API, list_alerts, methods=["GET"]),
        Route(API + "/stats", stats, methods=["GET"]),
        Route(API + "/health", health, methods=["GET"]),
        Route(API + "/targets", targets, methods=["GET"]),
        Route(API + "/targets/{name}/test", publish_test, methods=["POST"]),
        Route(API + "/{id}/publications", publications, methods=["GET"]),
        Route(API + "/{id}", show, methods=["GET"]),
        Route(API + "/{id}/delivery", delivery, methods=["GET"]),
        Route(API + "/{id}/ack", ack, methods=["POST"]),
        Route(API + "/{id}/note", note, methods=["POST"]),
        Route(API + "/{id}/reclassify", reclassify, methods=["POST"]),
    ]


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"invalid {name}: ISO 8601 with a zone", param=name) from None
    if when.tzinfo is None:
        raise InvalidRequest(f"invalid {name}: the time needs a zone (+00:00 or Z)", param=name)
    return when


def _flag(text: str | None, name: str) -> bool | None:
    if text is None:
        return None
    if text not in ("true", "false"):
        raise InvalidRequest(f"invalid {name}: true or false", param=name)
    return text == "true"


def _int(text: str | None, name: str, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or len(text) > 6:
        raise InvalidRequest(f"invalid {name}: a whole number", param=name)
    return int(text)
