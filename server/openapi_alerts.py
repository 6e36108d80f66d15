"""The alert history's operations in the OpenAPI document (tag ``Alerts``), with examples.

``openapi_document`` adds ``alert_paths()``. The webhook's statuses follow Alertmanager's retry
rules (docs/alerts.md); the ``/api/alerts`` answers are the records ``llmgw.alerts.queries``
returns (``tests/alerts/test_api.py`` checks a real server answers with these shapes).
"""

from __future__ import annotations

from typing import Any

__all__ = ["alert_paths"]

_T = "2026-11-22T03:19:07.741228+00:00"
_AM_ALERT = {
    "status": "firing",
    "labels": {
        "alertname": "HighCPU",
        "instance": "node1:9100",
        "job": "node",
        "severity": "critical",
    },
    "annotations": {"summary": "CPU high on node1", "description": "CPU > 90% for 5m"},
    "startsAt": "2026-11-22T03:19:07.741228728Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://prom:9090/graph?g0.expr=cpu",
    "fingerprint": "03e24befa7b11611",
}
_DELIVERY = {
    "version": "4",
    "groupKey": '{}:{alertname="HighCPU"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "llmgw",
    "groupLabels": {"alertname": "HighCPU"},
    "commonLabels": _AM_ALERT["labels"],
    "commonAnnotations": _AM_ALERT["annotations"],
    "externalURL": "http://127.0.0.1:19093",
    "alerts": [_AM_ALERT],
}
_STORED = {"status": "stored", "delivery_id": 1, "duplicate": False, "new": 1, "resolved": 0}

_ERRORS = {
    "400": ("Not JSON, or not an Alertmanager version 4 payload; Alertmanager does not retry "
            "a 4xx (it sends the group again at its next group_interval).",
            'unsupported webhook version \'3\': only version "4" is accepted',
            "invalid_request_error", "invalid_alertmanager_payload"),
    "401": ("Missing or wrong bearer token (`alerts.webhook_token`).",
            "the alert webhook needs its bearer token", "authentication_error",
            "invalid_webhook_token"),
    "404": ("The webhook is not configured (no `alerts.webhook_token`).",
            "the alert webhook is not configured: set alerts.webhook_token "
            "(LLMGW_ALERTS__WEBHOOK_TOKEN)", "not_found_error", "webhook_not_configured"),
    "413": ("Body larger than `alerts.max_body_bytes`.",
            "request body is larger than the limit of 8388608 bytes", "invalid_request_error",
            None),
    "503": ("The database could not store the delivery; Alertmanager retries with backoff.",
            "the alert history could not store this delivery; retry", "api_error",
            "storage_unavailable"),
}  # fmt: skip


def _error(status: str) -> dict[str, Any]:
    text, message, kind, code = _ERRORS[status]
    return {
        "description": text,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "example": {
                    "error": {"message": message, "type": kind, "param": None, "code": code}
                },
            }
        },
    }


def alert_paths() -> dict[str, Any]:
    """The alert service's path items."""
    obj = {"type": "object"}
    webhook = {
        "operationId": "alertmanagerWebhook",
        "summary": "Receive an Alertmanager notification",
        "description": "Alertmanager's `webhook_config` target (payload version 4). Answers 200 "
        "once the delivery is committed; a retry or the other peer of an HA pair gets 200 with "
        "`duplicate: true` and changes nothing. Classification happens later, off the request.",
        "tags": ["Alerts"],
        "security": [{"bearer": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": obj, "example": _DELIVERY}},
        },
        "responses": {
            "200": {
                "description": "Stored (or already stored).",
                "content": {"application/json": {"schema": obj, "example": _STORED}},
            },
            **{s: _error(s) for s in ("400", "401", "404", "413", "503")},
        },
    }
    return {"/alerts/webhook": {"post": webhook}}
