"""Messages the TUI's polling workers post to their screens."""

from __future__ import annotations

from typing import Any

from textual.message import Message

__all__ = ["PollFailed", "Polled"]


class Polled(Message):
    """A poll finished: ``data`` is what the screen's ``fetch`` returned."""

    def __init__(self, data: Any) -> None:
        super().__init__()
        self.data = data


class PollFailed(Message):
    """A poll failed: ``error`` is the one-line reason shown to the person."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error
