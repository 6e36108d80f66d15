"""Analytics over usage statistics records: rankings (``llmgw usage top``).

Pure functions over the records ``AdminOps.usage_stats`` returns, so they work the same on a
local database and through a server's admin API. Costs are ranked per currency: a key that spent
10 RUB and one that spent 1 USD are not compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, get_args

__all__ = ["METRICS", "TOP_OF", "WEEKDAYS", "Metric", "TopOf", "patterns", "top"]

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
    Ties keep the input's order (most requests first)."""
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
            {"rank": i, "currency": cur or None, "value": format(v, "f"), **r}
            for i, (v, r) in enumerate(by_cost, 1)
        ]
    return out


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def patterns(
    hour_rows: Sequence[Mapping[str, Any]], provider_rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Usage patterns from ``usage_stats`` records ``by="hour"`` and ``by="provider"`` over one
    window: requests per (UTC weekday, hour of day) as a 7 x 24 heat map, the average prompt and
    completion sizes per request, and the error share of each provider."""
    from datetime import UTC, datetime

    grid = [[0] * 24 for _ in WEEKDAYS]
    requests = prompt = completion = 0
    for r in hour_rows:
        when = datetime.strptime(str(r["hour"]), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        n = int(r.get("requests") or 0)
        grid[when.weekday()][when.hour] += n
        requests += n
        prompt += int(r.get("prompt_tokens") or 0)
        completion += int(r.get("completion_tokens") or 0)
    errors: list[dict[str, Any]] = [
        {
            "provider": p.get("provider"),
            "requests": int(p.get("requests") or 0),
            "errors": int(p.get("errors") or 0),
            "error_share": round(int(p.get("errors") or 0) / int(p["requests"]), 4)
            if p.get("requests")
            else 0.0,
        }
        for p in provider_rows
    ]
    errors.sort(key=lambda e: (-e["error_share"], -e["requests"]))
    return {
        "requests": requests,
        "heatmap": [{"weekday": d, "hours": grid[i]} for i, d in enumerate(WEEKDAYS)],
        "avg_prompt_tokens": round(prompt / requests, 1) if requests else None,
        "avg_completion_tokens": round(completion / requests, 1) if requests else None,
        "errors_by_provider": errors,
    }
