"""Usage: requests, tokens and cost per hour or day over a period, and a breakdown table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Sparkline, Static

from llmgw.tui.format import num
from llmgw.tui.screens.base import PolledScreen

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps, Record

__all__ = ["BREAKDOWNS", "PERIODS", "UsageScreen", "buckets"]

PERIODS: dict[str, tuple[timedelta, str]] = {
    "1h": (timedelta(hours=1), "hour"),
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "day"),
    "30d": (timedelta(days=30), "day"),
}
"""Period name → (length, bucket)."""
BREAKDOWNS = ("model", "provider", "key", "user", "status")


def buckets(since: datetime, until: datetime, by: str) -> list[str]:
    """The bucket labels ``usage_stats`` uses for every hour or day in ``[since, until]``."""
    if by == "hour":
        step, fmt = timedelta(hours=1), "%Y-%m-%d %H:00"
        start = since.replace(minute=0, second=0, microsecond=0)
    else:
        step, fmt = timedelta(days=1), "%Y-%m-%d"
        start = since.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    while start <= until:
        out.append(start.strftime(fmt))
        start += step
    return out


def _cost(value: Any) -> Decimal:
    try:
        return Decimal(str(value or 0))
    except InvalidOperation:
        return Decimal(0)


@dataclass
class UsageData:
    """One poll's worth: the series over time and the breakdown rows."""

    labels: list[str]
    series: list[Record]
    breakdown: list[Record]


class UsageScreen(PolledScreen):
    """Charts over the period (``p`` cycles 1h/24h/7d/30d) and a breakdown (``b`` cycles)."""

    TITLE_TEXT = "Usage"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "period", "Period", id="usage-period", tooltip="Cycle 1h, 24h, 7d, 30d"),
        Binding(
            "b",
            "breakdown",
            "Breakdown",
            id="usage-breakdown",
            tooltip="Cycle model, provider, key, user, status",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.period = "24h"
        self.by = "model"
        self.data: UsageData | None = None

    def compose_body(self) -> ComposeResult:
        yield Static("", id="period")
        yield Static("", id="totals")
        with Vertical(id="charts"):
            for name in ("requests", "tokens", "cost"):
                yield Static(name, id=f"label-{name}", classes="chart-label")
                yield Sparkline([], id=f"chart-{name}")
        table: DataTable[Any] = DataTable(id="breakdown", cursor_type="row", zebra_stripes=True)
        yield table

    def fetch(self, ops: AdminOps) -> UsageData:
        length, by = PERIODS[self.period]
        until = self.llmgw.now()
        since = until - length
        series = ops.usage_stats(since=since, until=None, by=by)
        breakdown = ops.usage_stats(since=since, until=None, by=self.by)
        return UsageData(buckets(since, until, by), series, breakdown)

    def show(self, data: UsageData) -> None:
        self.data = data
        self._period_line()
        by_label = {str(r.get("hour") or r.get("day")): r for r in data.series}
        rows = [by_label.get(label, {}) for label in data.labels]
        requests = [float(r.get("requests") or 0) for r in rows]
        tokens = [float(r.get("total_tokens") or 0) for r in rows]
        costs = [float(_cost(r.get("cost"))) for r in rows]
        total_cost = sum((_cost(r.get("cost")) for r in data.series), Decimal(0))
        errors = sum(int(r.get("errors") or 0) for r in data.series)
        step = "hour" if PERIODS[self.period][1] == "hour" else "day"
        span = f"{data.labels[0]} … {data.labels[-1]}, per {step}" if data.labels else ""
        for name, values, total in (
            ("requests", requests, num(sum(requests))),
            ("tokens", tokens, num(sum(tokens))),
            ("cost", costs, f"{total_cost:.4f}"),
        ):
            self.query_one(f"#chart-{name}", Sparkline).data = values
            peak = num(max(values), 4 if name == "cost" else 0) if values else "0"
            self.query_one(f"#label-{name}", Static).update(
                f"{name}: {total} (peak {peak} per {step})"
            )
        self.query_one("#totals", Static).update(
            f"{num(sum(requests))} requests, {num(errors)} errors, {num(sum(tokens))} tokens, "
            f"cost {total_cost:.4f}  ({span})"
        )
        self._breakdown(data.breakdown)

    def _period_line(self) -> None:
        periods = "  ".join(f"[reverse] {p} [/]" if p == self.period else f" {p} " for p in PERIODS)
        self.query_one("#period", Static).update(
            f"period (p): {periods}   breakdown (b): [b]{self.by}[/b]"
        )

    def _breakdown(self, rows: list[Record]) -> None:
        table = self.query_one("#breakdown", DataTable)
        table.clear(columns=True)
        label = {"key": "key", "user": "user"}.get(self.by, self.by)
        table.add_columns(
            label, "requests", "errors", "tokens in", "tokens out", "cost", "avg ms", "p95 ms"
        )
        for r in rows:
            name = r.get(self.by)
            if self.by == "key":
                name = f"{r.get('key_prefix') or '-'} {r.get('key_name') or ''}".strip()
            elif self.by == "user":
                name = r.get("email") or r.get("user") or "-"
            table.add_row(
                str(name if name is not None else "-"),
                num(r.get("requests")),
                num(r.get("errors")),
                num(r.get("prompt_tokens")),
                num(r.get("completion_tokens")),
                f"{_cost(r.get('cost')):.4f}",
                num(r.get("avg_latency_ms"), 1),
                num(r.get("p95_latency_ms"), 1),
            )

    def status_text(self) -> str:
        return f"last {self.period} by {self.by}; {super().status_text()}"

    def action_period(self) -> None:
        """The next period: 1h, 24h, 7d, 30d."""
        names = list(PERIODS)
        self.period = names[(names.index(self.period) + 1) % len(names)]
        self._period_line()
        self.poll()

    def action_breakdown(self) -> None:
        """The next breakdown: model, provider, key, user, status."""
        self.by = BREAKDOWNS[(BREAKDOWNS.index(self.by) + 1) % len(BREAKDOWNS)]
        self._period_line()
        self.poll()
