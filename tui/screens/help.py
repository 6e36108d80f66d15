"""The help screen: every key binding of the app and of the screen it was opened from."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

__all__ = ["HelpScreen"]


def _table(title: str, rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title=title, title_justify="left", box=None, expand=True, show_header=False)
    table.add_column("key", style="bold", no_wrap=True, width=10)
    table.add_column("action", ratio=1)
    table.add_column("id", style="dim", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


class HelpScreen(ModalScreen[None]):
    """Lists the bindings (key, what it does, its id for the keymap); Escape or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="help-close"),
    ]

    def __init__(self, bindings: dict[str, ActiveBinding], screen_title: str) -> None:
        super().__init__()
        self.listed = bindings
        self._screen_title = screen_title

    def compose(self) -> ComposeResult:
        everywhere: list[tuple[str, str, str]] = []
        here: list[tuple[str, str, str]] = []
        for key, active in self.listed.items():
            binding = active.binding
            if binding.system or not binding.id:
                continue
            row = (
                self.app.get_key_display(binding),
                binding.tooltip or binding.description,
                binding.id or "",
            )
            if active.node is self.app:
                everywhere.append(row)
            elif isinstance(active.node, Screen):
                here.append(row)
            del key
        with VerticalScroll(classes="dialog"):
            yield Static("llmgw dash: keys", classes="title")
            yield Static(_table("Everywhere", everywhere))
            if here:
                yield Static(_table(f"On {self._screen_title}", here))
            yield Static(
                "ctrl+p opens the command palette; the mouse works too. Escape closes this.",
                classes="chart-label",
            )
