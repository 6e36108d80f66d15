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


_API_ERRORS = {
    "400": ("Bad query or body; `param` names it.", "invalid status: firing or resolved",
            "invalid_request_error", None),
    "401": ("No key, or an unknown, revoked or expired one.", "invalid API key",
            "authentication_error", "invalid_api_key"),
    "403": ("The key's user is not an admin.", "this API key may not use the admin API",
            "permission_error", "admin_required"),
    "404": ("No such alert.", "no alert 42", "not_found_error", None),
    "503": ("The database is down.", "database error", "api_error", "database_unavailable"),
}  # fmt: skip
_CLS = {
    "status": "ok",
    "severity": "critical",
    "category": "resource_saturation",
    "summary": "CPU on node1 has been above 90% for 5 minutes.",
    "probable_cause": "a runaway process",
    "recommendations": ["Check the top CPU consumers on node1"],
    "confidence": 0.8,
    "model": "local/gpt-4o-mini",
    "prompt_version": "v1",
    "latency_ms": 812.4,
    "cache_hit": False,
    "classified_at": _T,
    "ai_generated": True,
}
_ALERT = {
    "id": 1,
    "fingerprint": "03e24befa7b11611",
    "source": "alertmanager",
    "alertname": "HighCPU",
    "status": "firing",
    "severity": "critical",
    "labels": _AM_ALERT["labels"],
    "annotations": _AM_ALERT["annotations"],
    "starts_at": _T,
    "ends_at": None,
    "first_seen": _T,
    "last_seen": _T,
    "generator_url": "http://prom:9090/graph?g0.expr=cpu",
    "receiver": "llmgw",
    "notifications": 1,
    "fire_count": 1,
    "flapping": False,
    "acked_at": None,
    "acked_by": None,
    "note": None,
    "suppressed": None,
    "classification": _CLS,
    "view": {
        "mode": "enriched",
        "title": "HighCPU",
        "status": "firing",
        "severity": "critical",
        "summary": "CPU on node1 has been above 90% for 5 minutes.",
        "description": "CPU > 90% for 5m",
        "labels": _AM_ALERT["labels"],
        "annotations": _AM_ALERT["annotations"],
        "classified": True,
    },
}
_SHOWN = {
    **_ALERT,
    "timeline": [{"at": _T, "kind": "fired", "actor": None, "detail": {"starts_at": _T}}],
    "jobs": [{"step": "classify", "state": "done", "attempts": 1, "run_after": _T,
              "last_error": None},
             {"step": "publish", "state": "done", "attempts": 1, "run_after": _T,
              "last_error": None}],
    "publications": [{"target": "pd-db", "type": "pagerduty", "action": "fire", "state": "sent",
                      "external_id": "am-03e24befa7b11611-1795317547", "http_status": 202,
                      "attempts": 2, "error": None, "next_at": None,
                      "updated_at": _T}],
}  # fmt: skip
_TARGETS = {
    "object": "list",
    "data": [{"name": "pd-db", "type": "pagerduty", "source": "config", "health": "ok",
              "disabled": None, "mode": None, "match_labels": {"team": "db"},
              "min_severity": "error", "events_url": "https://events.pagerduty.com/v2/enqueue",
              "last_ok": _T, "last_error": None, "last_error_at": None,
              "counts": {"sent": 12, "retry": 1, "failed": 0}},
             {"name": "slack-db", "type": "slack", "source": "kubernetes:alerting/slack-db",
              "health": "disabled", "disabled": "HTTP 200: channel_not_found", "mode": "enriched",
              "match_labels": {}, "min_severity": None, "channel": "C0123456789",
              "api_url": "https://slack.com/api", "last_ok": None,
              "last_error": "HTTP 200: channel_not_found", "last_error_at": _T,
              "counts": {"sent": 0, "retry": 0, "failed": 1}}],
    "refused": {"kubernetes:alerting/broken": "invalid channel"},
}  # fmt: skip
_TESTED = {
    "target": "pd-db", "type": "pagerduty", "dedup_key": "am-5a1e0c0e6b2f41d2-1795317547",
    "fire": {"state": "sent", "http_status": 202, "external_id": "am-5a1e0c0e6b2f41d2-1795317547",
             "error": None},
    "resolve": {"state": "sent", "http_status": 202,
                "external_id": "am-5a1e0c0e6b2f41d2-1795317547", "error": None},
    "ok": True,
}  # fmt: skip


def _named(op: dict[str, Any]) -> dict[str, Any]:
    op["parameters"] = [{"name": "name", "in": "path", "required": True,
                         "schema": {"type": "string"}, "description": "The target's name.",
                         "example": "pd-db"}]  # fmt: skip
    return op


_STATS = {
    "since": _T,
    "by": "hour",
    "by_status": {"firing": 1},
    "by_severity": {"critical": 1},
    "by_category": {"resource_saturation": 1},
    "by_classification": {"ok": 1},
    "over_time": [{"t": "2026-11-22T03:00:00Z", "critical": 1}],
    "top_flapping": [],
    "total": 1,
}
_HEALTH: dict[str, Any] = {
    "mode": "enriched",
    "model": "alerts-classifier",
    "prompt_version": "v1",
    "worker": "running",
    "worker_error": None,
    "queue": {"pending": 0, "running": 0, "failed": 0},
    "classifications": {"ok": 1, "invalid_output": 0, "timeout": 0, "error": 0, "skipped": 0},
    "cache": {"hit": 0, "miss": 1},
    "deliveries": {"stored": 1, "duplicate": 0, "unauthorized": 0, "invalid": 0,
                   "too_large": 0, "failed": 0},
    "problems": [],
}  # fmt: skip
_RAW = {
    "id": 1,
    "received_at": _T,
    "last_received_at": _T,
    "copies": 2,
    "receiver": "llmgw",
    "group_key": '{}:{alertname="HighCPU"}',
    "status": "firing",
    "external_url": "http://127.0.0.1:19093",
    "payload": _DELIVERY,
}


def _api_error(status: str) -> dict[str, Any]:
    text, message, kind, code = _API_ERRORS[status]
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


def _api(
    op_id: str,
    summary: str,
    description: str,
    answer: Any,
    *,
    errors: tuple[str, ...] = ("401", "403", "503"),
    path_id: bool = False,
    query: dict[str, tuple[str, str]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    obj = {"type": "object"}
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "description": description,
        "tags": ["Alerts"],
        "security": [{"bearer": []}],
        "responses": {
            "200": {
                "description": "The record(s), as `llmgw alerts ... --json` prints them.",
                "content": {"application/json": {"schema": obj, "example": answer}},
            },
            **{e: _api_error(e) for e in sorted({*errors, "401", "403"})},
        },
    }
    params: list[dict[str, Any]] = []
    if path_id:
        params.append({"name": "id", "in": "path", "required": True,
                       "schema": {"type": "integer"}, "description": "The alert's id.",
                       "example": 1})  # fmt: skip
    for name, (example, text) in (query or {}).items():
        params.append({"name": name, "in": "query", "required": False,
                       "schema": {"type": "string"}, "description": text,
                       "example": example})  # fmt: skip
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": obj, "example": body}},
        }
    return op


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
    one = ("401", "403", "404", "503")
    since = ("2026-11-22T00:00:00+00:00", "Only from this time on (ISO 8601 with a zone).")
    return {
        "/alerts/webhook": {"post": webhook},
        "/api/alerts": {
            "get": _api(
                "listAlerts",
                "List alerts",
                "Occurrences, newest delivery first, with filters "
                "and cursor pagination; `view` is what the processing mode forwards.",
                {"object": "list", "data": [_ALERT], "next_cursor": None},
                errors=("400", "401", "403", "503"),
                query={
                    "status": ("firing", "firing or resolved."),
                    "severity": ("critical", "The alert's severity label."),
                    "alertname": ("HighCPU", "The alert's name."),
                    "category": ("resource_saturation", "The classification's category."),
                    "classification": (
                        "ok",
                        "pending, ok, invalid_output, timeout, error, skipped.",
                    ),
                    "q": ("node1", "Text in the name, labels or annotations (case-insensitive)."),
                    "label": ("job=node", "A key=value label (repeat for several)."),
                    "since": since,
                    "until": ("2026-11-23T00:00:00+00:00", "Only occurrences started before this."),
                    "flapping": ("false", "true or false."),
                    "acked": ("false", "true or false."),
                    "source": ("alertmanager", "alertmanager or llmgw."),
                    "limit": ("50", "Page size, 1 to 500."),
                    "cursor": (
                        "MjAyNi0xMS0yMlQwMzoxOTowNy43NDEyMjgrMDA6MDB8MQ",
                        "next_cursor of the previous page.",
                    ),
                },
            )
        },  # fmt: skip
        "/api/alerts/stats": {
            "get": _api(
                "alertStats",
                "Alert statistics",
                "Counts by status, severity, category and "
                "classification, occurrences per hour or day by severity, top flapping.",
                _STATS,
                errors=("400", "401", "403", "503"),
                query={"since": since, "by": ("hour", "hour or day.")},
            )
        },  # fmt: skip
        "/api/alerts/health": {
            "get": _api(
                "alertHealth",
                "Classifier health",
                "The worker, the queue depth and the counters "
                "of classifications, cache look-ups and deliveries since start.",
                _HEALTH,
            )
        },
        "/api/alerts/{id}": {
            "get": _api(
                "showAlert",
                "Show an alert",
                "One occurrence with its timeline (fired, resolved, "
                "classified, acknowledged, annotated, published...), its jobs, and its "
                "publications (one per target and action: state, external id such as the "
                "PagerDuty dedup_key, Rootly alert id or Slack channel:ts, the last HTTP status, "
                "the attempt count and the last error).",
                _SHOWN,
                errors=one,
                path_id=True,
            )
        },
        "/api/alerts/{id}/delivery": {
            "get": _api(
                "alertDelivery",
                "The raw delivery",
                "The webhook body that last mentioned the occurrence, as Alertmanager sent it.",
                _RAW,
                errors=one,
                path_id=True,
            )
        },
        "/api/alerts/{id}/ack": {
            "post": _api(
                "ackAlert",
                "Acknowledge an alert",
                "Records who and when (idempotent; the first "
                "acknowledgement stays), with an optional note; audited.",
                {**_ALERT, "acked_at": _T, "acked_by": "ops@example.com"},
                errors=(*one, "400"),
                path_id=True,
                body={"note": "looking into it"},
            )
        },  # fmt: skip
        "/api/alerts/{id}/note": {
            "post": _api(
                "annotateAlert",
                "Annotate an alert",
                "Sets the alert's note (the timeline keeps earlier ones); audited.",
                {**_ALERT, "note": "caused by the 03:00 batch job"},
                errors=(*one, "400"),
                path_id=True,
                body={"note": "caused by the 03:00 batch job"},
            )
        },
        "/api/alerts/targets": {
            "get": _api(
                "listAlertTargets",
                "List publishing targets",
                "Every Slack, PagerDuty and Rootly target in effect: from config or a Kubernetes "
                "Secret (`source`), its health (`ok`, `failing`, `disabled` after a 404/410, "
                "`unused`), filters and counts; never a credential. `refused` names discovered "
                "entries that did not validate.",
                _TARGETS,
            )
        },
        "/api/alerts/targets/{name}/test": {
            "post": _named(
                _api(
                    "testAlertTarget",
                    "Publish a test alert",
                    "Sends a test alert (LlmgwPublishTest, severity info) to the target, then "
                    "resolves it; nothing enters the history. `ok` says whether both were taken; "
                    "audited as alerts.publish_test.",
                    _TESTED,
                    errors=("401", "403", "404"),
                )
            )
        },  # fmt: skip
        "/api/alerts/{id}/publications": {
            "get": _api(
                "alertPublications",
                "An alert's publications",
                "One record per target and action (fire, resolve): state (sending, retrying, "
                "sent, failed, unknown), external id (PagerDuty dedup_key, Rootly alert id, "
                "Slack channel:ts), last HTTP status, attempt count, last error.",
                {"object": "list", "data": _SHOWN["publications"]},
                errors=one,
                path_id=True,
            )
        },
        "/api/alerts/{id}/reclassify": {
            "post": _api(
                "reclassifyAlert",
                "Re-classify an alert",
                "Queues a fresh classification that bypasses the cache; audited.",
                {**_ALERT, "classification": {"status": "pending"}},
                errors=one,
                path_id=True,
            )
        },
    }
