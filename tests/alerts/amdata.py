"""Alertmanager-shaped payloads with real fingerprints, for the alert tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from llmgw.alerts.payload import am_fingerprint

WEBHOOK_TOKEN = "whk-test-token-0123456789abcdef"
T0 = datetime(2026, 11, 22, 3, 19, 7, 741228, tzinfo=UTC)


def am_alert(
    name: str = "HighCPU",
    *,
    status: str = "firing",
    starts: datetime = T0,
    ends: datetime | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One ``alerts[]`` item as Alertmanager 0.25 sends it (fingerprint computed the same way)."""
    lab = {"alertname": name, "instance": "node1:9100", "job": "node", "severity": "critical"}
    lab.update(labels or {})
    return {
        "status": status,
        "labels": lab,
        "annotations": annotations or {"summary": f"{name} on node1", "description": "CPU > 90%"},
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": (ends.isoformat().replace("+00:00", "Z") if ends else "0001-01-01T00:00:00Z"),
        "generatorURL": "http://prom:9090/graph?g0.expr=cpu",
        "fingerprint": am_fingerprint(lab),
    }


def am_payload(
    *alerts: dict[str, Any], external_url: str = "http://127.0.0.1:19093"
) -> dict[str, Any]:
    """A version 4 delivery of ``alerts`` (one ``HighCPU`` firing when none are given)."""
    items = list(alerts) or [am_alert()]
    firing = any(a["status"] == "firing" for a in items)
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighCPU"}',
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "llmgw",
        "groupLabels": {"alertname": items[0]["labels"]["alertname"]},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": external_url,
        "alerts": items,
    }


def later(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)
