"""Modal dialogs: confirm a destructive action, show a new secret once, and the small forms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

__all__ = ["ConfirmScreen", "Field", "FormScreen", "SecretScreen"]


class ConfirmScreen(ModalScreen[bool]):
    """Asks before a destructive action; ``y`` or the button confirms, Escape or ``n`` cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm-yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm-no"),
    ]

    def __init__(self, question: str, *, action: str = "Confirm") -> None:
        super().__init__()
        self.question = question
        self.action_label = action

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Static(self.question, classes="title", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel (n)", id="no")
                yield Button(f"{self.action_label} (y)", id="yes", variant="error")

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class SecretScreen(ModalScreen[None]):
    """Shows a new key's secret, this once, with a copy action; it is never shown again."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "copy", "Copy", id="secret-copy", tooltip="Copy the key to the clipboard"),
        Binding("escape,enter", "close", "Close", id="secret-close"),
    ]

    def __init__(self, title: str, secret: str) -> None:
        super().__init__()
        self.title_text = title
        self.secret = secret

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Static(self.title_text, classes="title", markup=False)
            yield Static(self.secret, id="secret", classes="secret")
            yield Static("Store it now: it is shown this once and cannot be shown again.")
            with Horizontal(classes="buttons"):
                yield Button("Copy (c)", id="copy")
                yield Button("Done", id="done", variant="primary")

    def action_copy(self) -> None:
        """Copy the secret to the terminal's clipboard (OSC 52)."""
        self.app.copy_to_clipboard(self.secret)
        self.notify("Copied to the clipboard")

    def action_close(self) -> None:
        """Close; the secret is dropped."""
        self.secret = ""
        self.dismiss(None)

    @on(Button.Pressed, "#copy")
    def _copy(self) -> None:
        self.action_copy()

    @on(Button.Pressed, "#done")
    def _done(self) -> None:
        self.action_close()


Parser = Callable[[str], Any]
"""Turns a field's text into a value, or raises ValueError with the message to show."""


class Field:
    """One input of a ``FormScreen``: a text box, a password box (``password``: what is typed
    shows as dots and is never put back into the form), or a choice (``choices``: (label,
    value) pairs; ``value`` is the one chosen first)."""

    def __init__(
        self,
        name: str,
        label: str,
        *,
        value: str = "",
        placeholder: str = "",
        parse: Parser = str,
        password: bool = False,
        choices: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.name = name
        self.label = label
        self.value = value
        self.placeholder = placeholder
        self.parse = parse
        self.password = password
        self.choices = tuple(choices)


class FormScreen(ModalScreen[dict[str, Any] | None]):
    """A form of ``Field``s; Enter or Save validates every field and closes with the values."""

    AUTO_FOCUS = "Input"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="form-cancel"),
    ]

    def __init__(
        self,
        title: str,
        fields: list[Field],
        *,
        submit: str = "Save",
        check: Callable[[dict[str, Any]], object] | None = None,
        compact: bool = False,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.submit_label = submit
        self.check = check
        """Checks the fields together (raises ValueError with the message to show)."""
        self.compact = compact
        """One line per box and button (Textual's compact widgets), so that a long form fits
        an 80x24 terminal without scrolling."""

    def compose(self) -> ComposeResult:
        compact = self.compact
        with VerticalScroll(classes="dialog compact" if compact else "dialog"):
            yield Static(self.title_text, classes="title", markup=False)
            for field in self.fields:
                yield Label(field.label)
                if field.choices:
                    yield Select(
                        field.choices,
                        value=field.value or field.choices[0][1],
                        allow_blank=False,
                        id=f"f-{field.name}",
                        compact=compact,
                    )
                else:
                    yield Input(
                        field.value,
                        placeholder=field.placeholder,
                        password=field.password,
                        id=f"f-{field.name}",
                        compact=compact,
                    )
            yield Static("", id="form-error", classes="error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", compact=compact)
                yield Button(self.submit_label, id="submit", variant="primary", compact=compact)

    def action_cancel(self) -> None:
        """Close without saving."""
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    def _text(self, name: str) -> str:
        return self.query_one(f"#f-{name}", Input).value.strip()

    @on(Button.Pressed, "#submit")
    @on(Input.Submitted)
    def submit(self) -> None:
        """Validate every field; show the first problem, or close with the values."""
        values: dict[str, Any] = {}
        for field in self.fields:
            box = self.query_one(f"#f-{field.name}")
            text = str(box.value) if isinstance(box, Select) else self._text(field.name)
            try:
                values[field.name] = field.parse(text)
            except ValueError as exc:
                self.query_one("#form-error", Static).update(f"{field.label}: {exc}")
                box.focus()
                return
        if self.check is not None:
            try:
                self.check(values)
            except ValueError as exc:
                self.query_one("#form-error", Static).update(str(exc))
                return
        self.dismiss(values)


def required(text: str) -> str:
    """A non-empty text."""
    if not text:
        raise ValueError("required")
    return text


def optional_positive(text: str) -> int | None:
    """Empty (no limit) or a positive whole number."""
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise ValueError("must be at least 1 (leave empty for no limit)")
    return value


def optional_list(text: str) -> list[str] | None:
    """Empty (every model) or a comma-separated list."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def optional_url(text: str) -> str | None:
    """Empty (the default) or an ``http://`` or ``https://`` URL."""
    if not text:
        return None
    if not text.startswith(("http://", "https://")) or len(text.split("://", 1)[1]) == 0:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text


def optional_text(text: str) -> str | None:
    """Empty (None) or the text."""
    return text or None


def optional_duration(text: str) -> Any:
    """Empty (never expires) or a duration such as ``30d`` or ``12h`` (a ``timedelta``)."""
    from llmgw.durations import parse_duration
    from llmgw.errors import UsageError

    if not text:
        return None
    try:
        return parse_duration(text, param="expires")
    except UsageError as exc:
        raise ValueError(str(exc)) from None
