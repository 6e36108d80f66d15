"""``llmgw dash --url`` in tmux, the Chat screen driven with the keyboard as a person would, at
80x24 and at 140x36, against the real ``llmgw serve`` and emulators of ``test_chat_live.py``:
the first turn goes to the provider that is down (an error box in place), the provider picker
switches to openai, an answer streams, the settings form sets a system prompt and a temperature,
the conversation is renamed, a second one is started, and the first is deleted after its
confirmation. The panes are written to ``docs/tui-capture-chat.txt``. Bounded waits; its own
tmux server (``-L``); skipped without tmux unless CI=true.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.tmux import Tmux, pane_size
from tests.tui.test_chat_live import Gateway, gw  # noqa: F401 - the module's gateway fixture
from tests.tui.test_live_server import LLMGW

DOCS = Path(__file__).resolve().parents[2] / "docs"
CAPTURES: dict[str, list[tuple[str, str]]] = {}

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("size", [(80, 24), (140, 36)], ids=["80x24", "140x36"])
def test_chat_screen_in_tmux(gw: Gateway, size: tuple[int, int], tmp_path: Path) -> None:  # noqa: F811
    cols, rows = size
    key = gw.key(f"tmux{cols}@example.com")
    tmux = Tmux("chat")
    wait_for = tmux.wait_for
    captures = CAPTURES.setdefault(f"{cols}x{rows}", [])

    def keys(*k: str) -> None:
        tmux.keys(*k)
        time.sleep(0.15)  # one key's effect drawn before the next (tmux delivers at once)

    def prompt(text: str) -> None:
        """Type into the prompt and send; Escape first if the text did not land there."""
        for _ in range(3):
            keys("-l", text)
            try:
                wait_for(lambda s: f"▊  {text}" in s, "the typed text", 5)
                break
            except AssertionError:
                keys("Escape")
        keys("Enter")

    cmd = f"{LLMGW} dash --url {gw.url} --interval 5; echo EXIT=$?; sleep 60"
    tmux.start(cmd, size=size, env={"LLMGW_HOME": str(tmp_path), "LLMGW_TOKEN": key})
    try:
        wait_for("Providers", "the dashboard")
        keys("7")
        shown = wait_for(lambda s: "Conversations" in s and "gone/m" in s, "the chat screen")
        assert pane_size(shown) == (cols, rows), shown
        # The first provider (gone) is down: the error is in the pane, not only a toast.
        keys("-l", "are you there")
        keys("Enter")
        shown = wait_for("Provider unavailable", "the error box")
        assert "→ try again, or pick another provider or model" in shown
        captures.append(("a turn to a provider that is down: the error in place", shown))
        # The provider picker (ctrl+g), Enter opens it, Down (openai), Enter; Escape: the prompt.
        keys("C-g")
        keys("Enter")
        # Its options on screen first: keys sent while it opens are lost on a loaded machine.
        wait_for(lambda s: "openai" in s, "the provider list open")
        keys("Down")
        keys("Enter")
        wait_for("openai/gpt-4o ", "openai's first model picked")
        time.sleep(0.5)  # the picker's overlay closes before the next key
        keys("Escape")
        prompt("hello from tmux")
        shown = wait_for(lambda s: "Echo: hello from tmux" in s and " out tokens" in s, "answer")
        captures.append(("openai picked, an answer streamed; tokens and latency below", shown))
        # Settings: the system prompt, then the temperature.
        keys("C-o")
        # its title, or (when the form opens scrolled to its first box, as it did once under CI)
        # the empty system prompt and temperature boxes, shown with their placeholders
        wait_for(
            lambda s: "Generation settings" in s or ("none" in s and "model default" in s),
            "the settings form",
        )
        keys("-l", "Be brief.")
        wait_for("Be brief.", "the system prompt typed")  # then Tab: a loaded machine lags
        keys("Tab")
        keys("-l", "0.3")
        keys("Enter")
        shown = wait_for("system: Be brief. · temperature 0.3", "the settings line")
        keys("-l", "again, briefly")
        keys("Enter")
        wait_for("Echo: again, briefly", "the second answer")
        # Rename the conversation on screen.
        keys("C-t")
        wait_for("Rename the conversation", "the rename form")
        keys("C-u")
        keys("-l", "tmux chat")
        keys("Enter")
        shown = wait_for("● tmux chat", "the new title in the list")
        captures.append(("settings set (ctrl+o), renamed (ctrl+t)", shown))
        # A second conversation, then delete the first from the list after the question.
        keys("C-n")
        keys("-l", "second one")
        keys("Enter")
        wait_for(lambda s: "Echo: second one" in s and "● second one" in s, "the second")
        keys("C-l")  # the list
        keys("End")  # the oldest: the renamed one
        keys("d")
        shown = wait_for("Delete the conversation", "the confirmation")
        assert "'tmux chat'" in shown and "4 messages" in shown, shown
        captures.append(("d on the list: asked first", shown))
        keys("y")
        shown = wait_for(lambda s: "tmux chat" not in s and "deleted" in s, "the deletion")
        captures.append(("deleted; the second conversation stays", shown))
        keys("C-q")  # Textual's quit key, wherever the focus is
        wait_for("EXIT=0", "a clean exit", 30)
    finally:
        tmux.close()
    text = "\n".join(pane for _title, pane in captures)
    assert key not in text and "llmgw_" not in text, "no key in what the screen showed"
    if len(CAPTURES) == 2 and all(CAPTURES.values()):
        out = [
            "# llmgw dash --url, the Chat screen, against a real llmgw serve and llmgw emulate\n"
            "# openai; captured with tmux capture-pane by tests/tui/test_dash_tmux_chat.py\n"
        ]
        for where, panes in CAPTURES.items():
            for title, pane in panes:
                out.append(f"\n## {where}: {title}\n\n{pane.rstrip()}\n")
        (DOCS / "tui-capture-chat.txt").write_text("".join(out))
