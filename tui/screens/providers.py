"""Providers: every (provider, model) with its state, latency, error rate and history."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from llmgw.tui.format import age, num, short_time, spark, state_style
from llmgw.tui.screens.base import PolledScreen, describe

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps, Record

__all__ = ["ProvidersScreen"]

LOCAL_NOTE = (
    "Local mode: the state below is what a server last wrote to the provider_status table. "
    "Live state (breakers, in flight, requests/min, history) needs a server: "
    "llmgw dash --url URL --token TOKEN"
)


HISTORY = 30
"""Polls of each (provider, model) kept for the sparklines and requests/min."""

Sample = tuple[datetime, dict[str, Any]]


def _history(rec: Record, field: str, samples: deque[Sample] | None = None) -> list[float | None]:
    """One series: the record's own bounded ``history`` (a list of dicts or numbers) if the
    server sends one, else this screen's last polls of it."""
    points: list[Any] = list(rec.get("history") or [])
    if not points and samples is not None:
        points = [r for _, r in samples]
    out: list[float | None] = []
    for point in points:
        value = point.get(field) if isinstance(point, dict) else point
        out.append(float(value) if isinstance(value, int | float) else None)
    return out


def _per_minute(samples: deque[Sample]) -> float | None:
    """Requests per minute between the oldest and newest poll (the ``requests`` counter)."""
    if len(samples) < 2:
        return None
    (t0, first), (t1, last) = samples[0], samples[-1]
    minutes = (t1 - t0).total_seconds() / 60
    if minutes <= 0 or first.get("requests") is None or last.get("requests") is None:
        return None
    return max(0, int(last["requests"]) - int(first["requests"])) / minutes


class ProvidersScreen(PolledScreen):
    """A table of providers and models; the detail pane shows the selected row's last error."""

    TITLE_TEXT = "Providers"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "t",
            "test",
            "Test",
            id="providers-test",
            tooltip="A real round trip to the selected provider (network, then a 1-token chat)",
        ),
        Binding(
            "m",
            "manage",
            "Manage",
            id="providers-manage",
            tooltip="Add, edit, disable or remove stored providers; config-file ones read-only",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.records: list[Record] = []
        self.samples: dict[tuple[str, str], deque[Sample]] = {}
        self.tests: dict[str, str] = {}
        """Provider -> the outcome of its last test, for the detail pane."""

    def compose_body(self) -> ComposeResult:
        yield Static(LOCAL_NOTE, id="local-note", classes="banner")
        table: DataTable[Any] = DataTable(id="providers", cursor_type="row", zebra_stripes=True)
        table.add_columns(
            "provider", "model", "state", "breaker", "latency ms", "errors", "req/min",
            "in flight", "latency history", "error history", "updated",
        )  # fmt: skip
        yield table
        yield Static("", id="detail")

    def fetch(self, ops: AdminOps) -> list[Record]:
        return ops.providers_status()

    def show(self, data: list[Record]) -> None:
        self.records = data
        live = any(r.get("live") for r in data) or self.llmgw.live
        self.query_one("#local-note").display = not live
        colors = self.app.theme_variables
        now = self.llmgw.now()
        table = self.query_one("#providers", DataTable)
        row = table.cursor_row
        table.clear()
        for rec in data:
            samples = self.samples.setdefault(
                (str(rec.get("provider")), str(rec.get("model"))), deque(maxlen=HISTORY)
            )
            samples.append((now, rec))
            state = str(rec.get("state") or rec.get("status") or "unknown")
            breaker = rec.get("breaker")
            rate = rec.get("error_rate")
            updated = rec.get("updated_at") or max(
                (t for t in (rec.get("last_ok_at"), rec.get("last_error_at")) if t), default=None
            )
            table.add_row(
                rec.get("provider", "-"),
                rec.get("model", "-"),
                Text(state, style=f"bold {state_style(state, colors)}"),
                Text(str(breaker), style=state_style(str(breaker), colors)) if breaker else "-",
                num(rec.get("latency_ms"), 1),
                f"{float(rate) * 100:.1f}%" if rate is not None else "-",
                num(rec.get("requests_per_min", rec.get("rpm", _per_minute(samples)))),
                num(rec.get("in_flight")),
                spark(_history(rec, "latency_ms", samples)[-20:]) or "-",
                spark(_history(rec, "error_rate", samples)[-20:]) or "-",
                age(updated, now),
            )
        if data:
            table.move_cursor(row=min(row, len(data) - 1))
        self._detail(table.cursor_row)

    def status_text(self) -> str:
        down = sum(
            1 for r in self.records if (r.get("state") or r.get("status")) in {"down", "open"}
        )
        live = any(r.get("live") for r in self.records) or self.llmgw.live
        mode = "live" if live else "from provider_status"
        return f"{len(self.records)} provider models, {down} down ({mode}); {super().status_text()}"

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def _detail(self, index: int) -> None:
        pane = self.query_one("#detail", Static)
        if not 0 <= index < len(self.records):
            pane.update("No provider has reported yet: start `llmgw serve` and send a request.")
            return
        rec = self.records[index]
        errors = rec.get("last_errors") or (
            [{"at": rec.get("last_error_at"), "error": rec["last_error"]}]
            if rec.get("last_error")
            else []
        )
        lines = [f"[b]{escape(str(rec.get('provider')))}/{escape(str(rec.get('model')))}[/b]"]
        tested = self.tests.get(str(rec.get("provider")))
        if tested:
            lines.append(f"last test: {tested}")
        if not errors:
            lines.append("no recent errors")
        for err in errors[-5:]:
            if isinstance(err, dict):
                lines.append(
                    f"{short_time(err.get('at'))}  {err.get('error') or err.get('message')}"
                )
            else:
                lines.append(str(err))
        pane.update(Text.from_markup(lines[0]) + Text("\n" + "\n".join(lines[1:])))

    def action_test(self) -> None:
        """Test the highlighted row's provider (in a worker: the screen stays live)."""
        index = self.query_one("#providers", DataTable).cursor_row
        if not 0 <= index < len(self.records):
            self.notify("No provider to test", severity="warning")
            return
        rec = self.records[index]
        provider, model = str(rec.get("provider")), rec.get("model")
        self.tests[provider] = "running…"
        self._detail(index)
        self.notify(f"Testing {provider}/{model}…", title="Provider test")
        self.run_test_call(provider, str(model) if model else None)

    @work(thread=True, group="provider-test", exit_on_error=False)
    def run_test_call(self, provider: str, model: str | None) -> None:
        """One ``providers_test``; the outcome is a notification and a line in the pane."""
        try:
            result = self.ops.providers_test(provider, model=model)
        except Exception as exc:  # a diagnosis for the person, never a traceback
            why = describe(exc)
            self.app.call_from_thread(self._tested, provider, f"FAILED: {why}", "error")
            return
        what = (
            f"1-token chat with {result.get('model')}"
            if result.get("check") == "chat"
            else f"{result.get('models')} models listed"
        )
        outcome = f"OK: {what} in {num(result.get('latency_ms'))} ms"
        self.app.call_from_thread(self._tested, provider, outcome, "information")

    def _tested(self, provider: str, outcome: str, severity: str) -> None:
        self.tests[provider] = outcome
        self.notify(
            f"{provider}: {outcome}",
            title="Provider test",
            severity="error" if severity == "error" else "information",
        )
        self._detail(self.query_one("#providers", DataTable).cursor_row)

    def action_manage(self) -> None:
        """Open the provider management screen (imported now: not on the first paint)."""
        from llmgw.tui.screens.provider_admin import ProviderAdminScreen

        self.app.push_screen(ProviderAdminScreen())
