"""Usage: requests, tokens and cost per hour or day over a period, and a breakdown table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Sparkline, Static

from llmgw.tui.format import num
from llmgw.tui.screens.base import PolledScreen
from llmgw.tui.widgets.dialogs import Field, FormScreen

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps, Record

__all__ = [
    "BREAKDOWNS",
    "PERIODS",
    "USAGE_INTERVAL",
    "UsageScreen",
    "buckets",
    "parse_custom",
    "parse_when",
]

PERIODS: dict[str, tuple[timedelta, str]] = {
    "1h": (timedelta(hours=1), "hour"),
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "day"),
    "30d": (timedelta(days=30), "day"),
}
"""Period name → (length, bucket); after them in the cycle comes ``custom`` (since/until)."""
CUSTOM = "custom"
BREAKDOWNS = ("model", "version", "provider", "key", "user", "status")
USAGE_INTERVAL = 10.0
"""Seconds between the Usage screen's polls at least: each poll is two statistics queries
(what one dashboard at ``--interval 1`` cost a server most; docs/performance.md), and hourly and
daily totals do not need a new answer every second. ``r`` polls at once, and so does coming
back to the screen."""
MAX_CUSTOM = timedelta(days=400)
"""The longest custom period (a day per bucket: about 400 points)."""


def parse_when(text: str, now: datetime) -> datetime:
    """A time a person types: ``2026-12-01``, ``2026-12-01 09:00``, ISO 8601 (UTC unless it
    says otherwise), or relative to now: ``-3d``, ``-12h``, ``-30m``; ValueError saying why."""
    text = text.strip()
    if text[:1] == "-" and text[1:-1].isdigit() and text[-1:] in {"d", "h", "m"}:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[text[-1]]
        return now - timedelta(**{unit: int(text[1:-1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use 2026-12-01, 2026-12-01 09:00 or -3d, -12h"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_custom(since: str, until: str, now: datetime) -> tuple[datetime, datetime]:
    """A custom period from the form's text: since is required, until empty means now; since
    before until, neither in the future, at most ``MAX_CUSTOM`` long."""
    if not since.strip():
        raise ValueError("since is required")
    start = parse_when(since, now)
    end = parse_when(until, now) if until.strip() else now
    if end > now + timedelta(minutes=1) or start > now:
        raise ValueError("the period cannot be in the future")
    if start >= end:
        raise ValueError("since must be before until")
    if end - start > MAX_CUSTOM:
        raise ValueError(f"at most {MAX_CUSTOM.days} days")
    return start, end


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


def costs_by_currency(rows: list[Record]) -> dict[str, Decimal]:
    """The rows' cost per currency (a row's ``costs``, else its ``cost`` under its ``currency``,
    ``""`` when it has none): costs are never added across currencies."""
    out: dict[str, Decimal] = {}
    for r in rows:
        costs = r.get("costs")
        parts = (
            costs.items() if isinstance(costs, dict) else [(r.get("currency") or "", r.get("cost"))]
        )
        for cur, value in parts:
            out[cur] = out.get(cur, Decimal(0)) + _cost(value)
    return out


def cost_text(costs: dict[str, Decimal], places: int = 4) -> str:
    """``0.1234 USD + 5.0000 RUB`` (largest first); ``0.0000`` for nothing."""
    if not costs:
        return f"{Decimal(0):.{places}f}"
    ordered = sorted(costs.items(), key=lambda kv: -kv[1])
    return " + ".join(f"{v:.{places}f} {c}".rstrip() for c, v in ordered)


@dataclass
class UsageData:
    """One poll's worth: the series over time and the breakdown rows."""

    labels: list[str]
    series: list[Record]
    breakdown: list[Record]


class UsageScreen(PolledScreen):
    """Charts over the period (``p`` cycles 1h/24h/7d/30d/custom, ``c`` asks for a custom one)
    and a breakdown (``b`` cycles)."""

    TITLE_TEXT = "Usage"
    MIN_INTERVAL = USAGE_INTERVAL
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "p", "period", "Period", id="usage-period", tooltip="Cycle 1h, 24h, 7d, 30d, custom"
        ),
        Binding(
            "c",
            "custom",
            "Custom period",
            id="usage-custom",
            tooltip="A period from since to until (dates, times or -3d)",
            show=False,  # p reaches it too; the footer keeps room for A, ? and q at 80 columns
        ),
        Binding(
            "b",
            "breakdown",
            "Breakdown",
            id="usage-breakdown",
            tooltip="Cycle model (with version), version, provider, key, user, status",
        ),
        Binding(
            "B",
            "budgets",
            "Budgets",
            id="usage-budgets",
            tooltip="Every budget, this period's spend and its reset",
            show=False,
        ),
        Binding(
            "A",
            "analytics",
            "Analytics",
            id="usage-analytics",
            tooltip="This period's top keys, users and models, patterns, forecast, recommendations",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.period = "24h"
        self.by = "model"
        self.data: UsageData | None = None
        self.custom: tuple[datetime, datetime] | None = None
        """The custom period's [since, until), once one was given."""

    def window(self) -> tuple[datetime, datetime | None, str]:
        """(since, until or None for now, bucket) of the period shown."""
        if self.period == CUSTOM and self.custom is not None:
            since, until = self.custom
            return since, until, "hour" if until - since <= timedelta(hours=48) else "day"
        length, by = PERIODS[self.period]
        return self.llmgw.now() - length, None, by

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
        since, until, by = self.window()
        series = ops.usage_stats(since=since, until=until, by=by)
        breakdown = ops.usage_stats(since=since, until=until, by=self.by)
        end = until - timedelta(microseconds=1) if until is not None else self.llmgw.now()
        return UsageData(buckets(since, end, by), series, breakdown)

    def show(self, data: UsageData) -> None:
        self.data = data
        self._period_line()
        by_label = {str(r.get("hour") or r.get("day")): r for r in data.series}
        rows = [by_label.get(label, {}) for label in data.labels]
        requests = [float(r.get("requests") or 0) for r in rows]
        tokens = [float(r.get("total_tokens") or 0) for r in rows]
        totals = costs_by_currency(data.series)
        # the chart draws one currency, the largest; the totals name every currency
        main = max(totals, key=lambda c: totals[c]) if totals else ""
        costs = [float(costs_by_currency([r]).get(main, 0)) if r else 0.0 for r in rows]
        total_cost = cost_text(totals)
        errors = sum(int(r.get("errors") or 0) for r in data.series)
        step = self.window()[2]
        span = f"{data.labels[0]} … {data.labels[-1]}, per {step}" if data.labels else ""
        for name, values, total in (
            ("requests", requests, num(sum(requests))),
            ("tokens", tokens, num(sum(tokens))),
            ("cost", costs, total_cost),
        ):
            self.query_one(f"#chart-{name}", Sparkline).data = values
            peak = num(max(values), 4 if name == "cost" else 0) if values else "0"
            self.query_one(f"#label-{name}", Static).update(
                f"{name}: {total} (peak {peak} per {step})"
            )
        self.query_one("#totals", Static).update(
            f"{num(sum(requests))} requests, {num(errors)} errors, {num(sum(tokens))} tokens, "
            f"cost {total_cost}  ({span})"
        )
        self._breakdown(data.breakdown)

    def _custom_label(self) -> str:
        if self.custom is None:
            return CUSTOM
        since, until = self.custom
        return f"{since:%m-%d %H:%M} … {until:%m-%d %H:%M}"

    def _period_line(self) -> None:
        names = [*PERIODS, CUSTOM]
        periods = "  ".join(
            f"[reverse] {self._label(p)} [/]" if p == self.period else f" {self._label(p)} "
            for p in names
        )
        self.query_one("#period", Static).update(
            f"period (p): {periods}   breakdown (b): [b]{self.by}[/b]"
        )

    def _breakdown(self, rows: list[Record]) -> None:
        table = self.query_one("#breakdown", DataTable)
        table.clear(columns=True)
        label = {"model": "model[:version]"}.get(self.by, self.by)
        table.add_columns(
            label, "requests", "errors", "tokens in", "tokens out", "cost", "avg ms", "p95 ms"
        )
        for r in rows:
            name = r.get(self.by)
            if self.by == "key":
                name = f"{r.get('key_prefix') or '-'} {r.get('key_name') or ''}".strip()
            elif self.by == "user":
                name = r.get("email") or r.get("user") or "-"
            elif self.by == "version" and name is None:
                name = "(no version)"
            table.add_row(
                Text(str(name if name is not None else "-")),
                num(r.get("requests")),
                num(r.get("errors")),
                num(r.get("prompt_tokens")),
                num(r.get("completion_tokens")),
                cost_text(costs_by_currency([r])),
                num(r.get("avg_latency_ms"), 1),
                num(r.get("p95_latency_ms"), 1),
            )

    def _label(self, period: str) -> str:
        return self._custom_label() if period == CUSTOM else period

    def status_text(self) -> str:
        span = f"last {self.period}" if self.period != CUSTOM else self._custom_label()
        return f"{span} by {self.by}; {super().status_text()}"

    def action_period(self) -> None:
        """The next period: 1h, 24h, 7d, 30d, then custom (asked for the first time)."""
        names = [*PERIODS, CUSTOM]
        following = names[(names.index(self.period) + 1) % len(names)]
        if following == CUSTOM and self.custom is None:
            self.action_custom()
            return
        self.period = following
        self._period_line()
        self.poll()

    def action_custom(self) -> None:
        """Ask for a custom period (since, until); invalid input keeps the form open."""
        now = self.llmgw.now()
        since, until = self.custom or (now - timedelta(days=3), now)

        def check_since(text: str) -> str:
            if not text.strip():
                raise ValueError("required (e.g. 2026-12-01 or -3d)")
            parse_when(text, now)
            return text

        def check_until(text: str) -> str:
            if text.strip():
                parse_when(text, now)
            return text

        form = FormScreen(
            "Custom period (UTC): since … until",
            [
                Field(
                    "since",
                    "Since",
                    value=f"{since:%Y-%m-%d %H:%M}",
                    placeholder="2026-12-01, 2026-12-01 09:00 or -3d",
                    parse=check_since,
                ),
                Field(
                    "until",
                    "Until (empty: now)",
                    value="" if self.custom is None else f"{until:%Y-%m-%d %H:%M}",
                    placeholder="empty for now",
                    parse=check_until,
                ),
            ],  # fmt: skip
            submit="Show",
            check=lambda values: parse_custom(values["since"], values["until"], now),
        )
        self.app.push_screen(form, self._custom_given)

    def _custom_given(self, values: dict[str, Any] | None) -> None:
        if values is None:
            return
        self.custom = parse_custom(values["since"], values["until"], self.llmgw.now())
        self.period = CUSTOM
        self._period_line()
        self.poll()

    def action_budgets(self) -> None:
        """Open the budgets table (read-only)."""
        from llmgw.tui.screens.budgets import BudgetsScreen

        self.app.push_screen(BudgetsScreen())

    def action_analytics(self) -> None:
        """Open the analytics of the period shown (read-only)."""
        from llmgw.tui.screens.analytics import AnalyticsScreen

        since, until, _by = self.window()
        label = f"last {self.period}" if self.period != CUSTOM else self._custom_label()
        self.app.push_screen(AnalyticsScreen(since, until, label))

    def action_breakdown(self) -> None:
        """The next breakdown: model, provider, key, user, status."""
        self.by = BREAKDOWNS[(BREAKDOWNS.index(self.by) + 1) % len(BREAKDOWNS)]
        self._period_line()
        self.poll()
