"""The Alertmanager webhook payload (version "4"), parsed leniently, and the label fingerprint.

Unknown top-level and per-alert fields are ignored (newer Alertmanagers add ``notification_reason``,
``routeLabels``...); only ``version`` must be "4". ``endsAt`` of ``0001-01-01T00:00:00Z`` (a
firing alert) becomes ``None``. Times keep their offset and are converted to UTC; nanoseconds are
truncated to microseconds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from llmgw.errors import InvalidRequest

__all__ = ["Delivery", "IncomingAlert", "am_fingerprint", "delivery_digest", "parse_delivery"]

_NANOS = re.compile(r"(\.\d{6})\d+")
_FINGERPRINT = re.compile(r"[0-9a-f]{1,32}")
_ZERO_YEAR = "0001-"
# Fields left out of a delivery's digest: they differ between the two peers of an HA pair
# (each has its own external URL) or between versions, not between notifications.
_PEER_FIELDS = ("externalURL", "notification_reason")


def am_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: FNV-1a 64 over sorted ``name 0xFF value 0xFF``."""
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for b in name.encode() + b"\xff" + labels[name].encode() + b"\xff":
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


@dataclass(frozen=True, slots=True)
class IncomingAlert:
    """One alert of a delivery."""

    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    fingerprint: str

    @property
    def severity(self) -> str | None:
        """The ``severity`` label as the history's indexed column keeps it: cut to its 32
        characters (the labels keep it whole), ``None`` when absent or empty."""
        return self.labels.get("severity", "")[:SEVERITY_WIDTH] or None


SEVERITY_WIDTH = 32
"""Width of ``alerts.severity`` (migration 0004)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A parsed webhook delivery."""

    receiver: str
    status: str
    group_key: str
    truncated: int
    external_url: str
    alerts: list[IncomingAlert]
    payload: dict[str, Any]
    digest: str
    source: str = "alertmanager"
    """Who raised the alerts: ``alertmanager`` (the webhook) or ``llmgw`` (the gateway itself)."""


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_alertmanager_payload")


def _time(value: Any, where: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(f"{where}: a time must be an RFC 3339 string")
    if value.startswith(_ZERO_YEAR):
        return None
    try:  # Python 3.11 reads "Z" and cuts nanoseconds to microseconds itself
        when = datetime.fromisoformat(value)
    except ValueError:
        try:
            when = datetime.fromisoformat(_NANOS.sub(r"\1", value.replace("Z", "+00:00")))
        except ValueError:
            raise _bad(f"{where}: {value[:40]!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _time_of(
    value: Any, where: str, field: str, seen: dict[str, datetime | None]
) -> datetime | None:
    """``_time`` of a time text, each distinct text read once per delivery (``seen``)."""
    if type(value) is not str:
        return _time(value, f"{where}.{field}")
    if value in seen:
        return seen[value]
    when = seen[value] = _time(value, f"{where}.{field}")
    return when


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object of strings")
    for v in value.values():
        if type(v) is not str:
            return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}
    return dict(value)  # JSON's keys are strings already


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def without_nul(value: Any) -> Any:
    """``value`` (a decoded JSON document) with every NUL character in its strings and keys
    replaced by U+FFFD: PostgreSQL's text and JSON types cannot hold NUL, and a delivery that
    can never be stored must not be answered 5xx (Alertmanager would retry it forever)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def delivery_digest(payload: dict[str, Any]) -> str:
    """SHA-256 of the delivery without its per-peer fields: equal for retries and HA copies."""
    core = {k: v for k, v in payload.items() if k not in _PEER_FIELDS}
    return hashlib.sha256(orjson.dumps(core, option=orjson.OPT_SORT_KEYS)).hexdigest()


def parse_delivery(payload: dict[str, Any]) -> Delivery:
    """Check and normalise one decoded webhook body; ``InvalidRequest`` (400) when unusable."""
    version = payload.get("version")
    if version != "4":
        raise _bad(
            f'unsupported webhook version {str(version)[:20]!r}: only version "4" is accepted'
        )
    raw_alerts = payload.get("alerts")
    if not isinstance(raw_alerts, list):
        raise _bad("alerts must be a list")
    alerts: list[IncomingAlert] = []
    times: dict[str, datetime | None] = {}  # a delivery's alerts often share their times
    for i, item in enumerate(raw_alerts):
        where = f"alerts[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"{where} must be an object")
        labels = _str_map(item.get("labels"), f"{where}.labels")
        status = item.get("status")
        if status not in ("firing", "resolved"):
            raise _bad(f"{where}.status must be 'firing' or 'resolved'")
        starts = _time_of(item.get("startsAt"), where, "startsAt", times)
        if starts is None:
            raise _bad(f"{where}.startsAt is required")
        fingerprint = item.get("fingerprint")
        if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
            fingerprint = am_fingerprint(labels)
        alerts.append(
            IncomingAlert(
                status=status,
                labels=labels,
                annotations=_str_map(item.get("annotations"), f"{where}.annotations"),
                starts_at=starts,
                ends_at=_time_of(item.get("endsAt"), where, "endsAt", times),
                generator_url=_str(item.get("generatorURL")),
                fingerprint=fingerprint,
            )
        )
    truncated = payload.get("truncatedAlerts")
    return Delivery(
        receiver=_str(payload.get("receiver"))[:200],
        status=_str(payload.get("status"))[:16] or "firing",
        group_key=_str(payload.get("groupKey")),
        truncated=truncated
        if isinstance(truncated, int) and not isinstance(truncated, bool)
        else 0,
        external_url=_str(payload.get("externalURL")),
        alerts=alerts,
        payload=payload,
        digest=delivery_digest(payload),
    )
