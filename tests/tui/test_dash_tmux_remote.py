"""``llmgw dash --url`` driven in tmux as a person would, against a real ``llmgw serve`` in front of
a real ``llmgw emulate openai``, with chat traffic flowing from another thread: the Requests
tail shows new requests as they come; a key created in the dashboard works at once and is
refused (401) right after it is revoked in the dashboard; stopping the emulator turns the
provider's breaker open on the Providers screen. The panes are written to
``docs/tui-capture-remote.txt``. Every wait is bounded; its own tmux server (``-L``); skipped
without tmux unless CI=true.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tmux import Tmux, pane_size

LLMGW = str(Path(sys.executable).with_name("llmgw"))
DOCS = Path(__file__).resolve().parents[2] / "docs"
EMU_KEY = "sk-emu-tmux-remote"
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{url}: the process exited {proc.returncode}"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {limit} s")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, object]]:
    """An emulator, a server in front of it (breaker opens after 2 failures), an admin key and a
    client key; everything stopped at the end."""
    emu_port, port = _port(), _port()
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n\n'
        "[usage]\nflush_interval = 0.05\n\n"
        "[routing]\nfailure_threshold = 2\ncooldown = 300\nmax_retries = 0\n\n"
        '[[providers]]\nname = "openai"\nkind = "openai"\napi_key_env = "EMU_KEY"\n'
        f'base_url = "http://127.0.0.1:{emu_port}/v1"\nmodels = ["gpt-4o-mini"]\n'
    )
    env = {**os.environ, "EMU_KEY": EMU_KEY}

    def llmgw(*args: str) -> str:
        done = subprocess.run(
            [LLMGW, "--config", str(cfg), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env=env,
        )
        return done.stdout

    llmgw("users", "create", "-e", "ops@example.com", "--role", "admin")
    admin = json.loads(llmgw("keys", "create", "-n", "ops", "--user", "ops@example.com", "--json"))
    client = json.loads(llmgw("keys", "create", "-n", "traffic", "--json"))
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for name, argv in (
            (
                "emulator",
                [LLMGW, "emulate", "openai", "--port", str(emu_port), "--api-key", EMU_KEY],
            ),
            ("serve", [LLMGW, "--config", str(cfg), "serve", "--port", str(port)]),
        ):
            log = (tmp_path / f"{name}.log").open("wb")
            logs.append(log)
            procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
        _wait_http(f"http://127.0.0.1:{emu_port}/v1/models", procs[0])
        _wait_http(f"http://127.0.0.1:{port}/healthz", procs[1])
        yield {
            "url": f"http://127.0.0.1:{port}",
            "admin": admin["key"],
            "client": client["key"],
            "emulator": procs[0],
            "home": os.environ["LLMGW_HOME"],
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log in logs:
            log.close()


def _chat(url: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(
        f"{url}/v1/chat/completions", json=CHAT, headers=headers, timeout=10
    ).status_code


@pytest.mark.slow
def test_dash_remote_in_tmux_with_traffic_flowing(stack: dict[str, object]) -> None:
    tmux = Tmux("remote")
    wait_for, keys = tmux.wait_for, tmux.keys
    url, admin, client = str(stack["url"]), str(stack["admin"]), str(stack["client"])
    captures: list[tuple[str, str]] = []

    stop = threading.Event()
    sent: list[int] = []

    def traffic() -> None:  # a client calling the gateway a few times a second, bounded
        while not stop.is_set() and len(sent) < 2000:
            try:
                sent.append(_chat(url, client))
            except httpx.HTTPError:
                sent.append(0)
            stop.wait(0.25)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    cmd = f"{LLMGW} dash --url {url} --interval 0.5; echo EXIT=$?; sleep 60"
    tmux.start(cmd, size=(140, 32), env={"LLMGW_HOME": str(stack["home"]), "LLMGW_TOKEN": admin})
    try:
        # Providers: live, healthy, requests counted.
        shown = wait_for(lambda s: "healthy" in s and "gpt-4o-mini" in s, "a healthy provider")
        assert pane_size(shown) == (140, 32), shown  # drawn at the pane's size, not 80x24
        captures.append(("Providers (1), live, traffic flowing", shown))

        # Requests: the tail grows while traffic flows.
        keys("2")

        def count(pane: str) -> int:
            found = re.search(r"(\d+) of (\d+) requests", pane)
            return int(found.group(2)) if found else -1

        first = wait_for(lambda s: count(s) >= 2 and " 200 " in s, "requests in the tail")
        later = wait_for(lambda s: count(s) > count(first), "a new request", 30)
        captures.append(("Requests (2): new requests arrive at the top", later))

        # Keys: create one in a form, read the secret once, use it, revoke it, refused.
        keys("4")
        wait_for("traffic", "the keys list")
        keys("n")
        # Its fields, not its title: in a short pane the form scrolls and the title is above it.
        wait_for("Tokens per minute (empty: no limit)", "the new-key form")
        keys("-l", "tmux-made")
        keys("Enter")
        shown = wait_for(lambda s: re.search(r"llmgw_[A-Za-z0-9_-]{40,}", s) is not None, "secret")
        match = re.search(r"llmgw_[A-Za-z0-9_-]{40,}", shown)
        assert match is not None
        secret = match.group(0)
        captures.append(
            ("Keys (4): the secret of a key made in the dashboard, shown once",
             shown.replace(secret, secret[:12] + "…(redacted in this capture)")),
        )  # fmt: skip
        assert _chat(url, secret) == 200
        keys("Enter")  # close the secret: it is never shown again
        wait_for(lambda s: secret not in s and "tmux-made" in s, "the keys list again")
        keys("/")
        wait_for("filter…", "the filter box")
        keys("-l", "tmux-made")
        wait_for(
            lambda s: re.search(r"\b1 of [0-9]+; filter: tmux-made;", s) is not None,
            "the filtered key",
        )
        keys("Enter")
        # The box goes away once the table has the focus; a key sent before that would still be
        # typed into the box (seen in CI: "tmux-maded").
        wait_for(lambda s: re.search(r"▊\s+tmux-made", s) is None, "the table focused")
        keys("d")
        shown = wait_for("Revoke key", "the revoke confirmation")
        assert "(tmux-made)" in shown, shown  # never the admin's own key
        keys("y")
        wait_for(lambda s: re.search(r"\b0 of [0-9]+;", s) is not None, "the key leaving")
        assert _chat(url, secret) == 401  # refused at once: the server dropped its cached copy
        keys("Escape")

        # Providers: the emulator stops; the breaker opens.
        emulator = stack["emulator"]
        assert isinstance(emulator, subprocess.Popen)
        emulator.terminate()
        emulator.wait(10)
        keys("1")
        shown = wait_for(lambda s: " open " in s, "the breaker opening")
        captures.append(("Providers (1) after the emulator stopped: breaker open", shown))
        assert 503 in sent or 502 in sent or 504 in sent
        keys("q")
        wait_for("EXIT=0", "a clean exit", 30)
    finally:
        stop.set()
        sender.join(15)
        tmux.close()
    out = [
        "# llmgw dash --url against a real llmgw serve and llmgw emulate openai (tmux 140x32),\n"
        "# traffic flowing; captured with tmux capture-pane by tests/tui/test_dash_tmux_remote.py\n"
    ]
    for title, pane in captures:
        out.append(f"\n## {title}\n\n{pane.rstrip()}\n")
    text = "".join(out)
    assert admin not in text and client not in text
    (DOCS / "tui-capture-remote.txt").write_text(text)
