"""``ChatLog``: the conversation pane: the questions, the answers as they stream, and errors
shown in place with what they mean (provider down, budget exceeded, rate limited, context too
long) and what to do, not only as a notification."""

from __future__ import annotations

from collections.abc import Sequence

from textual.containers import VerticalScroll
from textual.widgets import Static

from llmgw.admin.chat import ChatMessage
from llmgw.errors import (
    AuthError,
    BudgetExceeded,
    InvalidRequest,
    LlmgwError,
    ModelNotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    Unavailable,
    UpstreamError,
)

__all__ = ["ChatLog", "failure"]

_CONTEXT_WORDS = ("context length", "context window", "too many tokens", "context_length")


def _wait(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def failure(exc: BaseException) -> tuple[str, str]:
    """(title, what to do) for an error a turn ended with."""
    text = str(exc)
    if isinstance(exc, BudgetExceeded):
        wait = _wait(exc.retry_after)
        return "Budget exceeded", "the budget resets " + (f"in {wait}" if wait else "next period")
    if isinstance(exc, RateLimited):
        wait = _wait(exc.retry_after)
        return "Rate limited", f"try again in {wait}" if wait else "try again shortly"
    code = getattr(exc, "code", None)
    if (
        isinstance(exc, PayloadTooLarge)
        or code == "context_length_exceeded"
        or any(w in text.lower() for w in _CONTEXT_WORDS)
    ):
        return "Context too long", (
            "start a new conversation (ctrl+n), lower max_tokens (ctrl+o), "
            "or pick a model with a larger window"
        )
    if isinstance(exc, Unavailable) and "llmgw server" in text:
        return "Gateway unreachable", "is llmgw serve running? the next turn tries again"
    if isinstance(exc, (UpstreamError, Unavailable)):
        return "Provider unavailable", "try again, or pick another provider or model"
    if isinstance(exc, (AuthError, PermissionDenied)):
        return "Refused", "check the key or login, and the models it may use"
    if isinstance(exc, ModelNotFound):
        return "Unknown model", "pick a model from the list (ctrl+r reloads it)"
    if isinstance(exc, InvalidRequest):
        return "Request refused", "check the settings (ctrl+o)"
    if isinstance(exc, LlmgwError):
        return "Failed", "try again"
    return "Failed", f"{type(exc).__name__}"


class ChatLog(VerticalScroll):
    """The messages of the conversation on screen (text is never read as markup)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._answer: Static | None = None

    def show(self, messages: Sequence[ChatMessage]) -> None:
        """Replace the pane with a stored conversation."""
        self.remove_children()
        self._answer = None
        for m in messages:
            if m.role == "user":
                self.add_user(m.content)
            elif m.role == "assistant":
                self.start_answer(m.content, m.model)
        self._answer = None
        self.scroll_end(animate=False)

    def add_user(self, text: str) -> None:
        """A question."""
        self.mount(Static(text, classes="chat-user", markup=False))
        self.scroll_end(animate=False)

    def start_answer(self, text: str = "…", model: str | None = None) -> None:
        """A new answer box (the one ``update_answer`` writes into)."""
        if model:
            self.mount(Static(model, classes="chat-model", markup=False))
        self._answer = Static(text, classes="chat-answer", markup=False)
        self.mount(self._answer)
        self.scroll_end(animate=False)

    def update_answer(self, text: str) -> None:
        """Rewrite the answer being streamed."""
        if self._answer is not None:
            self._answer.update(text)
            self.scroll_end(animate=False)

    def add_error(self, exc: BaseException, why: str) -> None:
        """An error box in place: its title, the one-line reason and what to do."""
        title, todo = failure(exc)
        box = Static(f"{why}\n→ {todo}", classes="chat-error", markup=False)
        box.border_title = title
        self._answer = None
        self.mount(box)
        self.scroll_end(animate=False)

    def note(self, text: str) -> None:
        """A quiet line (a model switch, a stopped answer)."""
        self.mount(Static(text, classes="chat-note", markup=False))
        self.scroll_end(animate=False)

    @property
    def errors(self) -> list[Static]:
        """The error boxes shown."""
        return list(self.query(".chat-error").results(Static))
