"""The Usage screen's analytics (``A``): what ``llmgw usage top|patterns|forecast|recommend``
compute, read through ``AdminOps`` and drawn as Rich renderables.

The figures come from the same calls the CLI makes (``ops.usage_stats`` into the pure
functions of ``llmgw.usage.analytics``, and ``ops.usage_recommend``), so a local database and a
server's admin API give the same answers. Costs are never added across currencies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from rich import box
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from llmgw.tui.format import num
from llmgw.tui.screens.base import describe
from llmgw.usage.analytics import GROUP_OF, forecast, patterns, top

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps, Record

__all__ = [
    "FORECAST_HISTORY",
    "TOP_LIMIT",
    "Analytics",
    "busiest",
    "fetch_analytics",
    "forecast_view",
    "heatmap_view",
    "patterns_view",
    "recommend_view",
    "top_view",
]

TOP_LIMIT = 5
"""Rows per currency in each ranking (``llmgw usage top -n 5``)."""
FORECAST_HISTORY = 56
"""Days the forecast learns from (``llmgw usage forecast``'s default ``--history``)."""
SHADES = "░▒▓█"
HEAT = ("#2e4a62", "#3f7fb0", "#e0a030", "#f05a28")
"""The heat map's four shades, coolest first (readable on dark and light themes)."""

T = TypeVar("T")


@dataclass
class Analytics:
    """One load: each part's result, or the one-line error that kept it from loading."""

    since: datetime
    until: datetime | None
    today: datetime
    top: dict[str, list[Record]] = field(default_factory=dict)
    patterns: dict[str, Any] | None = None
    forecast: list[Record] | None = None
    recommend: list[Record] | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _part(errors: dict[str, str], name: str, read: Callable[[], T]) -> T | None:
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - shown in place of the part, never raised
        errors[name] = describe(exc)
        return None


def fetch_analytics(
    ops: AdminOps, since: datetime, until: datetime | None, now: datetime
) -> Analytics:
    """Everything the view shows over ``[since, until)`` (until None: now), the forecast to the
    end of ``now``'s month; each part read on its own so one failure leaves the others."""
    out = Analytics(since, until, now)
    for of, by in GROUP_OF.items():

        def ranked(by: str = by) -> list[Record]:
            return top(ops.usage_stats(since=since, until=until, by=by), "cost", TOP_LIMIT)

        rows = _part(out.errors, "top", ranked)
        if rows is not None:
            out.top[of] = rows
    out.patterns = _part(
        out.errors,
        "patterns",
        lambda: patterns(
            ops.usage_stats(since=since, until=until, by="hour"),
            ops.usage_stats(since=since, until=until, by="provider"),
        ),
    )
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start -= timedelta(days=FORECAST_HISTORY)
    out.forecast = _part(
        out.errors,
        "forecast",
        lambda: forecast(ops.usage_stats(since=start, by="day"), now.date()),
    )
    out.recommend = _part(
        out.errors, "recommend", lambda: ops.usage_recommend(since=since, until=until)
    )
    return out


def _table(title: str, *, expand: bool = False) -> Table:
    return Table(
        title=title, title_justify="left", title_style="bold", expand=expand,
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
    )  # fmt: skip


def _title(text: str) -> Text:
    return Text(text, style="bold")


def _error(part: str, message: str) -> Text:
    return Text(f"could not read the {part}: {message}", style="bold red")


def _money(value: Any, places: int = 2) -> str:
    return f"{Decimal(str(value)):,.{places}f}"


def _name(of: str, row: Record) -> str:
    if of == "keys":
        if row.get("key") is None:
            return "(no key)"
        return f"{row.get('key_name') or str(row['key'])[:8]} {row.get('key_prefix') or ''}".strip()
    if of == "users":
        return str(row.get("email") or row.get("user") or "(no user)")
    return str(row.get("model") or "-")


def top_view(data: Analytics) -> RenderableType:
    """The top keys, users and models by cost, ranked within each currency."""
    if "top" in data.errors:
        return _error("rankings", data.errors["top"])
    parts: list[RenderableType] = []
    for of in GROUP_OF:
        table = _table(f"Top {of} by cost")
        table.add_column("cur", no_wrap=True)
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column(of[:-1], min_width=24, max_width=36, overflow="ellipsis", no_wrap=True)
        table.add_column("cost", justify="right", no_wrap=True)
        table.add_column("requests", justify="right", no_wrap=True)
        rows = data.top.get(of, [])
        for r in rows:
            table.add_row(
                Text(str(r.get("currency") or "-")),
                str(r["rank"]),
                Text(_name(of, r)),
                _money(r["value"], 4),
                num(r.get("requests")),
            )
        if not rows:
            table.add_row("", "", Text("no cost in this period", style="dim"), "", "")
        parts.append(table)
    return Columns(parts, padding=(0, 4))


def busiest(heatmap: list[Record]) -> tuple[str, int, int] | None:
    """(weekday, hour, requests) of the heat map's busiest cell (the first of a tie), or None."""
    cells = [(n, d["weekday"], h) for d in heatmap for h, n in enumerate(d["hours"])]
    n, day, hour = max(cells, key=lambda c: c[0], default=(0, "", 0))
    return (day, hour, n) if n else None


def heatmap_view(found: dict[str, Any]) -> RenderableType:
    """Requests per UTC weekday and hour: two shaded cells an hour, the day's total after."""
    heat = found["heatmap"]
    peak = max((max(d["hours"]) for d in heat), default=0)
    lines = [Text("     " + "".join(f"{h:<6d}" for h in range(0, 24, 3)).rstrip(), style="dim")]
    for d in heat:
        line = Text(f"{d['weekday']}  ")
        for n in d["hours"]:
            if n and peak:
                level = min(3, (n * 4 - 1) // peak)
                line.append(SHADES[level] * 2, style=f"{HEAT[level]} on {HEAT[level]}")
            else:
                line.append("··", style="dim")
        line.append(f"  {num(sum(d['hours']))}")
        lines.append(line)
    top_cell = busiest(heat)
    if top_cell is None:
        lines.append(Text("no requests in this period", style="italic"))
    else:
        day, hour, n = top_cell
        lines.append(Text(f"busiest: {day} {hour:02d}:00-{hour + 1:02d}:00 UTC, {num(n)} requests"))
        legend = Text("of its count: ")
        for level, share in enumerate(("1/4", "1/2", "3/4", "all")):
            legend.append(SHADES[level] * 2, style=f"{HEAT[level]} on {HEAT[level]}")
            legend.append(f" ≤{share}  ")
        lines.append(legend)
    return Group(_title("Requests per UTC weekday and hour"), *lines)


def patterns_view(data: Analytics) -> RenderableType:
    """The heat map, the streamed share and average sizes, and the error share per provider."""
    if "patterns" in data.errors or data.patterns is None:
        return _error("patterns", data.errors.get("patterns", "nothing read"))
    found = data.patterns
    avg_p, avg_c = found["avg_prompt_tokens"], found["avg_completion_tokens"]
    sizes = Text(
        f"{num(found['requests'])} requests, {found['stream_share']:.1%} streamed; average "
        f"prompt {num(avg_p, 1)} tokens, completion {num(avg_c, 1)} tokens"
    )
    table = _table("Errors and streaming by provider")
    for name in ("provider", "requests", "errors", "error %", "streamed", "avg in", "avg out"):
        table.add_column(name, justify="left" if name == "provider" else "right", no_wrap=True)
    for e in found["errors_by_provider"]:
        table.add_row(
            Text(str(e["provider"] or "-")),
            num(e["requests"]),
            num(e["errors"]),
            Text(f"{e['error_share']:.1%}", style="bold red" if e["error_share"] >= 0.05 else ""),
            f"{e['stream_share']:.1%}",
            num(e["avg_prompt_tokens"], 1),
            num(e["avg_completion_tokens"], 1),
        )
    return Columns([heatmap_view(found), Group(sizes, table)], padding=(1, 4))


def forecast_view(data: Analytics) -> RenderableType:
    """Spend to the end of the month per currency, its interval and the back-test errors."""
    if "forecast" in data.errors or data.forecast is None:
        return _error("forecast", data.errors.get("forecast", "nothing read"))
    month = f"{data.today:%Y-%m}"
    table = _table(f"Forecast to the end of {month} (UTC)")
    table.add_column("cur", no_wrap=True)
    for name in ("so far", "forecast", "95% interval", "naive"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("error/day vs naive", justify="right")
    days = 0
    for f in data.forecast:
        days = max(days, int(f["backtest_days"] or 0))
        backtest = (
            f"{_money(f['backtest_mae'])} vs {_money(f['naive_backtest_mae'])}"
            if f["backtest_mae"] is not None
            else "too little history"
        )
        table.add_row(
            Text(str(f["currency"] or "-")),
            _money(f["month_to_date"]),
            Text(_money(f["forecast"]), style="bold"),
            f"{_money(f['low'])} - {_money(f['high'])}",
            _money(f["naive_forecast"]),
            Text(backtest),
        )
    if not data.forecast:
        table.add_row("", "", "", "", "", Text("no spend in the history", style="dim"))
    note = Text(
        f"learnt from {FORECAST_HISTORY} days; error/day: the model's mean absolute error one day "
        f"ahead over {days} back-tested days against the naive month-to-date average's",
        style="dim",
    )
    return Group(table, note)


def recommend_view(data: Analytics) -> RenderableType:
    """The recommendations, each with its saving over the period per currency."""
    if "recommend" in data.errors or data.recommend is None:
        return _error("recommendations", data.errors.get("recommend", "nothing read"))
    table = _table("Recommendations (saving over this period)", expand=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("saving", justify="right")
    table.add_column("recommendation", ratio=1)
    for r in data.recommend:
        saving = "\n".join(f"{_money(v)} {c}" for c, v in (r.get("saving") or {}).items())
        table.add_row(
            Text(str(r["kind"]).replace("_", " ")),
            Text(saving or "-"),
            Text(str(r["recommendation"])),  # "[aliases]" is text, not markup
        )
    if not data.recommend:
        table.add_row("", "", Text("nothing in this period crosses a threshold", style="dim"))
    return table
