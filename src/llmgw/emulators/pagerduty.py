"""A local PagerDuty Events API v2 (``POST /v2/enqueue``), as the shared reference ``alerting.md`` §2
describes it: 202 ``{"status": "success", "message": "Event processed", "dedup_key": ...}``, 400
``{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}``, 429 past
about 120 events a minute per routing key (the event is not ingested), and per
(``routing_key``, ``dedup_key``) alerts that go open -> acknowledged -> resolved.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from dataclasses import dataclass, field
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

__all__ = ["DEFAULT_ROUTING_KEY", "PagerDutyEmulator", "create_app"]

DEFAULT_ROUTING_KEY = "e0000000000000000000000000000001"
"""A well-formed 32-character integration key, for examples and tests."""

_KEY = re.compile(r"^[A-Za-z0-9]{32}$")
_SEVERITIES = ("critical", "error", "warning", "info")
_ACTIONS = ("trigger", "acknowledge", "resolve")
MAX_BYTES = 512 * 1024


@dataclass
class PagerDutyAlert:
    """One PagerDuty alert: the events that reached it and where it stands."""

    routing_key: str
    dedup_key: str
    status: str  # triggered | acknowledged | resolved
    summary: str
    severity: str
    events: list[str] = field(default_factory=list)
    """The actions applied, in order (``trigger``, ``trigger`` again, ``resolve``...)."""


@dataclass
class PagerDutyEmulator:
    """Switches, state and the received log; tests may change switches while it runs."""

    recorder: Recorder
    faults: FaultSwitch
    limiter: SlidingWindow
    routing_keys: set[str] | None = None
    """Accepted integration keys (``None``: any well-formed key)."""
    fail_rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    alerts: list[PagerDutyAlert] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)
    """Acknowledge/resolve events that matched no open alert (PagerDuty drops them after the 202)."""

    def open_alert(self, routing_key: str, dedup_key: str) -> PagerDutyAlert | None:
        """The alert that is not resolved yet for this key pair, if any."""
        for a in reversed(self.alerts):
            if a.routing_key == routing_key and a.dedup_key == dedup_key and a.status != "resolved":
                return a
        return None

    def state(self) -> dict[str, Any]:
        """The alerts and dropped events, as ``GET /_emulator/state`` shows them."""
        return {
            "alerts": [
                {"routing_key": a.routing_key, "dedup_key": a.dedup_key, "status": a.status,
                 "summary": a.summary, "severity": a.severity, "events": a.events}
                for a in self.alerts
            ],
            "dropped": self.dropped,
        }  # fmt: skip


def _invalid(errors: list[str], message: str = "Event object is invalid") -> Response:
    return json_response({"status": "invalid event", "message": message, "errors": errors}, 400)


def _validate(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or not key:
        errors.append("'routing_key' is missing or blank")
    elif len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    elif not _KEY.match(key):
        errors.append("'routing_key' must be alphanumeric")
    action = event.get("event_action")
    if not action:
        errors.append("'event_action' is missing or blank")
    elif action not in _ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing or blank"]
        for name in ("summary", "source", "severity"):
            value = payload.get(name)
            if not isinstance(value, str) or not value.strip():
                errors.append(f"'payload.{name}' is missing or blank")
        summary = payload.get("summary")
        if isinstance(summary, str) and len(summary) > 1024:
            errors.append("'payload.summary' is too long (must be 1024 characters or fewer)")
        severity = payload.get("severity")
        if isinstance(severity, str) and severity and severity not in _SEVERITIES:
            errors.append(
                "'payload.severity' is invalid (must be one of: critical, error, warning, info)"
            )
        for image in event.get("images") or []:
            if not isinstance(image, dict) or not str(image.get("src", "")).startswith("https://"):
                errors.append("'images[].src' must be an HTTPS URL")
        for link in event.get("links") or []:
            if not isinstance(link, dict) or not link.get("href"):
                errors.append("'links[].href' is missing or blank")
    return errors


class _App:
    def __init__(self, emu: PagerDutyEmulator) -> None:
        self.emu = emu

    def _fault(self, fault: str) -> Response:
        if fault == "429":
            return json_response(
                {"status": "throttle event", "message": "Request Limit Exceeded",
                 "errors": ["Too many events for this routing key; retry later"]},
                429, {"Retry-After": str(self.emu.faults.retry_after)},
            )  # fmt: skip
        if fault == "400":
            return _invalid(["'payload.severity' is invalid (injected fault)"])
        if fault in ("401", "404", "410"):
            return json_response(
                {"status": "error", "message": "Not Found" if fault != "401" else "Unauthorized",
                 "errors": [f"injected {fault}"]},
                int(fault),
            )  # fmt: skip
        return json_response(
            {"status": "error", "message": "Internal Server Error", "errors": ["Internal error"]},
            500,
        )

    async def enqueue(self, request: Request) -> Response:
        emu = self.emu
        raw = await request.body()
        try:
            event: Any = json.loads(raw)
        except ValueError:
            event = raw.decode(errors="replace")
        fault = await emu.faults.draw(emu.fail_rate, emu.rng)
        if fault is not None:
            resp = self._fault(fault)
            emu.recorder.add(request, event, resp.status_code, f"fault: {fault}")
            return resp
        if isinstance(event, str):
            resp = _invalid(["Event object is not valid JSON"])
            emu.recorder.add(request, event, 400, "invalid")
            return resp
        if len(raw) > MAX_BYTES:
            resp = _invalid(["Event object is larger than 512 KB"])
            emu.recorder.add(request, event, 400, "invalid")
            return resp
        errors = _validate(event)
        if (
            not errors
            and emu.routing_keys is not None
            and event["routing_key"] not in emu.routing_keys
        ):
            errors = ["Invalid routing key"]
        if errors:
            emu.recorder.add(request, event, 400, "invalid: " + "; ".join(errors))
            return _invalid(errors)
        key: str = event["routing_key"]
        wait = emu.limiter.hit(key)
        if wait:
            emu.recorder.add(request, event, 429, "rate limited")
            return json_response(
                {"status": "throttle event", "message": "Request Limit Exceeded",
                 "errors": ["Too many events for this routing key; retry later"]},
                429, {"Retry-After": str(max(1, round(wait)))},
            )  # fmt: skip
        dedup: str = event.get("dedup_key") or uuid.uuid4().hex
        note = self._apply(event, dedup)
        emu.recorder.add(request, event, 202, note)
        return json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup}, 202
        )

    def _apply(self, event: dict[str, Any], dedup: str) -> str:
        emu = self.emu
        key, action = event["routing_key"], event["event_action"]
        alert = emu.open_alert(key, dedup)
        if action == "trigger":
            payload = event["payload"]
            if alert is None:
                alert = PagerDutyAlert(
                    key, dedup, "triggered", payload["summary"], payload["severity"]
                )
                emu.alerts.append(alert)
                alert.events.append("trigger")
                return "created"
            alert.events.append("trigger")
            alert.summary, alert.severity = payload["summary"], payload["severity"]
            return "appended to the open alert"
        if alert is None:
            emu.dropped.append({"routing_key": key, "dedup_key": dedup, "event_action": action})
            return f"dropped: no open alert for {action}"
        alert.events.append(action)
        alert.status = "acknowledged" if action == "acknowledge" else "resolved"
        return alert.status


def create_app(
    *,
    routing_keys: set[str] | None = None,
    rate_limit: int = 120,
    **options: Unpack[ControlOptions],
) -> Starlette:
    """The PagerDuty emulator; ``app.state.emulator`` is its ``PagerDutyEmulator``.

    ``rate_limit``: events per 60 s per routing key before 429 (0: no limit). ``fault``: answer
    the next ``fault_count`` events (all when ``None``) with that fault; the other ``options`` as
    ``ControlOptions`` says.
    """
    emu = PagerDutyEmulator(
        **controls(options), limiter=SlidingWindow(rate_limit), routing_keys=routing_keys
    )
    h = _App(emu)
    app = Starlette(
        routes=[
            Route("/v2/enqueue", h.enqueue, methods=["POST"]),
            *control_routes(emu.recorder, emu.faults, emu.state),
        ]
    )
    app.state.emulator = emu
    return app
