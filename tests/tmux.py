"""Driving ``llmgw dash`` in tmux as a person would: a private tmux server per test (``-L``),
sessions started with a command, the pane read with ``capture-pane``, keys typed with
``send-keys``. Every wait is bounded; tmux is required under CI=true and skips the test otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping

import pytest

__all__ = ["Tmux", "need_tmux", "pane_size", "tmux_env"]


def need_tmux() -> str:
    """The tmux binary; fails the test under CI=true when there is none, else skips it."""
    tmux = shutil.which("tmux")
    if tmux is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("tmux is required under CI=true")
        pytest.skip("tmux is not installed")
    return tmux


def tmux_env() -> dict[str, str]:
    """The environment to start a private tmux server with: ours without COLUMNS and LINES.

    The server copies its starting environment into every pane, and ``shutil.get_terminal_size``
    (Textual's) prefers those variables to the pane's real size: a test process that carries
    COLUMNS=80 LINES=24 (pytest-xdist workers and the terminal libraries loaded in the test
    process put them there) drew every screen at 80x24 in a 140x32 pane, whatever ``-x``/``-y``
    said."""
    return {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES"}}


def pane_size(shown: str) -> tuple[int, int]:
    """(columns, rows) a capture-pane shows: its widest line (the separators span the screen)
    and its number of lines."""
    lines = shown.split("\n")[:-1] if shown.endswith("\n") else shown.split("\n")
    return max(len(line) for line in lines), len(lines)


class Tmux:
    """A private tmux server (``-L``) of one test; ``close`` ends it. Sessions have names
    (``dash`` unless told), so one server can hold several panes."""

    def __init__(self, label: str = "test") -> None:
        self.t = [need_tmux(), "-L", f"llmgw-{label}-{os.getpid()}-{uuid.uuid4().hex[:6]}"]

    def run(self, *args: str) -> str:
        """One tmux command on this server; its output."""
        return subprocess.run(
            [*self.t, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def start(
        self,
        cmd: str,
        *,
        size: tuple[int, int] = (120, 32),
        env: Mapping[str, str] | None = None,
        name: str = "dash",
    ) -> Tmux:
        """A detached session ``name`` of ``size`` running ``cmd``, with ``env`` set in it."""
        extra = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
        subprocess.run(
            [*self.t, "new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]),
             *extra, "-e", "TERM=xterm-256color", cmd],
            check=True, timeout=10, env=tmux_env(),
        )  # fmt: skip
        return self

    def screen(self, name: str = "dash") -> str:
        """What the pane shows now."""
        return self.run("capture-pane", "-p", "-t", name)

    def wait_for(
        self,
        check: str | Callable[[str], bool],
        what: str | None = None,
        timeout: float = 60,
        *,
        name: str = "dash",
    ) -> str:
        """The pane once ``check`` (a text on it, or a test of it) holds; fails after ``timeout``
        seconds naming ``what`` and showing the pane."""
        ok = (lambda s: check in s) if isinstance(check, str) else check
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen(name)
            if ok(shown):
                return shown
            time.sleep(0.3)
        what = what or repr(check)
        raise AssertionError(f"{what} never showed in {name}; the pane:\n{self.screen(name)}")

    def wait_gone(self, text: str, timeout: float = 30, *, name: str = "dash") -> str:
        """The pane once ``text`` has left it (bounded)."""
        return self.wait_for(lambda s: text not in s, f"{text!r} going away", timeout, name=name)

    def keys(self, *k: str, name: str = "dash") -> None:
        """Type keys into the pane (``-l`` first: the rest literally)."""
        self.run("send-keys", "-t", name, *k)

    def close(self) -> None:
        """End the tmux server and every pane in it."""
        subprocess.run([*self.t, "kill-server"], check=False, capture_output=True, timeout=10)
