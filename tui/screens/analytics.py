"""Analytics: the Usage screen's period as rankings, patterns, a forecast and recommendations.

Opened from the Usage screen with ``A`` (``usage-analytics``); Escape closes it, ``r`` reads it
again. What it shows is what ``llmgw usage top|patterns|forecast|recommend`` print
(docs/analytics.md), computed by the same code (``llmgw.tui.analytics``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from llmgw.tui.analytics import (
    Analytics,
    fetch_analytics,
    forecast_view,
    patterns_view,
    recommend_view,
    top_view,
)
from llmgw.tui.screens.base import describe

if TYPE_CHECKING:
    from textual.app import ComposeResult

__all__ = ["HINT", "AnalyticsScreen"]

HINT = "Escape closes · r reloads · ↑↓ PgUp PgDn Home End scroll"
SECTIONS = ("top", "patterns", "forecast", "recommend")


class AnalyticsScreen(ModalScreen[None]):
    """Top keys, users and models by cost, the weekday x hour heat map, streaming and errors per
    provider, the month-end forecast and the recommendations, for one period."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,A", "dismiss", "Close", id="analytics-close"),
        Binding("r", "reload", "Reload", id="analytics-reload", tooltip="Read the analytics again"),
    ]

    def __init__(self, since: datetime, until: datetime | None, label: str) -> None:
        super().__init__()
        self.since = since
        self.until = until
        self.label = label
        self.data: Analytics | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="analytics-dialog"):
            yield Static(f"Analytics ({self.label})", classes="title", markup=False)
            with VerticalScroll(id="analytics-body"):
                yield Static("loading…", id="analytics-loading", markup=False)
                for name in SECTIONS:
                    yield Static("", id=f"analytics-{name}", classes="analytics-part")
            yield Static(HINT, id="analytics-note", markup=False)

    def on_mount(self) -> None:
        self.query_one("#analytics-body").focus()
        self.load()

    def action_reload(self) -> None:
        self.query_one("#analytics-loading", Static).update("loading…")
        self.load()

    @work(thread=True, exclusive=True, group="analytics", exit_on_error=False)
    def load(self) -> None:
        """Read every part off the UI thread."""
        ops = self.app.ops  # type: ignore[attr-defined]
        now = self.app.now()  # type: ignore[attr-defined]
        try:
            data = fetch_analytics(ops, self.since, self.until, now)
        except Exception as exc:  # noqa: BLE001 - shown, never raised into the app
            self.app.call_from_thread(self._failed, describe(exc))
            return
        self.app.call_from_thread(self._show, data)

    def _failed(self, message: str) -> None:
        self.query_one("#analytics-loading", Static).update(f"could not read analytics: {message}")

    def _show(self, data: Analytics) -> None:
        self.data = data
        loading = self.query_one("#analytics-loading", Static)
        if data.errors:
            loading.update(f"some parts could not be read ({', '.join(sorted(data.errors))})")
        else:
            loading.update("")
        loading.display = bool(data.errors)
        for name, view in (
            ("top", top_view),
            ("patterns", patterns_view),
            ("forecast", forecast_view),
            ("recommend", recommend_view),
        ):
            self.query_one(f"#analytics-{name}", Static).update(view(data))
