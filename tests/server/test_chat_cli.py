"""``llmgw chat`` against a real ``llmgw serve`` in front of the real emulators: one-shot (argument,
stdin, ``--json``, ``--conversation``), errors as one ``Error:`` line and a hint, and the
interactive session driven in tmux as a person would (streaming, ``/model`` switching provider
mid-conversation, Ctrl-C cancelling an answer but not the session, ``/history``, ``/save``,
Ctrl-D). Every wait is bounded; its own tmux server (``-L``); skipped without tmux unless
CI=true."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.tmux import need_tmux as _need_tmux
from tests.tmux import tmux_env

from .test_conversations import admin, ann, emulators, gateway  # noqa: F401

LLMGW = str(Path(sys.executable).with_name("llmgw"))


def _key(ann: dict[str, str]) -> str:  # noqa: F811
    return ann["Authorization"].removeprefix("Bearer ")


def test_one_shot_streams_the_answer_and_continues_a_conversation(
    gateway: Any,  # noqa: F811
    ann: dict[str, str],  # noqa: F811
    cli: Callable[..., Any],
) -> None:
    base = ("--url", gateway.url, "--token", _key(ann), "chat")
    r = cli(*base, "-m", "local/gpt-4o-mini", "hello there")
    assert (r.exit_code, r.stdout) == (0, "Echo: hello there\n"), r.stderr
    r = cli(*base, "-m", "local/gpt-4o-mini", "--json", "remember me")
    assert r.exit_code == 0, r.stderr
    answer = json.loads(r.stdout)
    cid = answer["conversation"]["id"]
    assert answer["choices"][0]["message"]["content"] == "Echo: remember me"
    r = cli(*base, "--conversation", cid, "-m", "gigachat/GigaChat-2", "and now?")
    assert r.exit_code == 0 and "GigaChat emulator reply to: and now?" in r.stdout


def test_one_shot_reads_stdin(gateway: Any, ann: dict[str, str], home: Path) -> None:  # noqa: F811
    env = {**os.environ, "LLMGW_HOME": str(home), "LLMGW_TOKEN": _key(ann)}
    proc = subprocess.run(
        [LLMGW, "--url", gateway.url, "chat", "-m", "local/gpt-4o-mini"],
        input="a question from a pipe\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Echo: a question from a pipe\n"


def test_errors_are_one_line_with_a_hint(
    gateway: Any,  # noqa: F811
    ann: dict[str, str],  # noqa: F811
    cli: Callable[..., Any],
) -> None:
    r = cli("--url", gateway.url, "--token", _key(ann), "chat", "no model given")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0] == "Error: name a model" and "hint:" in r.stderr
    r = cli("--url", gateway.url, "--token", _key(ann), "chat", "-m", "nope/x", "hi")
    assert r.exit_code != 0 and r.stderr.startswith("Error: ")
    r = cli("--url", gateway.url, "--token", "llmgw_wrong" + "x" * 30, "chat", "-m", "a/b", "hi")
    assert r.exit_code == 6 and _key(ann) not in r.stderr


@pytest.mark.slow
def test_chat_in_tmux_as_a_person_would(
    gateway: Any,  # noqa: F811
    emulators: dict[str, Any],  # noqa: F811
    ann: dict[str, str],  # noqa: F811
    home: Path,
    tmp_path: Path,
) -> None:
    tmux = _need_tmux()
    sock = f"llmgw-chat-{os.getpid()}"
    t = [tmux, "-L", sock]
    env = {**tmux_env(), "LLMGW_HOME": str(home), "LLMGW_TOKEN": _key(ann)}
    command = f"{LLMGW} --url {gateway.url} chat -m local/gpt-4o-mini; echo EXITED=$?; sleep 30"
    subprocess.run(
        [*t, "new-session", "-d", "-s", "chat", "-x", "120", "-y", "40", command],
        check=True,
        env=env,
        timeout=10,
    )

    def screen() -> str:
        return subprocess.run(
            [*t, "capture-pane", "-p", "-t", "chat", "-S", "-200"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout  # fmt: skip

    def wait_for(text: str, what: str, limit: float = 30) -> str:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            shown = screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{what} never showed; the pane:\n{screen()}")

    def keys(*k: str) -> None:
        subprocess.run([*t, "send-keys", "-t", "chat", *k], check=True, timeout=10)

    try:
        wait_for("you>", "the prompt")
        keys("-l", "hello from tmux")
        keys("Enter")
        wait_for("Echo: hello from tmux", "the streamed answer")
        keys("-l", "/model gigachat/GigaChat-2")
        keys("Enter")
        wait_for("model: gigachat/GigaChat-2", "the model switch")
        keys("-l", "who answers now")
        keys("Enter")
        wait_for("GigaChat emulator reply to: who answers now", "GigaChat's answer")
        # the answer GigaChat got carried the first turn: the context went with the switch
        saw = json.dumps(emulators["gigachat"].app.state.emulator.requests[-1]["messages"])
        assert "hello from tmux" in saw
        # a slow answer, cancelled with Ctrl-C: the session stays
        keys("-l", "/model local/gpt-4o-mini")
        keys("Enter")
        emulators["local"].app.state.emulator.chunk_delay = 0.5
        keys("-l", "a long answer " + "word " * 30)
        keys("Enter")
        wait_for("Echo: a long", "the first pieces of the slow answer")
        keys("C-c")
        wait_for("[cancelled]", "the cancellation")
        emulators["local"].app.state.emulator.chunk_delay = 0.0
        keys("-l", "still here?")
        keys("Enter")
        wait_for("Echo: still here?", "an answer after the cancel")
        keys("-l", "/history")
        keys("Enter")
        shown = wait_for("assistant: Echo: still here?", "the history")
        assert "a long answer" not in shown.split("/history", 1)[1]  # the cancelled turn: not kept
        saved = tmp_path / "chat.md"
        keys("-l", f"/save {saved}")
        keys("Enter")
        wait_for(f"saved to {saved}", "the save")
        assert "## assistant (gigachat/GigaChat-2)" in saved.read_text(encoding="utf-8")
        keys("C-d")
        wait_for("EXITED=0", "a clean exit")
        assert (home / "chat_history").read_text(encoding="utf-8").count("hello from tmux") == 1
        (Path(__file__).parents[2] / "docs" / "chat-capture.txt").write_text(
            "# llmgw chat against a real llmgw serve and the emulators (tmux 120x40), captured\n"
            "# by tests/server/test_chat_cli.py (its port and temporary path replaced)\n"
            + screen().replace(gateway.url, "http://127.0.0.1:8080").replace(str(saved), "chat.md"),
            encoding="utf-8",
        )
    finally:
        subprocess.run([*t, "kill-server"], check=False, timeout=10)
