"""A real terminal for CLI tests: ``llmgw`` in a child process on a pseudo-terminal of a set size."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Terminal:
    """``llmgw ARGS`` whose stdin, stdout and stderr are one pseudo-terminal (as in a shell)."""

    proc: subprocess.Popen[bytes]
    master: int
    raw: bytearray = field(default_factory=bytearray)

    @property
    def text(self) -> str:
        """Everything the process wrote so far, colours removed, CRLF as LF."""
        return _ANSI.sub("", self.raw.decode(errors="replace")).replace("\r\n", "\n")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.raw += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 30) -> None:
        """Read until ``text`` appears (fails with what was seen after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while text not in self.text:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not seen in {self.text!r}"
            if not self._read(min(left, 0.5)) and self.proc.poll() is not None:
                assert text in self.text, f"exited {self.proc.returncode}: {self.text!r}"

    def send(self, text: str) -> None:
        """Type ``text`` (``\\n`` is Enter)."""
        os.write(self.master, text.encode())

    def signal(self, sig: signal.Signals) -> None:
        """What the terminal does on Ctrl-C: ``sig`` to the foreground process group."""
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 30) -> int:
        """The exit code, after reading everything written (a signal death is 128 + signo)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None or self._read(0.05):
            assert time.monotonic() < deadline, f"still running: {self.text!r}"
            self._read(0.2)
        code = self.proc.returncode
        return 128 - code if code < 0 else code


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    """Factory: ``terminal(*args, cols=80, env={...})`` starts ``llmgw ARGS`` on a new pty."""
    started: list[Terminal] = []

    def spawn(
        *args: str, cols: int = 80, rows: int = 24, env: dict[str, str] | None = None
    ) -> Terminal:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        child_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        child_env.update(TERM="xterm-256color", **(env or {}))
        child_env.pop("NO_COLOR", None)
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
            [sys.executable, "-m", "llmgw", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=child_env,
            start_new_session=True,  # its own process group, as a shell's foreground job
            # A shell's foreground job starts with default signal handling, whatever ours is
            # (a background runner may ignore SIGINT, which Python would then never turn into
            # KeyboardInterrupt).
            preexec_fn=_default_signals,
        )
        os.close(slave)
        term = Terminal(proc, master)
        started.append(term)
        return term

    yield spawn
    for term in started:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait()
        os.close(term.master)


Emulate = Callable[..., tuple[subprocess.Popen[str], list[str]]]
"""``emulate(*args)`` starts ``llmgw emulate ARGS`` and returns the process and its banner lines."""


@pytest.fixture
def emulate() -> Iterator[Emulate]:
    """``llmgw emulate ARGS`` in a child process, returned once its banner ends ("Press Ctrl-C");
    a process the test left running is stopped at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmgw", "emulate", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl-C"):
                break
        return proc, lines

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
