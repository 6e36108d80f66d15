"""``PolledScreen``: a screen that fetches from ``AdminOps`` in a worker and re-arms its timer.

The fetch runs in a thread (the operations are synchronous: database or HTTP), one at a time
(an exclusive worker in the group ``poll``); when it ends, the screen shows the data or, on a
failure, a notification and "stale since hh:mm" on its status line, and the timer is armed again,
so a server that went away is picked up again when it comes back. A screen that is not shown
skips its fetch but keeps its timer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Static

from llmgw.errors import LlmgwError
from llmgw.tui.format import hhmm
from llmgw.tui.messages import Polled, PollFailed

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps
    from llmgw.tui.app import LlmgwApp

__all__ = ["PolledScreen", "describe"]


def describe(exc: BaseException) -> str:
    """One line for a person: an ``LlmgwError``'s message and hint, else the exception's name."""
    if isinstance(exc, LlmgwError):
        hint = getattr(exc, "hint", None)
        return f"{exc}" + (f" ({hint})" if hint else "")
    return f"{type(exc).__name__}: {exc}"


class PolledScreen(Screen[None]):
    """A screen refreshed by polling; subclasses define ``fetch`` (thread) and ``show`` (UI)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "refresh", "Refresh", id="refresh", tooltip="Poll now"),
    ]
    TITLE_TEXT: ClassVar[str] = ""
    AUTO_FOCUS = "DataTable"
    MIN_INTERVAL: ClassVar[float] = 0.0
    """The fewest seconds between two polls of this screen, whatever ``--interval`` says: a
    screen of aggregates that change by the hour polls less often than the live ones."""

    def __init__(self) -> None:
        super().__init__()
        self._timer: Timer | None = None
        self.stale_since: str | None = None
        self.last_error: str | None = None
        self.loaded = False

    @property
    def llmgw(self) -> LlmgwApp:
        """The app, typed."""
        return self.app  # type: ignore[return-value]

    @property
    def ops(self) -> AdminOps:
        """The admin operations the app was given."""
        return self.llmgw.ops

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.compose_body()
        yield Static("loading…", id="status-line", markup=False)  # holds filter text, errors
        yield Footer()

    def compose_body(self) -> ComposeResult:
        """The screen's own widgets."""
        yield from ()

    def fetch(self, ops: AdminOps) -> Any:
        """Read what the screen shows (runs in a thread; may raise)."""
        raise NotImplementedError

    def show(self, data: Any) -> None:
        """Show what ``fetch`` returned (runs on the UI thread)."""
        raise NotImplementedError

    def status_text(self) -> str:
        """The status line when the last poll succeeded."""
        return f"updated {hhmm(self.llmgw.now())}"

    def on_mount(self) -> None:
        self.sub_title = self.TITLE_TEXT
        self.poll()

    def on_screen_resume(self) -> None:
        where = self.llmgw.where
        self.sub_title = f"{self.TITLE_TEXT} · {where}" if where else self.TITLE_TEXT
        if self.loaded:
            self.poll()

    def action_refresh(self) -> None:
        """Poll now."""
        self.poll()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def poll(self) -> None:
        """Fetch in a thread; post the result or the failure (never raise into the UI)."""
        if self._timer is not None:
            self._timer.stop()
        if not self.is_current and self.loaded:
            self.post_message(Polled(None))
            return
        try:
            data = self.fetch(self.ops)
        except Exception as exc:  # every failure becomes a notice, never a traceback
            self.post_message(PollFailed(describe(exc)))
        else:
            self.post_message(Polled(data))

    @property
    def interval(self) -> float:
        """Seconds between this screen's polls: ``--interval``, at least ``MIN_INTERVAL``."""
        return max(self.llmgw.poll_interval, self.MIN_INTERVAL)

    def _rearm(self) -> None:
        self._timer = self.set_timer(self.interval, self.poll)

    @on(Polled)
    def _on_polled(self, message: Polled) -> None:
        message.stop()
        if message.data is not None or not self.loaded:
            self.loaded = True
            if self.stale_since is not None:
                self.notify("Connection restored", title=self.TITLE_TEXT)
                if not self.llmgw.identity:  # the server was away at start: who are we?
                    self.llmgw.check_access()
            self.stale_since = None
            self.last_error = None
            self.show(message.data)
        self.set_status()
        self._rearm()
        if self.loaded and self.stale_since is None:
            self.llmgw.painted()

    @on(PollFailed)
    def _on_poll_failed(self, message: PollFailed) -> None:
        message.stop()
        if self.stale_since is None or message.error != self.last_error:
            self.notify(
                message.error,
                title=f"{self.TITLE_TEXT}: poll failed",
                severity="error",
                markup=False,
            )
        if self.stale_since is None:
            self.stale_since = hhmm(self.llmgw.now())
        self.last_error = message.error
        self.set_status()
        self._rearm()

    def set_status(self) -> None:
        """Write the status line: fresh, or stale since when and why."""
        line = self.query_one("#status-line", Static)
        if self.stale_since is not None:
            line.update(f"stale since {self.stale_since}: {self.last_error}")
            line.add_class("stale")
        else:
            line.update(self.status_text())
            line.remove_class("stale")
