"""The Chat screen's frame (``ChatBase``): its bindings, widgets, state, layout, status line and
the generation settings form, plus the words it shows (``LOCAL_CHAT_NOTE``, ``summary``).
What the screen does is in ``llmgw.tui.screens.chat``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Footer, Header, Input, Select, Static

from llmgw.admin.chat import ChatDone, ModelChoice
from llmgw.tui.chat_settings import fields, summary_line
from llmgw.tui.format import num
from llmgw.tui.widgets.chat_log import ChatLog
from llmgw.tui.widgets.conversation_list import ConversationList
from llmgw.tui.widgets.dialogs import FormScreen

if TYPE_CHECKING:
    from llmgw.admin.chat import ChatSource
    from llmgw.tui.app import LlmgwApp

__all__ = ["LOCAL_CHAT_NOTE", "ChatBase", "summary"]

LOCAL_CHAT_NOTE = (
    "Chat needs a running llmgw serve: in local mode the dashboard reads the database only. "
    "Give a server's URL and an API key below, or start with llmgw dash --url URL --token KEY."
)


def summary(done: ChatDone) -> str:
    """The line after an answer: who answered, tokens in and out, latency, first token."""
    parts = [done.model or "?"]
    if done.prompt_tokens is not None or done.completion_tokens is not None:
        parts.append(f"{num(done.prompt_tokens)} in + {num(done.completion_tokens)} out tokens")
    else:
        parts.append("no token usage sent")
    ttft = f", first token {num(done.ttft_ms)} ms" if done.ttft_ms is not None else ""
    parts.append(f"{num(done.latency_ms)} ms{ttft}")
    if done.finish_reason and done.finish_reason != "stop":
        parts.append(f"finish: {done.finish_reason}")
    return " · ".join(parts)


class ChatBase(Screen[None]):
    """The Chat screen's frame: its widgets, state, status line and settings form; ``ChatScreen``
    adds what it does (loading, sending, the conversations)."""

    TITLE_TEXT: ClassVar[str] = "Chat"
    AUTO_FOCUS = "#prompt"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop/prompt", id="chat-stop",
                tooltip="Stop the answer being streamed; else leave the prompt (then 1-8, q "
                "work), or go back to it"),
        Binding("ctrl+g", "pick", "Model", id="chat-pick",
                tooltip="Go to the provider and model pickers"),
        Binding("ctrl+l", "conversations", "List", id="chat-list",
                tooltip="Go to the conversation list"),
        Binding("ctrl+n", "new", "New", id="chat-new", tooltip="Start a new conversation"),
        Binding("ctrl+o", "settings", "Settings", id="chat-settings",
                tooltip="System prompt and every generation setting"),
        Binding("ctrl+t", "rename", "Rename", id="chat-title",
                tooltip="Rename the conversation on screen"),
        Binding("ctrl+r", "refresh", "Reload", id="chat-models",
                tooltip="Reload the model catalog and the conversations"),
    ]  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.catalog: list[ModelChoice] = []
        self.conversation_id: str | None = None
        self.conversation_model: str | None = None
        self.settings: dict[str, Any] = {}
        """``system`` and the generation settings set on screen (None: not sent)."""
        self.streaming = False
        self.answer = ""
        self.last: ChatDone | None = None
        self.stale_since: str | None = None
        self._retry: Timer | None = None
        self._new_turn = False

    @property
    def llmgw(self) -> LlmgwApp:
        """The app, typed."""
        return self.app  # type: ignore[return-value]

    @property
    def source(self) -> ChatSource | None:
        """The gateway's chat API, once there is one."""
        return self.llmgw.chat

    @property
    def log_pane(self) -> ChatLog:
        """The conversation pane."""
        return self.query_one("#chat-log", ChatLog)

    @property
    def conversations(self) -> ConversationList:
        """The conversation list."""
        return self.query_one("#chat-list", ConversationList)

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="chat-connect", classes="banner"):
            yield Static(LOCAL_CHAT_NOTE, id="chat-note")
            with Horizontal(classes="chat-row"):
                url = self.llmgw.local_chat_url or ""
                yield Input(url, placeholder="http://127.0.0.1:8080", id="chat-url")
                yield Input(placeholder="API key", password=True, id="chat-key")
                yield Button("Connect", id="chat-connect-button", variant="primary")
        with Horizontal(id="chat-body"):
            yield ConversationList(id="chat-list")
            with Vertical(id="chat-main"):
                with Horizontal(id="chat-options", classes="chat-row"):
                    yield Select[str]([], prompt="provider", id="chat-provider")
                    yield Select[str]([], prompt="model", id="chat-model")
                yield Static("", id="chat-settings-line", markup=False)
                yield ChatLog(id="chat-log")
                yield Input(placeholder="Ask the model; Enter sends, Escape stops", id="prompt")
        yield Static("", id="status-line", markup=False)
        yield Footer()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 100, "-narrow")

    def on_screen_resume(self) -> None:
        where = self.source.url if self.source is not None else "no server"
        self.sub_title = f"{self.TITLE_TEXT} · {where}"

    def _layout(self) -> None:
        connected = self.source is not None
        self.query_one("#chat-connect").display = not connected
        self.query_one("#chat-body").display = connected
        self.query_one("#prompt", Input).disabled = not connected
        if not connected:
            self.set_status("no server: give a URL and an API key above")

    def set_status(self, text: str, *, stale: bool = False) -> None:
        """Write the status line (red when stale)."""
        line = self.query_one("#status-line", Static)
        line.update(text)
        line.set_class(stale, "stale")

    def _show_settings(self) -> None:
        self.query_one("#chat-settings-line", Static).update(summary_line(self.settings))

    # -- settings ------------------------------------------------------------------------
    def action_settings(self) -> None:
        """Edit the system prompt and the generation settings."""
        self.app.push_screen(
            FormScreen("Generation settings (empty: not sent)", fields(self.settings)),
            self._set_settings,
        )

    def _set_settings(self, values: dict[str, Any] | None) -> None:
        if values is not None:
            self.settings = values
            self._show_settings()
