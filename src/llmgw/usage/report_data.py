"""The content of a daily, weekly or monthly usage report (``llmgw report``), as plain data.

``build`` asks an ``AdminOps`` (a local database or a server's admin API) for the period's
statistics, so a report reads the rollups like ``usage stats`` does: the totals and the previous
period's (trends), the series over time (hours of a day, days of a week or month, the same for
the previous period), the providers and models compared, the top keys and the recommendations.
Costs stay per currency everywhere. ``llmgw.usage.report_render`` turns it into Markdown, HTML
(inline SVG charts), CSV or JSON; the CLI draws it in the terminal.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol, cast, get_args

__all__ = ["PERIODS", "Period", "StatsSource", "build", "window"]

Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[str, ...] = get_args(Period)


class StatsSource(Protocol):
    """What a report reads (``AdminOps`` has both)."""

    def usage_stats(
        self, *, since: datetime | None = None, until: datetime | None = None, by: str = "day"
    ) -> list[dict[str, Any]]:
        """``usage_stats`` records over ``[since, until)``."""
        ...

    def usage_recommend(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Recommendations over ``[since, until)``."""
        ...


def window(period: Period, day: date) -> tuple[datetime, datetime, datetime]:
    """(previous start, start, end) in UTC of the ``period`` containing ``day``: the day, its
    ISO week (Monday first) or its month; the previous period is as long as this one."""
    if period == "daily":
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        return start - timedelta(days=1), start, end
    if period == "weekly":
        monday = day - timedelta(days=day.weekday())
        start = datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
        return start - timedelta(days=7), start, start + timedelta(days=7)
    start = datetime(day.year, day.month, 1, tzinfo=UTC)
    days = calendar.monthrange(day.year, day.month)[1]
    end = start + timedelta(days=days)
    prev_month = (start - timedelta(days=1)).replace(day=1)
    return prev_month, start, end


def default_day(period: Period, today: date) -> date:
    """The last complete period before ``today``: yesterday, last week, last month."""
    if period == "daily":
        return today - timedelta(days=1)
    if period == "weekly":
        return today - timedelta(days=today.weekday() + 7)
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1)


def _costs(rows: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, Decimal] = {}
    for r in rows:
        for cur, v in (r.get("costs") or {}).items():
            out[cur] = out.get(cur, Decimal(0)) + Decimal(str(v))
    return {c: format(v, "f") for c, v in sorted(out.items())}


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    names = ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens")
    t: dict[str, Any] = {n: sum(int(r.get(n) or 0) for r in rows) for n in names}
    t["streamed"] = sum(int(r.get("streamed") or 0) for r in rows)
    t["truncated"] = sum(int(r.get("truncated") or 0) for r in rows)
    t["costs"] = _costs(rows)
    t["error_share"] = round(t["errors"] / t["requests"], 4) if t["requests"] else 0.0
    return t


def _change(now: float, before: float) -> float | None:
    """The relative change; 0.0 for nothing against nothing, None ("new") for something new."""
    if not before:
        return None if now else 0.0
    return round((now - before) / before, 4)


def _slots(period: Period, start: datetime, end: datetime) -> list[str]:
    step = timedelta(hours=1) if period == "daily" else timedelta(days=1)
    fmt = "%Y-%m-%d %H:00" if period == "daily" else "%Y-%m-%d"
    out, t = [], start
    while t < end:
        out.append(t.strftime(fmt))
        t += step
    return out


def _series(
    period: Period, rows: list[dict[str, Any]], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    by = "hour" if period == "daily" else "day"
    have = {str(r[by]): r for r in rows}
    out = []
    for slot in _slots(period, start, end):
        r = have.get(slot, {})
        out.append(
            {
                "at": slot,
                "requests": int(r.get("requests") or 0),
                "errors": int(r.get("errors") or 0),
                "total_tokens": int(r.get("total_tokens") or 0),
                "costs": {c: str(v) for c, v in (r.get("costs") or {}).items()},
            }
        )
    return out


def _compact(r: dict[str, Any], label: str) -> dict[str, Any]:
    n = int(r.get("requests") or 0)
    return {
        label: r.get(label),
        "requests": n,
        "errors": int(r.get("errors") or 0),
        "error_share": round(int(r.get("errors") or 0) / n, 4) if n else 0.0,
        "total_tokens": int(r.get("total_tokens") or 0),
        "costs": {c: str(v) for c, v in (r.get("costs") or {}).items()},
        "avg_latency_ms": r.get("avg_latency_ms"),
        "p95_latency_ms": r.get("p95_latency_ms"),
        "streamed": int(r.get("streamed") or 0),
    }


def build(
    ops: StatsSource, period: Period, day: date | None = None, *, now: datetime | None = None
) -> dict[str, Any]:
    """The report of the ``period`` containing ``day`` (default: the last complete one)."""
    now = now or datetime.now(UTC)
    day = day or default_day(period, now.date())
    prev, start, end = window(period, day)
    by = "hour" if period == "daily" else "day"
    # One query for both periods' series (a bucket never straddles ``start``), split here.
    both = ops.usage_stats(since=prev, until=end, by=by)
    cut = _slots(period, start, start + timedelta(hours=1))[0]
    rows = [r for r in both if str(r[by]) >= cut]
    before = [r for r in both if str(r[by]) < cut]
    totals, previous = _totals(rows), _totals(before)
    trend = {
        n: _change(float(totals[n]), float(previous[n]))
        for n in ("requests", "errors", "total_tokens")
    }
    for cur, v in totals["costs"].items():
        trend[f"cost {cur}"] = _change(float(v), float(previous["costs"].get(cur, 0)))
    many = getattr(ops, "usage_stats_many", None)
    if many is not None:  # a local database: the sections and the recommendations' groupings
        key_rows, provider_rows, model_rows, failing = many(  # from one statement
            since=start,
            until=end,
            groups=[("key", {}), ("provider", {}), ("model", {}), ("model", {"failed": True})],
        )
        recommendations = cast("Any", ops).usage_recommend(
            since=start, until=end, read=(model_rows, failing, key_rows)
        )
    else:
        key_rows = ops.usage_stats(since=start, until=end, by="key")
        provider_rows = ops.usage_stats(since=start, until=end, by="provider")
        model_rows = ops.usage_stats(since=start, until=end, by="model")
        recommendations = ops.usage_recommend(since=start, until=end)
    keys = sorted(key_rows, key=lambda r: -int(r.get("requests") or 0))[:10]
    return {
        "period": period,
        "title": _title(period, start, end),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "previous_start": prev.isoformat(),
        "generated_at": now.replace(microsecond=0).isoformat(),
        "totals": totals,
        "previous": previous,
        "trend": trend,
        "series": _series(period, rows, start, end),
        "previous_series": _series(period, before, prev, start),
        "providers": [_compact(r, "provider") for r in provider_rows],
        "models": [_compact(r, "model") for r in model_rows][:15],
        "keys": [
            {**_compact(r, "key"), "key_name": r.get("key_name"), "key_prefix": r.get("key_prefix")}
            for r in keys
        ],
        "recommendations": recommendations,
    }


def _title(period: Period, start: datetime, end: datetime) -> str:
    if period == "daily":
        return f"llmgw daily report {start:%Y-%m-%d}"
    if period == "weekly":
        last = end - timedelta(days=1)
        return f"llmgw weekly report {start:%G-W%V} ({start:%Y-%m-%d} - {last:%Y-%m-%d})"
    return f"llmgw monthly report {start:%B %Y}"
