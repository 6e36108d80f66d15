"""``FilteredScreen``: a polled table with a ``/`` filter; ``ListingScreen``: records in it, with
mutations in workers."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Input

from llmgw.tui.format import literal
from llmgw.tui.screens.base import PolledScreen, describe
from llmgw.tui.widgets.dialogs import ConfirmScreen

if TYPE_CHECKING:
    from llmgw.admin.ops import Record

__all__ = ["FilteredScreen", "ListingScreen"]


class FilteredScreen(PolledScreen):
    """A table (``TABLE_ID``) under a filter input: ``/`` shows it, typing filters as you go,
    Enter hides it and returns to the table with the filter kept (the status line shows it; ``/``
    brings the box back to change it), Escape clears and hides it. ``render_rows`` applies
    ``query_text``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="filter", tooltip="Filter the rows"),
        Binding("escape", "clear_filter", "Clear filter", id="filter-clear", show=False),
    ]
    TABLE_ID: ClassVar[str] = "rows"
    FILTER_PLACEHOLDER: ClassVar[str] = "filter…"

    def __init__(self) -> None:
        super().__init__()
        self.query_text = ""

    def compose_filter(self) -> ComposeResult:
        """The (hidden) filter input."""
        box = Input(placeholder=self.FILTER_PLACEHOLDER, id="filter", classes="filter")
        box.display = False
        yield box

    def render_rows(self) -> None:
        """Fill the table with the rows that match ``query_text``."""
        raise NotImplementedError

    def action_filter(self) -> None:
        """Show the filter input and focus it."""
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        """Clear and hide the filter."""
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.query_text = ""
        self.query_one(f"#{self.TABLE_ID}").focus()
        self.render_rows()

    def action_back(self) -> None:
        """For a screen pushed over another (bind it to Escape): clear the filter if one is
        set, else go back to the screen below."""
        if self.query_text or self.query_one("#filter", Input).display:
            self.action_clear_filter()
        else:
            self.app.pop_screen()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self.render_rows()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        # Hidden, so that a key typed right after Enter can be seen to reach the table: one the
        # app forwarded before this message was handled still lands in the box.
        self.query_one("#filter", Input).display = False
        self.query_one(f"#{self.TABLE_ID}").focus()


class ListingScreen(FilteredScreen):
    """Rows from ``fetch``; ``row`` turns a record into cells, ``text`` into filterable text."""

    COLUMNS: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.records: list[Record] = []
        self.shown: list[Record] = []

    def compose_body(self) -> ComposeResult:
        yield from self.compose_filter()
        table: DataTable[Any] = DataTable(id="rows", cursor_type="row", zebra_stripes=True)
        table.add_columns(*self.COLUMNS)
        yield table

    def row(self, rec: Record) -> tuple[Any, ...]:
        """The cells of one record."""
        raise NotImplementedError

    def text(self, rec: Record) -> str:
        """What the filter searches in."""
        return " ".join(str(v) for v in rec.values() if v is not None)

    def show(self, data: list[Record]) -> None:
        self.records = data
        self.render_rows()

    def render_rows(self) -> None:
        """The records that match the filter, keeping the cursor on the same row."""
        table = self.query_one("#rows", DataTable)
        row = table.cursor_row
        table.clear()
        words = self.query_text.lower().split()
        self.shown = [r for r in self.records if all(w in self.text(r).lower() for w in words)]
        for rec in self.shown:
            table.add_row(*literal(self.row(rec)))
        if self.shown:
            table.move_cursor(row=min(max(row, 0), len(self.shown) - 1))
        self.set_status()

    def selected(self) -> Record | None:
        """The record under the cursor."""
        row = self.query_one("#rows", DataTable).cursor_row
        return self.shown[row] if 0 <= row < len(self.shown) else None

    def status_text(self) -> str:
        count = f"{len(self.shown)} of {len(self.records)}"
        found = f"; filter: {self.query_text}" if self.query_text else ""
        return f"{count}{found}; {super().status_text()}"

    def confirm_mutate(
        self,
        question: str,
        action: str,
        what: str,
        call: Callable[[], Record],
        then: Callable[[Record], None] | None = None,
    ) -> None:
        """Ask ``question`` (the button says ``action``); on yes, ``mutate(what, call, then)``."""

        def answered(yes: bool | None) -> None:
            if yes:
                self.mutate(what, call, then)

        self.app.push_screen(ConfirmScreen(question, action=action), answered)

    @work(thread=True, group="mutate", exit_on_error=False)
    def mutate(
        self, what: str, call: Callable[[], Record], then: Callable[[Record], None] | None = None
    ) -> None:
        """Run one admin operation in a thread; a failure is a notification, then poll again."""
        try:
            result = call()
        except Exception as exc:  # shown to the person, never a traceback
            self.app.call_from_thread(
                partial(self.notify, markup=False),
                describe(exc),
                title=f"{what} failed",
                severity="error",
            )
            return
        if then is not None:
            self.app.call_from_thread(then, result)
        else:
            self.app.call_from_thread(partial(self.notify, markup=False), what, title="Done")
        self.app.call_from_thread(self.poll)
