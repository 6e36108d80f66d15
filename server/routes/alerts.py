"""The alert history's HTTP face: ``POST /alerts/webhook`` (Alertmanager) and ``/api/alerts``.

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

import orjson
import sqlalchemy.exc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.alerts.payload import parse_delivery
from llmgw.errors import (
    AuthError,
    DatabaseError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from llmgw.server.body import decode_json, receive_body
from llmgw.server.state import Gateway

__all__ = ["WEBHOOK_PATH", "alert_routes"]

WEBHOOK_PATH = "/alerts/webhook"
log = logging.getLogger("llmgw.alerts")


def _bearer(request: Request) -> bytes:
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            return bytes(value)
    return b""


def alert_routes(g: Gateway) -> list[Route]:
    """The alert routes bound to gateway ``g`` (none when ``alerts.enabled`` is false)."""
    s = g.settings.alerts
    if not s.enabled:
        return []
    token = s.webhook_token
    expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None
    limit = s.max_body_bytes

    async def webhook(request: Request) -> Response:
        stats = g.alerts.stats
        if expected is None:
            raise NotFound(
                "the alert webhook is not configured: set alerts.webhook_token"
                " (LLMGW_ALERTS__WEBHOOK_TOKEN)",
                code="webhook_not_configured",
            )
        if not hmac.compare_digest(_bearer(request), expected):
            stats.deliveries["unauthorized"] += 1
            raise AuthError(
                "the alert webhook needs its bearer token", code="invalid_webhook_token"
            )
        try:
            raw = await receive_body(request.scope, request.receive, limit)
            delivery = parse_delivery(decode_json(raw))
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
                result = await asyncio.to_thread(g.alerts.store.ingest, delivery)
            except sqlalchemy.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # A pooled connection the database dropped (a restart): the transaction rolled
                # back, so one more try on a fresh connection is safe.
                result = await asyncio.to_thread(g.alerts.store.ingest, delivery)
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
        body = {
            "status": "stored",
            "delivery_id": result.delivery_id,
            "duplicate": result.duplicate,
            "new": result.new,
            "resolved": result.resolved,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return [Route(WEBHOOK_PATH, webhook, methods=["POST"])]
