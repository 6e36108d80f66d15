"""Requests: a live tail of the newest requests, filterable, with pause and resume."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from llmgw.tui.format import literal, num, short_time
from llmgw.tui.screens.listing import FilteredScreen

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps, Record

__all__ = ["RequestsScreen", "matches"]

TAIL = 200


def _field(rec: Record, name: str) -> str:
    if name == "key":
        return str(rec.get("key_prefix") or "")
    if name == "model":
        # A request refused before routing (a bad model name, a bad body) has no model: "-",
        # never "None/None".
        provider, model, version = rec.get("provider"), rec.get("model"), rec.get("model_version")
        if not model:
            return "-"
        name = f"{provider}/{model}" if provider else str(model)
        return name + (f":{version}" if version else "")
    return str(rec.get(name) if rec.get(name) is not None else "")


def matches(rec: Record, query: str) -> bool:
    """Whether a request matches every word of ``query``: ``model=gpt``, ``key=sk-ab``,
    ``status=429`` or ``status=5xx``, ``provider=x``, or bare text found in any of those."""
    for word in query.split():
        name, sep, want = word.partition("=")
        if sep and name in {"model", "key", "status", "provider"}:
            have = _field(rec, name).lower()
            want = want.lower()
            if name == "status" and want.endswith("xx"):
                if not have.startswith(want[0]):
                    return False
            elif name == "status":
                if have != want:
                    return False
            elif want not in have:
                return False
        elif not any(
            word.lower() in _field(rec, n).lower() for n in ("model", "key", "status", "provider")
        ):
            return False
    return True


class RequestsScreen(FilteredScreen):
    """The newest requests first (remote: the server's ring buffer; local: the usage table)."""

    TITLE_TEXT = "Requests"
    TABLE_ID = "requests"
    FILTER_PLACEHOLDER = "model=… key=… status=5xx, or any text"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "p", "pause", "Pause/resume", id="requests-pause", tooltip="Pause or resume the tail"
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.records: list[Record] = []
        self.paused = False

    def compose_body(self) -> ComposeResult:
        yield from self.compose_filter()
        table: DataTable[Any] = DataTable(id="requests", cursor_type="row", zebra_stripes=True)
        table.add_columns(
            "time", "key", "model", "served by", "status", "latency ms", "ttft ms",
            "tokens in", "tokens out", "cost",
        )  # fmt: skip
        yield table

    def fetch(self, ops: AdminOps) -> list[Record]:
        return ops.usage_recent(limit=TAIL)

    def show(self, data: list[Record]) -> None:
        if self.paused:
            return
        self.records = data
        self.render_rows()

    def render_rows(self) -> None:
        """Fill the table with the requests that match the filter."""
        colors = self.app.theme_variables
        table = self.query_one("#requests", DataTable)
        table.clear()
        for rec in self.records:
            if self.query_text and not matches(rec, self.query_text):
                continue
            status = int(rec.get("status") or 0)
            color = colors.get(
                "success" if status < 400 else "warning" if status < 500 else "error"
            )
            table.add_row(
                *literal(
                    (
                        short_time(rec.get("at")),
                        rec.get("key_prefix") or "-",
                        _field(rec, "model"),
                        rec.get("provider") or "-",
                        Text(str(status), style=f"bold {color}"),
                        num(rec.get("latency_ms"), 1),
                        num(rec.get("ttft_ms"), 1),
                        num(rec.get("prompt_tokens")),
                        num(rec.get("completion_tokens")),
                        rec.get("cost") or "-",
                    )
                )
            )
        self.set_status()

    def status_text(self) -> str:
        shown = self.query_one("#requests", DataTable).row_count
        parts = [f"{shown} of {len(self.records)} requests"]
        if self.query_text:
            parts.append(f"filter: {self.query_text}")
        parts.append("PAUSED (p resumes)" if self.paused else super().status_text())
        return "; ".join(parts)

    def action_pause(self) -> None:
        """Pause the tail (polls go on, the table stands still) or resume it."""
        self.paused = not self.paused
        if not self.paused:
            self.poll()
        self.set_status()
