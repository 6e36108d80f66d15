"""``ConversationList``: the caller's conversations, newest first, as an ``OptionList``.

Each row is the title (never read as markup) with the message count and model below it; the
option id is the conversation id. Enter (or a click) continues the highlighted conversation;
``e`` renames it and ``d`` deletes it (the screen asks first); ``n`` starts a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import OptionList
from textual.widgets.option_list import Option

__all__ = ["ConversationList"]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def _row(rec: dict[str, Any], current: bool, width: int) -> Text:
    title = _cut(str(rec.get("title") or "Conversation"), width - 2)
    text = Text(("● " if current else "  ") + title, style="bold" if current else "")
    n = rec.get("messages") or 0
    model = str(rec.get("model") or "?").rpartition("/")[2]  # the provider is in the pickers
    text.append("\n" + _cut(f"  {n} · {model}", width), "dim")
    return text


class ConversationList(OptionList):
    """The conversations; ``records`` are ``GET /api/conversations`` records."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "screen.new", "New", id="chat-list-new", tooltip="Start a new conversation"),
        Binding("e,f2", "screen.rename", "Rename", id="chat-rename",
                tooltip="Rename the highlighted conversation"),
        Binding("d,delete", "screen.delete", "Delete", id="chat-delete",
                tooltip="Delete the highlighted conversation (asks first)"),
    ]  # fmt: skip

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.records: list[dict[str, Any]] = []

    def show(self, records: Sequence[dict[str, Any]], current: str | None) -> None:
        """Replace the rows, keeping the highlight on the same conversation where it still is."""
        keep = self.highlighted_id
        self.records = list(records)
        self.clear_options()
        inner = self.scrollable_content_region.width
        width = max(inner - 1, 12) if inner else 26  # the last column: the highlight's edge
        rows = [Option(_row(r, r["id"] == current, width), id=r["id"]) for r in self.records]
        self.add_options(rows)
        ids = [r["id"] for r in self.records]
        for want in (keep, current):
            if want in ids:
                self.highlighted = ids.index(want)
                break
        self.border_subtitle = f"{len(ids)}"

    @property
    def highlighted_id(self) -> str | None:
        """The id of the highlighted conversation."""
        if self.highlighted is None or not self.records:
            return None
        return self.get_option_at_index(self.highlighted).id

    def record(self, conversation_id: str | None) -> dict[str, Any] | None:
        """The record of a conversation in the list."""
        return next((r for r in self.records if r["id"] == conversation_id), None)
