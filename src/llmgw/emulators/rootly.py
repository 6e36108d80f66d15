"""A local Rootly: the JSON:API alerts REST API (``POST /v1/alerts``, ``POST /v1/alerts/{id}/resolve``
and ``/acknowledge``, ``GET /v1/alerts``, ``GET /v1/alerts/{id}``) and the generic webhook alert source
(``POST /webhooks/incoming/generic_webhooks``), as the shared reference ``alerting.md`` §4 describes.

Bearer API key or 401 with a JSON:API ``errors`` body; ``Content-Type: application/vnd.api+json``
(plain JSON is accepted unless ``strict_content_type``); missing ``source``/``summary`` or a bad enum
answers 422; a create answers 201 with a generated ``id`` and ``short_id``; resolve/ack of an unknown
id answers 404; about 3,000 writes a minute per key, then 429.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Unpack

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.emulators.control import (
    ControlOptions,
    FaultSwitch,
    Recorder,
    SlidingWindow,
    control_routes,
    controls,
)
from llmgw.emulators.faults import json_response

__all__ = ["DEFAULT_API_KEY", "DEFAULT_WEBHOOK_SECRET", "RootlyEmulator", "SOURCES", "create_app"]

DEFAULT_API_KEY = "rootly_emulator_0000000000000000"
DEFAULT_WEBHOOK_SECRET = "rootly-webhook-emulator-secret"  # noqa: S105 - a public test value
JSONAPI = "application/vnd.api+json"

SOURCES = frozenset({
    "alertmanager", "api", "app_dynamics", "asana", "azure", "bug_snag", "catchpoint", "checkly",
    "chronosphere", "cloud_watch", "datadog", "dynatrace", "email", "generic_webhook", "google_cloud",
    "grafana", "honeycomb", "jira", "manual", "new_relic", "nobl9", "opsgenie", "pagerduty",
    "prometheus_alertmanager", "rollbar", "sentry", "service_now", "slack", "splunk", "sumo_logic",
    "victor_ops", "web", "workflow", "zendesk",
})  # fmt: skip
"""Alert sources accepted (a subset of Rootly's enum; there is no plain ``prometheus``)."""

_STATUSES = ("open", "triggered")
_NOISE = ("noise", "not_noise")


@dataclass
class RootlyAlert:
    """One alert as Rootly stores it."""

    id: str
    short_id: str
    attributes: dict[str, Any]
    status: str
    created_at: str
    updated_at: str
    resolution_message: str | None = None

    def as_resource(self) -> dict[str, Any]:
        """The JSON:API resource object."""
        attrs = {**self.attributes, "short_id": self.short_id, "status": self.status,
                 "created_at": self.created_at, "updated_at": self.updated_at}  # fmt: skip
        if self.resolution_message is not None:
            attrs["resolution_message"] = self.resolution_message
        return {"id": self.id, "type": "alerts", "attributes": attrs}


@dataclass
class RootlyEmulator:
    """Switches, alerts and the received log; tests may change switches while it runs."""

    recorder: Recorder
    faults: FaultSwitch
    limiter: SlidingWindow
    api_keys: set[str]
    webhook_secrets: set[str]
    strict_content_type: bool = False
    webhook_identifier: str = "id"
    """Generic webhook: the body field that identifies an alert (``$.id`` by default)."""
    webhook_state: str = "state"
    """Generic webhook: the body field whose value ``resolved`` resolves the identified alert."""
    fail_rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    alerts: dict[str, RootlyAlert] = field(default_factory=dict)
    _seq: int = 0

    def create(self, attributes: dict[str, Any], status: str = "triggered") -> RootlyAlert:
        """Store a new alert."""
        self._seq += 1
        now = _now()
        alert = RootlyAlert(
            secrets.token_hex(16), f"ALRT{self._seq:05d}", attributes, status, now, now
        )
        self.alerts[alert.id] = alert
        return alert

    def state(self) -> dict[str, Any]:
        """The alerts, as ``GET /_emulator/state`` shows them."""
        return {"alerts": [a.as_resource() for a in self.alerts.values()]}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _errors(status: int, title: str, detail: str | None = None, **headers: str) -> Response:
    err: dict[str, Any] = {"title": title, "status": str(status)}
    if detail is not None:
        err["detail"] = detail
    return Response(
        json.dumps({"errors": [err]}),
        status_code=status,
        media_type=JSONAPI,
        headers=headers or None,
    )


def _jsonapi(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type=JSONAPI)


def _validate(body: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(attributes, None) for a valid create body, else (None, the 422 detail)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None, "data is missing"
    if data.get("type") != "alerts":
        return None, "data.type must be 'alerts'"
    attrs = data.get("attributes")
    if not isinstance(attrs, dict):
        return None, "data.attributes is missing"
    for name in ("source", "summary"):
        if not isinstance(attrs.get(name), str) or not attrs[name].strip():
            return None, f"{name.capitalize()} can't be blank"
    if attrs["source"] not in SOURCES:
        return None, f"Source is not included in the list ({attrs['source']!r})"
    if "status" in attrs and attrs["status"] not in _STATUSES:
        return None, "Status is not included in the list"
    if "noise" in attrs and attrs["noise"] not in _NOISE:
        return None, "Noise is not included in the list"
    labels = attrs.get("labels", [])
    if not isinstance(labels, list) or not all(
        isinstance(x, dict) and "key" in x and isinstance(x.get("value"), str | int | float | bool)
        for x in labels
    ):
        return None, "Labels must be a list of {key, value} objects"
    if "data" in attrs and not isinstance(attrs["data"], dict):
        return None, "Data must be an object"
    return attrs, None


class _App:
    def __init__(self, emu: RootlyEmulator) -> None:
        self.emu = emu

    async def _read(self, request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    async def _gate(self, request: Request, key: str | None) -> tuple[Response, str] | None:
        """Auth, faults and the rate limit, in Rootly's order."""
        emu = self.emu
        if key is None or key not in emu.api_keys:
            return _errors(401, "Unauthorized", "Invalid or missing API key"), "unauthorized"
        fault = await emu.faults.draw(emu.fail_rate, emu.rng)
        if fault is not None:
            if fault == "429":
                r = str(emu.faults.retry_after)
                return _errors(429, "Request Limit Exceeded", **{"Retry-After": r}), "fault: 429"
            titles = {"400": "Bad Request", "401": "Unauthorized", "404": "Not Found",
                      "410": "Gone", "500": "Internal Server Error"}  # fmt: skip
            return _errors(int(fault), titles[fault]), f"fault: {fault}"
        if request.method != "GET":
            wait = emu.limiter.hit(key)
            if wait:
                r = str(max(1, round(wait)))
                return _errors(429, "Request Limit Exceeded", **{"Retry-After": r}), "rate limited"
        return None

    @staticmethod
    def _bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    async def _handle(self, request: Request, action: Any) -> Response:
        body = await self._read(request)
        early = await self._gate(request, self._bearer(request))
        if early is not None:
            resp, note = early
        else:
            resp, note = action(request, body)
        if request.method != "GET":
            self.emu.recorder.add(request, body, resp.status_code, note)
        return resp

    def _content_type_problem(self, request: Request) -> tuple[Response, str] | None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype == JSONAPI or (not self.emu.strict_content_type and ctype == "application/json"):
            return None
        return _errors(415, "Unsupported Media Type", f"use {JSONAPI}"), "unsupported media type"

    def _create(self, request: Request, body: Any) -> tuple[Response, str]:
        problem = self._content_type_problem(request)
        if problem is not None:
            return problem
        attrs, detail = _validate(body)
        if attrs is None:
            return _errors(422, "Unprocessable Entity", detail), f"invalid: {detail}"
        alert = self.emu.create(dict(attrs), attrs.get("status", "triggered"))
        return _jsonapi({"data": alert.as_resource()}, 201), "created"

    def _lifecycle(self, request: Request, body: Any) -> tuple[Response, str]:
        alert = self.emu.alerts.get(request.path_params["id"])
        action = request.path_params["action"]
        if action not in ("resolve", "acknowledge"):
            return _errors(404, "Not Found", f"no such action {action!r}"), f"{action}: unknown"
        if alert is None:
            return _errors(404, "Not Found", "Alert not found"), f"{action}: unknown id"
        attrs: dict[str, Any] = {}
        if isinstance(body, dict) and isinstance(body.get("data"), dict):
            attrs = body["data"].get("attributes") or {}
        if action == "acknowledge":
            if alert.status == "resolved":
                return _errors(
                    400, "Bad Request", "Alert is already resolved"
                ), "acknowledge: resolved"
            alert.status = "acknowledged"
        else:
            alert.status = "resolved"
            alert.attributes["ended_at"] = alert.attributes.get("ended_at") or _now()
            if isinstance(attrs, dict) and attrs.get("resolution_message"):
                alert.resolution_message = str(attrs["resolution_message"])
        alert.updated_at = _now()
        return _jsonapi({"data": alert.as_resource()}), alert.status

    def _get(self, request: Request, _body: Any) -> tuple[Response, str]:
        alert = self.emu.alerts.get(request.path_params["id"])
        if alert is None:
            return _errors(404, "Not Found", "Alert not found"), "unknown id"
        return _jsonapi({"data": alert.as_resource()}), "get"

    def _list(self, request: Request, _body: Any) -> tuple[Response, str]:
        q = request.query_params
        items = list(self.emu.alerts.values())
        if q.get("filter[status]"):
            wanted = set(q["filter[status]"].split(","))
            items = [a for a in items if a.status in wanted]
        if q.get("filter[source]"):
            items = [a for a in items if a.attributes.get("source") == q["filter[source]"]]
        try:
            number = max(1, int(q.get("page[number]", "1")))
            size = min(100, max(1, int(q.get("page[size]", "20"))))
        except ValueError:
            return _errors(400, "Bad Request", "page parameters must be integers"), "list"
        page = items[(number - 1) * size : number * size]
        pages = max(1, -(-len(items) // size))
        meta = {"current_page": number, "next_page": number + 1 if number < pages else None,
                "prev_page": number - 1 if number > 1 else None, "total_count": len(items),
                "total_pages": pages}  # fmt: skip
        return _jsonapi({"data": [a.as_resource() for a in page], "meta": meta}), "list"

    async def create(self, request: Request) -> Response:
        return await self._handle(request, self._create)

    async def lifecycle(self, request: Request) -> Response:
        return await self._handle(request, self._lifecycle)

    async def get(self, request: Request) -> Response:
        return await self._handle(request, self._get)

    async def list_alerts(self, request: Request) -> Response:
        return await self._handle(request, self._list)

    async def generic_webhook(self, request: Request) -> Response:
        emu = self.emu
        body = await self._read(request)
        secret = self._bearer(request) or request.query_params.get("secret")
        if secret is None and isinstance(body, dict):
            secret = body.get("secret")
        if secret is None or secret not in emu.webhook_secrets:
            resp = json_response({"error": "Unauthorized"}, 401)
            emu.recorder.add(request, body, 401, "unauthorized")
            return resp
        fault = await emu.faults.draw()
        if fault is not None:
            headers = {"Retry-After": str(emu.faults.retry_after)} if fault == "429" else None
            resp = json_response({"error": f"injected {fault}"}, int(fault), headers)
            emu.recorder.add(request, body, resp.status_code, f"fault: {fault}")
            return resp
        if not isinstance(body, dict):
            emu.recorder.add(request, body, 400, "invalid")
            return json_response({"error": "body must be a JSON object"}, 400)
        ident = str(body.get(emu.webhook_identifier) or "")
        existing = next(
            (a for a in emu.alerts.values()
             if ident and a.attributes.get("external_id") == ident and a.status != "resolved"),
            None,
        )  # fmt: skip
        if str(body.get(emu.webhook_state, "")).lower() == "resolved":
            if existing is not None:
                existing.status, existing.updated_at = "resolved", _now()
            note = "resolved" if existing is not None else "resolve: no open alert"
        elif existing is not None:
            existing.updated_at = _now()
            note = "updated"
        else:
            summary = str(body.get("title") or body.get("summary") or "Generic webhook alert")
            emu.create({"source": "generic_webhook", "summary": summary, "external_id": ident,
                        "data": body})  # fmt: skip
            note = "created"
        emu.recorder.add(request, body, 200, note)
        return json_response({"status": "ok", "note": note, "received_at": time.time()})


def create_app(
    *,
    api_keys: set[str] | None = None,
    webhook_secrets: set[str] | None = None,
    strict_content_type: bool = False,
    rate_limit: int = 3000,
    **options: Unpack[ControlOptions],
) -> Starlette:
    """The Rootly emulator; ``app.state.emulator`` is its ``RootlyEmulator``.

    ``rate_limit``: writes per 60 s per API key before 429 (0: no limit). ``fault``: answer the
    next ``fault_count`` API requests (all when ``None``) with that fault; the other ``options``
    as ``ControlOptions`` says.
    """
    emu = RootlyEmulator(
        **controls(options), limiter=SlidingWindow(rate_limit),
        api_keys=api_keys or {DEFAULT_API_KEY}, webhook_secrets=webhook_secrets or {DEFAULT_WEBHOOK_SECRET},
        strict_content_type=strict_content_type,
    )  # fmt: skip
    h = _App(emu)
    app = Starlette(
        routes=[
            Route("/v1/alerts", h.create, methods=["POST"]),
            Route("/v1/alerts", h.list_alerts, methods=["GET"]),
            Route("/v1/alerts/{id}", h.get, methods=["GET"]),
            Route("/v1/alerts/{id}/{action:str}", h.lifecycle, methods=["POST"]),
            Route("/webhooks/incoming/generic_webhooks", h.generic_webhook, methods=["POST"]),
            Route(
                "/webhooks/incoming/generic_webhooks/{rest:path}",
                h.generic_webhook,
                methods=["POST"],
            ),
            *control_routes(emu.recorder, emu.faults, emu.state),
        ]
    )
    app.state.emulator = emu
    return app
