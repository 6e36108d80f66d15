"""Chat: a playground against the gateway's own ``/v1/chat/completions``, streamed.

It reaches the gateway only through the app's ``ChatSource`` (the CLI wires ``RemoteChat`` with
the dashboard's URL and token). The answer streams in an async worker on the UI's loop, so the
screen never blocks; Escape cancels that worker, which closes the connection. After each answer
the status line shows the tokens and the latency. In local mode (no server) the screen says that
chat needs a running server and takes a URL and an API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from llmgw.admin.chat import ChatDelta, ChatDone, ChatMessage
from llmgw.tui.format import hhmm, num
from llmgw.tui.screens.base import describe

if TYPE_CHECKING:
    from llmgw.admin.chat import ChatSource
    from llmgw.tui.app import LlmgwApp

__all__ = ["LOCAL_CHAT_NOTE", "ChatScreen", "parse_max_tokens", "parse_temperature"]

LOCAL_CHAT_NOTE = (
    "Chat needs a running llmgw serve: in local mode the dashboard reads the database only. "
    "Give a server's URL and an API key below, or start with llmgw dash --url URL --token KEY."
)


def parse_temperature(text: str) -> float | None:
    """Empty (the model's default) or a number from 0 to 2."""
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"temperature {text!r} is not a number") from None
    if not 0 <= value <= 2:
        raise ValueError("temperature goes from 0 to 2")
    return value


def parse_max_tokens(text: str) -> int | None:
    """Empty (no limit) or a whole number of at least 1."""
    if not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"max tokens {text!r} is not a whole number") from None
    if value < 1:
        raise ValueError("max tokens is at least 1 (leave it empty for no limit)")
    return value


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


class ChatScreen(Screen[None]):
    """Model picker, temperature, max tokens, the conversation and a prompt."""

    TITLE_TEXT: ClassVar[str] = "Chat"
    AUTO_FOCUS = "#prompt"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape",
            "stop",
            "Stop/leave prompt",
            id="chat-stop",
            tooltip="Stop the answer being streamed; else leave the prompt (then 1-7, q work)",
        ),
        Binding("ctrl+l", "clear", "New chat", id="chat-clear", tooltip="Start a new conversation"),
        Binding("ctrl+r", "refresh", "Models", id="chat-models", tooltip="Reload the model list"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.history: list[ChatMessage] = []
        self.streaming = False
        self.answer = ""
        self.last: ChatDone | None = None
        self.stale_since: str | None = None
        self._retry: Timer | None = None
        self._answer_box: Static | None = None

    @property
    def llmgw(self) -> LlmgwApp:
        """The app, typed."""
        return self.app  # type: ignore[return-value]

    @property
    def source(self) -> ChatSource | None:
        """The gateway's chat API, once there is one."""
        return self.llmgw.chat

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="chat-connect", classes="banner"):
            yield Static(LOCAL_CHAT_NOTE, id="chat-note")
            with Horizontal(classes="chat-row"):
                yield Input(placeholder="http://127.0.0.1:8080", id="chat-url")
                yield Input(placeholder="API key", password=True, id="chat-key")
                yield Button("Connect", id="chat-connect-button", variant="primary")
        with Horizontal(id="chat-options", classes="chat-row"):
            yield Select[str]([], prompt="model", id="chat-model", allow_blank=True)
            yield Label("temp", classes="chat-label")
            yield Input(placeholder="auto", id="chat-temperature")
            yield Label("max", classes="chat-label")
            yield Input(placeholder="none", id="chat-max-tokens")
        yield VerticalScroll(id="chat-log")
        yield Input(placeholder="Ask the model; Enter sends, Escape stops", id="prompt")
        yield Static("", id="status-line")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.TITLE_TEXT
        self._layout()
        if self.source is not None:
            self.load_models()

    def on_screen_resume(self) -> None:
        where = self.source.url if self.source is not None else "no server"
        self.sub_title = f"{self.TITLE_TEXT} · {where}"

    def _layout(self) -> None:
        connected = self.source is not None
        self.query_one("#chat-connect").display = not connected
        self.query_one("#chat-options").display = connected
        self.query_one("#prompt", Input).disabled = not connected
        if not connected:
            self.set_status("no server: give a URL and an API key above")

    def set_status(self, text: str, *, stale: bool = False) -> None:
        """Write the status line (red when stale)."""
        line = self.query_one("#status-line", Static)
        line.update(text)
        line.set_class(stale, "stale")

    # -- models ---------------------------------------------------------------------------
    def action_refresh(self) -> None:
        """Reload the model list."""
        if self.source is not None:
            self.load_models()

    @work(exclusive=True, group="chat-models", exit_on_error=False)
    async def load_models(self) -> None:
        """Ask the gateway for its models; a failure shows stale and tries again later."""
        if self._retry is not None:
            self._retry.stop()
        source = self.source
        if source is None:
            return
        try:
            models = await source.models()
        except Exception as exc:  # shown to the person, never a traceback
            why = describe(exc)
            if self.stale_since is None:
                self.notify(why, title="Chat: models failed", severity="error")
                self.stale_since = hhmm(self.llmgw.now())
            self.set_status(f"stale since {self.stale_since}: {why}", stale=True)
            self._retry = self.set_timer(self.llmgw.poll_interval, self.load_models)
            return
        if self.stale_since is not None:
            self.notify("Connection restored", title="Chat")
        self.stale_since = None
        select: Select[str] = self.query_one("#chat-model", Select)
        current = select.value
        select.set_options([(m, m) for m in models])
        if isinstance(current, str) and current in models:
            select.value = current
        elif models:
            select.value = models[0]
        if not self.streaming:
            self.set_status(
                f"{len(models)} models at {source.url}; Enter sends, Escape stops"
                if models
                else f"{source.url} lists no models: check the server's [[providers]]"
            )

    # -- connect (local mode) -------------------------------------------------------------
    @on(Button.Pressed, "#chat-connect-button")
    @on(Input.Submitted, "#chat-url")
    @on(Input.Submitted, "#chat-key")
    def connect(self) -> None:
        """Use the URL and key given on the screen."""
        url = self.query_one("#chat-url", Input).value.strip()
        key = self.query_one("#chat-key", Input).value.strip()
        connect = self.llmgw.connect_chat
        if connect is None:  # pragma: no cover - the CLI always wires it
            self.set_status("this dashboard cannot connect to a server", stale=True)
            return
        try:
            self.llmgw.chat = connect(url, key)
        except Exception as exc:  # a bad URL or key: say so and stay
            self.set_status(describe(exc), stale=True)
            return
        self._layout()
        self.on_screen_resume()
        self.query_one("#prompt", Input).focus()
        self.load_models()

    # -- chat -----------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    def send(self, event: Input.Submitted) -> None:
        """Send the prompt with the conversation so far and stream the answer."""
        text = event.value.strip()
        if not text or self.source is None:
            return
        if self.streaming:
            self.notify("An answer is streaming: Escape stops it", severity="warning")
            return
        model = self.query_one("#chat-model", Select).value
        if not isinstance(model, str):
            self.set_status("pick a model first", stale=True)
            return
        try:
            temperature = parse_temperature(self.query_one("#chat-temperature", Input).value)
            max_tokens = parse_max_tokens(self.query_one("#chat-max-tokens", Input).value)
        except ValueError as exc:
            self.set_status(str(exc), stale=True)
            return
        event.input.value = ""
        self.history.append(ChatMessage("user", text))
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(Static(text, classes="chat-user", markup=False))
        self._answer_box = Static("…", classes="chat-answer", markup=False)
        log.mount(self._answer_box)
        log.scroll_end(animate=False)
        self.answer = ""
        self.streaming = True
        self.set_status(f"{model}: streaming… (Escape stops)")
        self.ask(model, temperature, max_tokens)

    @work(exclusive=True, group="chat", exit_on_error=False)
    async def ask(self, model: str, temperature: float | None, max_tokens: int | None) -> None:
        """Stream one answer into the last answer box (an async worker: the UI stays live)."""
        source = self.source
        assert source is not None
        try:
            async for event in source.stream(
                model, list(self.history), temperature=temperature, max_tokens=max_tokens
            ):
                if isinstance(event, ChatDelta):
                    self.answer += event.text
                    self._show_answer()
                else:
                    self._finish(event)
        except Exception as exc:  # an error before or during the stream: shown, never raised
            self._fail(describe(exc))
        finally:
            if self.streaming:  # cancelled (Escape) or failed
                self.streaming = False

    def _show_answer(self, suffix: str = "") -> None:
        if self._answer_box is not None:
            self._answer_box.update(self.answer + suffix)
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    def _finish(self, done: ChatDone) -> None:
        self.streaming = False
        self.last = done
        self.history.append(ChatMessage("assistant", self.answer))
        self._show_answer()
        self.set_status(summary(done))

    def _fail(self, why: str) -> None:
        self.streaming = False
        self._show_answer(f"\n[error] {why}" if self.answer else f"[error] {why}")
        self.history.pop()  # the question was not answered: it is not part of the conversation
        self.notify(why, title="Chat failed", severity="error")
        self.set_status(f"failed: {why}", stale=True)

    def action_stop(self) -> None:
        """Stop the answer being streamed (closes the connection), or leave the prompt."""
        if self.streaming:
            self.workers.cancel_group(self, "chat")
            self.streaming = False
            if self.answer:
                self.history.append(ChatMessage("assistant", self.answer))
            else:
                self.history.pop()
            self._show_answer(" [stopped]")
            self.set_status("stopped: the connection was closed, the server stops the model")
        else:
            self.query_one("#chat-log").focus()

    def action_clear(self) -> None:
        """Start a new conversation (stops a stream first)."""
        if self.streaming:
            self.action_stop()
        self.history.clear()
        self.query_one("#chat-log", VerticalScroll).remove_children()
        self.query_one("#prompt", Input).focus()
        self.set_status("new conversation")

    def check_action(self, action: str, parameters: tuple[Any, ...]) -> bool | None:
        """Reloading models needs a server."""
        if action == "refresh":
            return self.source is not None
        return True
