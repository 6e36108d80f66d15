"""Chart geometry for the alert dashboard: plain numbers a template turns into inline SVG.

Nothing here writes markup: the template renders every value through Jinja2's autoescape, and
colours come from the stylesheet through a class name chosen from a fixed list (a severity
label is attacker-controlled, so it never becomes a class name itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["SEVERITY_CLASSES", "Chart", "buckets", "severity_class", "stacked_bars", "timeline"]

SEVERITY_CLASSES = ("critical", "error", "warning", "info")
"""Severities with a colour of their own; any other value is drawn as ``other``."""

_W, _H = 960, 220
_LEFT, _BOTTOM, _TOP = 36, 22, 8


def severity_class(severity: str | None) -> str:
    """The CSS class for ``severity``: one of ``SEVERITY_CLASSES`` or ``other``."""
    s = (severity or "").lower()
    return s if s in SEVERITY_CLASSES else "other"


@dataclass(slots=True)
class Chart:
    """An SVG drawing: ``bars`` and ``ticks`` in the ``width`` x ``height`` view box."""

    width: int = _W
    height: int = _H
    bars: list[dict[str, Any]] = field(default_factory=list)
    xticks: list[dict[str, Any]] = field(default_factory=list)
    yticks: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    """The numbers behind the drawing, for the table next to it."""
    series: list[str] = field(default_factory=list)
    left: int = _LEFT
    """Where the plot starts (the y axis' labels are left of it)."""


def buckets(since: datetime, until: datetime, by: str) -> list[str]:
    """The bucket keys ``stats`` uses (``YYYY-MM-DDTHH:00:00Z`` per hour, ``YYYY-MM-DD`` per
    day) from ``since`` to ``until``, so empty hours are drawn as empty."""
    if by == "hour":
        t = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        step, fmt = timedelta(hours=1), "%Y-%m-%dT%H:00:00Z"
    else:
        t = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        step, fmt = timedelta(days=1), "%Y-%m-%d"
    out: list[str] = []
    while t <= until and len(out) < 1000:
        out.append(t.strftime(fmt))
        t += step
    return out


def _nice_max(n: int) -> int:
    """The y axis' top: a round number at least ``n``, even above 1 (so the middle tick is a
    whole number)."""
    for top in (1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 800, 1000):
        if n <= top:
            return top
    step: int = 2 * 10 ** (len(str(n)) - 2)
    return ((n + step - 1) // step) * step


def stacked_bars(over_time: list[dict[str, Any]], keys: list[str], by: str) -> Chart:
    """Occurrences started per bucket, stacked by severity (``over_time`` as ``stats`` gives
    it: ``{"t": key, severity: count, ...}``); buckets outside ``keys`` are left out."""
    counts: dict[str, dict[str, int]] = {k: {} for k in keys}
    for point in over_time:
        slot = counts.get(str(point.get("t")))
        if slot is None:
            continue
        for sev, n in point.items():
            if sev != "t" and isinstance(n, int):
                cls = severity_class(sev)
                slot[cls] = slot.get(cls, 0) + n
    chart = Chart(series=[*SEVERITY_CLASSES, "other"])
    peak = _nice_max(max((sum(c.values()) for c in counts.values()), default=0) or 1)
    plot_w, plot_h = _W - _LEFT - 4, _H - _BOTTOM - _TOP
    step = plot_w / max(len(keys), 1)
    bar_w = max(step * 0.8, 1.0)
    every = max(1, len(keys) // 8)
    for i, key in enumerate(keys):
        x = _LEFT + i * step + (step - bar_w) / 2
        y = float(_TOP + plot_h)
        c = counts[key]
        label = key.replace("T", " ").replace(":00:00Z", ":00") if by == "hour" else key
        for sev in chart.series:
            n = c.get(sev, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            chart.bars.append(
                {"x": round(x, 1), "y": round(y, 1), "w": round(bar_w, 1), "h": round(h, 1),
                 "cls": sev, "title": f"{label}: {n} {sev}"}
            )  # fmt: skip
        if i % every == 0:
            short = label[11:16] if by == "hour" else label[5:]
            chart.xticks.append({"x": round(x + bar_w / 2, 1), "text": short})
        chart.rows.append({"t": label, **{s: c.get(s, 0) for s in chart.series}})
    for value in (0, peak // 2, peak) if peak > 1 else (0, peak):
        chart.yticks.append({"y": round(_TOP + plot_h * (1 - value / peak), 1), "text": str(value)})
    return chart


def _parse(when: str | None) -> datetime | None:
    return datetime.fromisoformat(when) if when else None


def timeline(
    occurrences: list[dict[str, Any]], now: datetime, *, width: int = _W, height: int = 56
) -> Chart:
    """The fingerprint's occurrences as firing spans on one time axis (its flapping at a
    glance): each span runs from ``starts_at`` to ``ends_at`` (still firing: to ``now``)."""
    spans = [
        (o, start, _parse(o.get("ends_at")) or now)
        for o in occurrences
        if (start := _parse(o.get("starts_at"))) is not None
    ]
    chart = Chart(width=width, height=height)
    if not spans:
        return chart
    lo = min(s for _, s, _ in spans)
    hi = max(max(e for _, _, e in spans), now)
    total = max((hi - lo).total_seconds(), 1.0)
    plot_w = width - 8
    for o, start, end in sorted(spans, key=lambda t: t[1]):
        x = 4 + plot_w * (start - lo).total_seconds() / total
        w = max(plot_w * (end - start).total_seconds() / total, 3.0)
        chart.bars.append(
            {
                "x": round(x, 1),
                "y": 8,
                "w": round(w, 1),
                "h": height - 24,
                "cls": "firing" if o.get("status") == "firing" else "resolved",
                "title": f"#{o['id']} {o.get('status')} from {start:%Y-%m-%d %H:%M:%S} UTC",
                "id": o["id"],
            }
        )
    chart.xticks = [
        {"x": 4, "text": f"{lo:%Y-%m-%d %H:%M}", "anchor": "start"},
        {"x": width - 4, "text": f"{hi:%Y-%m-%d %H:%M}", "anchor": "end"},
    ]
    return chart
