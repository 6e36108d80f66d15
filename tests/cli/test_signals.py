"""Signals end every long-running command the same documented way (issue 8 item 15).

Ctrl-C (SIGINT to the foreground process group, as a terminal sends it) stops the command, prints
one ``Error: interrupted`` line and exits 130. SIGTERM (a service manager's stop) is a normal
stop: ``serve`` drains first, the emulators stop at once, and both exit 0.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

READY = {
    ("emulate", "openai", "--port", "0"): "Press Ctrl-C to stop.",
    ("emulate", "gigachat", "--port", "0"): "Press Ctrl-C to stop.",
    ("serve", "--port", "0"): "Application startup complete.",
}


@pytest.mark.parametrize("args", list(READY), ids=[" ".join(a[:2]) for a in READY])
def test_ctrl_c_prints_one_line_and_exits_130(terminal: Any, args: tuple[str, ...]) -> None:
    term = terminal(*args)
    term.expect(READY[args], timeout=60)
    term.signal(signal.SIGINT)
    assert term.wait(60) == 130, term.text
    tail = term.text.split(READY[args], 1)[1]
    errors = [line for line in tail.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: interrupted"], term.text
    assert "Traceback" not in term.text


@pytest.mark.parametrize("args", list(READY), ids=[" ".join(a[:2]) for a in READY])
def test_sigterm_is_a_normal_stop(terminal: Any, args: tuple[str, ...]) -> None:
    term = terminal(*args)
    term.expect(READY[args], timeout=60)
    term.signal(signal.SIGTERM)
    assert term.wait(60) == 0, term.text
    assert "Error:" not in term.text and "Traceback" not in term.text
