"""Audit: the admin action log, newest first (who, what, target, when, from where)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from llmgw.tui.format import detail_text, readable, short_time
from llmgw.tui.screens.listing import ListingScreen

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps, Record

__all__ = ["AuditScreen"]


class AuditScreen(ListingScreen):
    """Every admin action done through the CLI, the API or this dashboard; the pane below shows
    the highlighted entry's detail, one setting a line."""

    TITLE_TEXT = "Audit"
    COLUMNS = ("time", "actor", "action", "target", "source", "from", "detail")

    def compose_body(self) -> ComposeResult:
        yield from super().compose_body()
        yield Static("", id="detail", markup=False)

    def fetch(self, ops: AdminOps) -> list[Record]:
        return ops.audit_list(limit=500)

    def row(self, rec: Record) -> tuple[Any, ...]:
        detail = rec.get("detail")
        return (
            short_time(rec.get("at")),
            rec.get("actor") or "-",
            rec.get("action") or "-",
            rec.get("target") or "-",
            rec.get("source") or "-",
            rec.get("remote_addr") or "-",
            detail_text(detail) if isinstance(detail, dict) else str(detail or ""),
        )

    def render_rows(self) -> None:
        super().render_rows()
        self._detail(self.query_one("#rows", DataTable).cursor_row)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def _detail(self, index: int) -> None:
        pane = self.query_one("#detail", Static)
        if not 0 <= index < len(self.shown):
            pane.update("")
            return
        rec = self.shown[index]
        head = Text()
        head.append(f"{rec.get('action')} {rec.get('target') or ''}".strip(), style="bold")
        detail = rec.get("detail")
        if isinstance(detail, dict) and detail:
            lines = [f"{k}: {readable(v, k)}" for k, v in detail.items()]
        else:
            lines = ["no detail"]
        pane.update(head + Text("\n" + "\n".join(lines)))
