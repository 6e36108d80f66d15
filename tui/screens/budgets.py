"""Budgets: a read-only table of every budget, this period's spend and when it resets.

Opened from the Usage screen with ``B`` (``usage-budgets``); Escape closes it. Changes are made
with ``llmgw budgets set`` (docs/budgets.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from llmgw.tui.format import literal

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from llmgw.admin.ops import Record

__all__ = ["BudgetsScreen", "budget_detail", "budget_row"]

COLUMNS = ("subject", "used", "spent", "amount", "period", "at 100%", "resets (UTC)")
"""What matters most first: at 80 columns the table shows the subject, the share used, the spend
and the amount; the pane below shows every field of the highlighted budget."""

HINT = "Escape closes · change budgets with llmgw budgets set (docs/budgets.md)"


def _percent(rec: Record) -> str:
    pct = rec.get("percent")
    return "-" if pct is None else f"{pct:.1f}%"


def _resets(rec: Record) -> str:
    return str(rec.get("resets_at") or "")[:16].replace("T", " ")


def budget_row(rec: Record) -> tuple[Any, ...]:
    """One budget as table cells."""
    return literal(
        (
            f"{rec['scope']} {rec['subject']}",
            _percent(rec),
            f"{float(rec['spent']):.2f}",
            f"{float(rec['amount']):.2f} {rec['currency']}",
            rec["period"],
            "stop" if rec.get("hard_stop") else "notify",
            _resets(rec),
        )
    )


def budget_detail(rec: Record) -> str:
    """Every field of one budget in words, for the pane under the table (any width)."""
    thresholds = ", ".join(f"{t}%" for t in rec.get("thresholds") or []) or "none"
    notified = ", ".join(f"{t}%" for t in rec.get("notified") or []) or "none yet"
    stop = "stop (402 budget_exceeded)" if rec.get("hard_stop") else "notify only"
    return (
        f"{rec['scope']} {rec['subject']}: {float(rec['amount']):.2f} {rec['currency']} "
        f"a {rec['period']}, spent {float(rec['spent']):.2f} ({_percent(rec)})\n"
        f"at 100%: {stop}; notify at {thresholds} (notified: {notified}); "
        f"resets {_resets(rec)} UTC"
    )


class BudgetsScreen(ModalScreen[None]):
    """Every budget with its spend this period (read from ``AdminOps.budgets_list``)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,B", "dismiss", "Close", id="budgets-close"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Record] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="budgets-dialog"):
            yield Static("Budgets (this period)", classes="title", markup=False)
            table: DataTable[Any] = DataTable(id="budgets-table", cursor_type="row")
            table.add_columns(*COLUMNS)
            yield table
            yield Static("", id="budgets-detail", markup=False)
            yield Static(HINT, id="budgets-note", markup=False)

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
            self._show, rows, HINT if rows else f"no budgets (llmgw budgets set) · {HINT}"
        )

    def _show(self, rows: list[Record], note: str) -> None:
        self.rows = rows
        table = self.query_one("#budgets-table", DataTable)
        table.clear()
        for rec in rows:
            table.add_row(*budget_row(rec))
        self.query_one("#budgets-note", Static).update(note)
        self._detail(table.cursor_row)

    @on(DataTable.RowHighlighted, "#budgets-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def _detail(self, index: int) -> None:
        pane = self.query_one("#budgets-detail", Static)
        pane.update(budget_detail(self.rows[index]) if 0 <= index < len(self.rows) else "")
