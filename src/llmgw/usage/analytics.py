"""Analytics over usage statistics records: rankings (``llmgw usage top``).

Pure functions over the records ``AdminOps.usage_stats`` returns, so they work the same on a
local database and through a server's admin API. Costs are ranked per currency: a key that spent
10 RUB and one that spent 1 USD are not compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, get_args

__all__ = ["METRICS", "TOP_OF", "WEEKDAYS", "Metric", "TopOf", "forecast", "patterns", "top"]

TopOf = Literal["keys", "users", "models"]
TOP_OF: tuple[str, ...] = get_args(TopOf)
Metric = Literal["cost", "tokens", "requests"]
METRICS: tuple[str, ...] = get_args(Metric)

GROUP_OF: dict[str, str] = {"keys": "key", "users": "user", "models": "model"}
"""The ``usage_stats`` grouping each ranking reads."""


def _costs(row: Mapping[str, Any]) -> dict[str, Decimal]:
    costs = row.get("costs")
    if isinstance(costs, Mapping):
        return {str(c): Decimal(str(v)) for c, v in costs.items()}
    cost = Decimal(str(row.get("cost") or 0))
    return {str(row.get("currency") or ""): cost} if cost else {}


def top(rows: Sequence[Mapping[str, Any]], metric: Metric, limit: int = 10) -> list[dict[str, Any]]:
    """The ``limit`` largest rows by ``metric``, each with its ``rank`` and ``value``; by cost,
    the ``limit`` largest of each currency (with ``currency``), currencies in name order.
    Ties keep the input's order (most requests first). A row that spent in several currencies
    (a key or user using providers of each) is ranked in each, its ``currency`` the ranking's."""
    if metric != "cost":
        name = "total_tokens" if metric == "tokens" else "requests"
        ranked = sorted(rows, key=lambda r: -int(r.get(name) or 0))[:limit]
        return [{"rank": i, "value": int(r.get(name) or 0), **r} for i, r in enumerate(ranked, 1)]
    per: dict[str, list[tuple[Decimal, Mapping[str, Any]]]] = {}
    for r in rows:
        for cur, value in _costs(r).items():
            if value:
                per.setdefault(cur, []).append((value, r))
    out: list[dict[str, Any]] = []
    for cur in sorted(per):
        by_cost = sorted(per[cur], key=lambda vr: -vr[0])[:limit]
        out += [
            {**r, "rank": i, "currency": cur or None, "value": format(v, "f")}
            for i, (v, r) in enumerate(by_cost, 1)
        ]
    return out


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def patterns(
    hour_rows: Sequence[Mapping[str, Any]], provider_rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Usage patterns from ``usage_stats`` records ``by="hour"`` and ``by="provider"`` over one
    window: requests per (UTC weekday, hour of day) as a 7 x 24 heat map, the share of streamed
    requests, the average prompt and completion sizes per request, and per provider its error
    share, streaming share and average sizes."""
    from datetime import UTC, datetime

    grid = [[0] * 24 for _ in WEEKDAYS]
    requests = prompt = completion = streamed = 0
    for r in hour_rows:
        when = datetime.strptime(str(r["hour"]), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        n = int(r.get("requests") or 0)
        grid[when.weekday()][when.hour] += n
        requests += n
        prompt += int(r.get("prompt_tokens") or 0)
        completion += int(r.get("completion_tokens") or 0)
        streamed += int(r.get("streamed") or 0)
    errors: list[dict[str, Any]] = [
        {
            "provider": p.get("provider"),
            "requests": int(p.get("requests") or 0),
            "errors": int(p.get("errors") or 0),
            "error_share": round(int(p.get("errors") or 0) / int(p["requests"]), 4)
            if p.get("requests")
            else 0.0,
            "stream_share": _share(p.get("streamed"), p.get("requests")),
            "avg_prompt_tokens": _avg(p.get("prompt_tokens"), p.get("requests")),
            "avg_completion_tokens": _avg(p.get("completion_tokens"), p.get("requests")),
        }
        for p in provider_rows
    ]
    errors.sort(key=lambda e: (-e["error_share"], -e["requests"]))
    return {
        "requests": requests,
        "heatmap": [{"weekday": d, "hours": grid[i]} for i, d in enumerate(WEEKDAYS)],
        "streamed": streamed,
        "stream_share": _share(streamed, requests),
        "avg_prompt_tokens": round(prompt / requests, 1) if requests else None,
        "avg_completion_tokens": round(completion / requests, 1) if requests else None,
        "errors_by_provider": errors,
    }


def _share(part: Any, whole: Any) -> float:
    return round(int(part or 0) / int(whole), 4) if whole else 0.0


def _avg(total: Any, n: Any) -> float | None:
    return round(int(total or 0) / int(n), 1) if n else None


def _daily_costs(day_rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Decimal]]:
    """currency -> day (``YYYY-MM-DD``) -> cost, from ``usage_stats`` records ``by="day"``."""
    out: dict[str, dict[str, Decimal]] = {}
    for r in day_rows:
        for cur, value in _costs(r).items():
            out.setdefault(cur, {})[str(r["day"])] = value
    return out


def _weekday_mean(series: Sequence[float], days: Sequence[Any], target: Any) -> float:
    """The model: the mean of the same weekday in the last four weeks before ``target`` (the
    last 14 days when fewer than two such days are known)."""
    same = [v for v, d in zip(series, days, strict=True) if d.weekday() == target.weekday()]
    same = same[-4:]
    if len(same) >= 2:
        return sum(same) / len(same)
    recent = list(series[-14:])
    return sum(recent) / len(recent) if recent else 0.0


def _naive(series: Sequence[float], days: Sequence[Any], target: Any) -> float:
    """Naive linear extrapolation: the month-to-date daily average (the last 7 days on the
    month's first day)."""
    mtd = [
        v
        for v, d in zip(series, days, strict=True)
        if (d.year, d.month) == (target.year, target.month)
    ]
    base = mtd or list(series[-7:])
    return sum(base) / len(base) if base else 0.0


def forecast(day_rows: Sequence[Mapping[str, Any]], today: Any) -> list[dict[str, Any]]:
    """Spend to the end of ``today``'s month, per currency, from daily ``usage_stats`` records
    (days before ``today`` are complete, ``today`` is partial).

    Model: each remaining day costs the mean of the same weekday over the last four weeks. The
    interval is that sum plus or minus 1.96 standard deviations of the model's one-day-ahead
    back-test errors, scaled by the square root of the remaining days. The back-test runs both
    the model and a naive extrapolation (the month-to-date daily average) one day ahead over
    every stored day with at least 14 days before it, and reports their mean absolute errors.
    """
    import calendar
    import math
    from datetime import date, timedelta

    today_d: date = today
    last = date(today_d.year, today_d.month, calendar.monthrange(today_d.year, today_d.month)[1])
    out = []
    for cur, by_day in sorted(_daily_costs(day_rows).items()):
        if not by_day:
            continue
        first = min(date.fromisoformat(d) for d in by_day)
        days = [first + timedelta(n) for n in range((today_d - first).days)]  # complete days
        series = [float(by_day.get(d.isoformat(), 0)) for d in days]
        errors_model: list[float] = []
        errors_naive: list[float] = []
        residuals: list[float] = []
        for i in range(14, len(days)):
            actual = series[i]
            m = _weekday_mean(series[:i], days[:i], days[i])
            n = _naive(series[:i], days[:i], days[i])
            errors_model.append(abs(actual - m))
            errors_naive.append(abs(actual - n))
            residuals.append(actual - m)
        month_to_date = sum(float(v) for d, v in by_day.items() if d[:7] == today_d.isoformat()[:7])
        today_so_far = float(by_day.get(today_d.isoformat(), 0))
        remaining = [today_d + timedelta(n) for n in range((last - today_d).days + 1)]
        predicted = 0.0
        for d in remaining:
            day_pred = _weekday_mean(series, days, d)
            predicted += max(day_pred - today_so_far, 0.0) if d == today_d else day_pred
        spread = 0.0
        if len(residuals) >= 2:
            mean = sum(residuals) / len(residuals)
            sd = math.sqrt(sum((r - mean) ** 2 for r in residuals) / (len(residuals) - 1))
            spread = 1.96 * sd * math.sqrt(len(remaining))
        expected = month_to_date + predicted
        out.append(
            {
                "currency": cur or None,
                "month": today_d.isoformat()[:7],
                "month_to_date": _q(month_to_date),
                "forecast": _q(expected),
                "low": _q(max(month_to_date, expected - spread)),
                "high": _q(expected + spread),
                "naive_forecast": _q(
                    month_to_date + _naive(series, days, today_d) * len(remaining)
                ),
                "backtest_days": len(errors_model),
                "backtest_mae": _q(sum(errors_model) / len(errors_model)) if errors_model else None,
                "naive_backtest_mae": _q(sum(errors_naive) / len(errors_naive))
                if errors_naive
                else None,
            }
        )
    return out


def _q(value: float) -> str:
    """Money as a fixed-point string with six decimals (a forecast is not exact)."""
    return format(Decimal(repr(value)).quantize(Decimal("0.000001")), "f")
