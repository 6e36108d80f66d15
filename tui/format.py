"""Small text helpers shared by the screens: times, numbers, sparklines, state colours."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rich.text import Text

__all__ = [
    "BARS",
    "age",
    "detail_text",
    "hhmm",
    "literal",
    "num",
    "readable",
    "severity_style",
    "short_time",
    "spark",
    "state_style",
]

BARS = "▁▂▃▄▅▆▇█"


def spark(values: Iterable[float | int | None]) -> str:
    """A one-line sparkline of ``values`` (None is a gap)."""
    vals = list(values)
    nums = [v for v in vals if v is not None]
    if not nums:
        return ""
    low, high = min(nums), max(nums)
    span = (high - low) or 1
    return "".join(
        " " if v is None else BARS[int((v - low) / span * (len(BARS) - 1))] for v in vals
    )


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 string from a record, or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def hhmm(when: datetime) -> str:
    """``when`` as hh:mm (the clock the app was given decides the zone)."""
    return when.strftime("%H:%M")


def short_time(value: str | None) -> str:
    """An ISO time from a record as ``MM-DD hh:mm:ss`` (UTC), or ``-``."""
    when = parse_time(value)
    return when.strftime("%m-%d %H:%M:%S") if when else "-"


def age(value: str | None, now: datetime) -> str:
    """How long ago ``value`` was: ``12s``, ``5m``, ``3h``, ``2d``, or ``-``."""
    when = parse_time(value)
    if when is None:
        return "-"
    secs = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def num(value: Any, digits: int = 0) -> str:
    """A number for a table cell: thousands separated, ``-`` for None."""
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if digits == 0:
        return f"{round(number):,}"
    return f"{number:,.{digits}f}"


_STATES = {
    "healthy": "success",
    "ok": "success",
    "closed": "success",
    "up": "success",
    "active": "success",
    "degraded": "warning",
    "half_open": "warning",
    "half-open": "warning",
    "expired": "warning",
    "disabled": "warning",
    "unknown": "foreground-muted",
    "down": "error",
    "open": "error",
    "unhealthy": "error",
    "revoked": "error",
}


def state_style(state: str | None, colors: Mapping[str, str]) -> str:
    """The theme colour for a provider, key or user state (``colors`` are the theme's)."""
    name = _STATES.get((state or "unknown").lower(), "foreground")
    return colors.get(name) or colors.get("foreground", "")


_NONE_MEANS = {
    "rpm": "no limit",
    "tpm": "no limit",
    "models": "all models",
    "expires_at": "never",
    "revoked_at": "never",
}


def readable(value: Any, name: str = "") -> str:
    """One value of an audit detail as a person reads it (never a Python repr): None as what it
    means for the setting ``name`` (``no limit``, ``all models``, ``never``), times as
    ``MM-DD hh:mm:ss``, lists comma-separated, a change as ``old → new``."""
    if value is None:
        return _NONE_MEANS.get(name, "none")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(readable(v) for v in value) or "none"
    if isinstance(value, Mapping):
        if set(value) == {"from", "to"}:
            return f"{readable(value['from'], name)} → {readable(value['to'], name)}"
        return "; ".join(f"{k}: {readable(v, str(k))}" for k, v in value.items())
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        when = parse_time(value)
        if when is not None:
            return when.strftime("%m-%d %H:%M:%S")
    return str(value)


def detail_text(detail: Mapping[str, Any] | None) -> str:
    """An audit entry's detail on one line: ``name: ci; rpm: 60 → 120; tpm: no limit``."""
    if not detail:
        return ""
    return "; ".join(f"{k}: {readable(v, k)}" for k, v in detail.items())


_SEVERITIES = {
    "critical": "error",
    "page": "error",
    "error": "error",
    "high": "error",
    "warning": "warning",
    "warn": "warning",
    "medium": "warning",
    "info": "primary",
    "low": "primary",
    "none": "foreground-muted",
}


def severity_style(severity: str | None, colors: Mapping[str, str], *, firing: bool = True) -> str:
    """The theme colour for an alert's severity (bold while it fires); unknown ones plain."""
    name = _SEVERITIES.get((severity or "none").lower(), "foreground")
    color = colors.get(name) or colors.get("foreground", "")
    return f"bold {color}" if firing and name in ("error", "warning") else color


def literal(cells: Iterable[Any]) -> tuple[Any, ...]:
    """Table cells with every string as plain ``Text``: a ``DataTable`` reads a ``str`` cell as
    markup, so a key named ``[/x]`` (or any text from a client or an alert) would raise a
    ``MarkupError`` or turn into styling."""
    return tuple(Text(c) if isinstance(c, str) else c for c in cells)
