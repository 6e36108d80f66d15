"""Budgets: a read-only table of every budget, this period's spend and when it resets.

Opened from the Usage screen with ``B`` (``usage-budgets``); Escape closes it. Changes are made
with ``llmgw budgets set`` (docs/budgets.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from llmgw.tui.format import literal

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from llmgw.admin.ops import Record

__all__ = ["BudgetsScreen", "budget_row"]

COLUMNS = ("subject", "period", "amount", "spent", "used", "on spent", "resets (UTC)")


def budget_row(rec: Record) -> tuple[Any, ...]:
    """One budget as table cells."""
    pct = rec.get("percent")
    return literal(
        (
            f"{rec['scope']} {rec['subject']}",
            rec["period"],
            f"{float(rec['amount']):.2f} {rec['currency']}",
            f"{float(rec['spent']):.2f}",
            "-" if pct is None else f"{pct:.1f}%",
            "stop" if rec.get("hard_stop") else "notify",
            str(rec.get("resets_at") or "")[:16].replace("T", " "),
        )
    )


class BudgetsScreen(ModalScreen[None]):
    """Every budget with its spend this period (read from ``AdminOps.budgets_list``)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,B", "dismiss", "Close", id="budgets-close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Budgets (this period)", classes="title", markup=False)
            table: DataTable[Any] = DataTable(id="budgets-table", cursor_type="row")
            table.add_columns(*COLUMNS)
            yield table
            yield Static("", id="budgets-note", markup=False)

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="budgets", exit_on_error=False)
    def load(self) -> None:
        """Fetch the budgets off the UI thread."""
        ops = self.app.ops  # type: ignore[attr-defined]
        try:
            rows = ops.budgets_list()
        except Exception as exc:  # noqa: BLE001 - shown, never raised into the app
            self.app.call_from_thread(self._show, [], f"could not read budgets: {exc}")
            return
        self.app.call_from_thread(
            self._show, rows, "" if rows else "no budgets (llmgw budgets set)"
        )

    def _show(self, rows: list[Record], note: str) -> None:
        table = self.query_one("#budgets-table", DataTable)
        table.clear()
        for rec in rows:
            table.add_row(*budget_row(rec))
        self.query_one("#budgets-note", Static).update(note)
