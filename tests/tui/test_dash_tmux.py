"""``llmgw dash`` driven in tmux as a person would, against a real local SQLite database.

Its own tmux server (``-L``), killed at the end; skipped without tmux unless CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tmux import Tmux, pane_size

LLMGW = str(Path(sys.executable).with_name("llmgw"))


def _llmgw(*args: str) -> str:
    proc = subprocess.run([LLMGW, *args], capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout


@pytest.mark.slow
def test_dash_in_tmux_on_a_local_database(tmp_path: Path) -> None:
    home = os.environ["LLMGW_HOME"]  # the autouse fixture's tmp LLMGW_HOME
    _llmgw("users", "create", "-e", "ana@example.com", "--role", "admin")
    _llmgw("keys", "create", "-n", "tmux-key", "--user", "ana@example.com")
    pane = Tmux()
    wait_for, keys = pane.wait_for, pane.keys
    pane.start(f"{LLMGW} dash --interval 0.5; echo EXIT=$?; sleep 60", size=(100, 30),
               env={"LLMGW_HOME": home})  # fmt: skip
    try:
        shown = wait_for("needs a server")
        assert "Providers" in shown and "local database" in shown
        assert pane_size(shown) == (100, 30), shown  # the screen fills the pane
        keys("4")
        shown = wait_for("tmux-key")
        assert "ana@example.com" in shown and "active" in shown
        keys("d")
        wait_for("Revoke key")
        keys("n")  # a person changes their mind: nothing happens
        pane.wait_gone("Revoke key")  # the dialog closes (bounded: a loaded machine is slow)
        assert json.loads(_llmgw("keys", "list", "--json"))[0]["status"] == "active"
        keys("d")
        wait_for("Revoke key")
        keys("y")
        shown = wait_for("0 of 0")  # the revoked key leaves the live list
        assert "tmux-key" not in shown
        rows = json.loads(_llmgw("keys", "list", "--all", "--json"))
        assert rows[0]["status"] == "revoked"
        keys("6")
        shown = wait_for("keys.revoke")
        assert "tui" in shown, "the audit log says the dashboard did it"
        keys("q")
        wait_for("EXIT=0", timeout=30)
    finally:
        pane.close()


@pytest.mark.slow
def test_budgets_view_at_80x24_on_a_local_database(tmp_path: Path) -> None:
    """``B`` on Usage at 80x24 (issue 13) on a real SQLite database: the budget made with
    ``llmgw budgets set`` is on screen with its share used, spend and amount, the pane under
    the table shows its hard stop and reset, the hint says how to close it; Escape closes."""
    home = os.environ["LLMGW_HOME"]
    key = json.loads(_llmgw("keys", "create", "-n", "batch", "--json"))
    _llmgw("budgets", "set", "12.50", "--key", key["id"], "--period", "day", "--currency",
           "USD", "--hard-stop")  # fmt: skip
    pane = Tmux().start(f"{LLMGW} dash --interval 0.5; echo EXIT=$?; sleep 60", size=(80, 24),
                        env={"LLMGW_HOME": home})  # fmt: skip
    try:
        pane.wait_for("needs a server")
        pane.keys("3")
        pane.wait_for("breakdown")
        pane.keys("B")
        shown = pane.wait_for("Budgets (this period)")
        shown = pane.wait_for("12.50 USD")
        assert pane_size(shown) == (80, 24), shown
        row = next(line for line in shown.splitlines() if "key batch" in line)
        assert "0.0%" in row and "0.00" in row and "12.50 USD" in row, row
        assert "at 100%: stop (402 budget_exceeded)" in shown
        assert "Escape closes" in shown, "the hint is on the 80x24 screen"
        pane.keys("Escape")
        shown = pane.wait_gone("Budgets (this period)")
        assert "breakdown" in shown
        pane.keys("q")
        pane.wait_for("EXIT=0", timeout=30)
    finally:
        pane.close()


@pytest.mark.slow
def test_analytics_view_at_80x24_on_a_local_database(tmp_path: Path) -> None:
    """``A`` on Usage at 80x24 (issue 13) on a real SQLite database holding the seeded month
    (tests/usage_month.py), for a custom period typed into the form (November 2026): the
    rankings per currency first, the hint under them; End scrolls to the recommendations with
    their savings; Escape closes."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade
    from tests import usage_month

    home = Path(os.environ["LLMGW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(usage_month.config_toml())
    engine = make_engine(f"sqlite:///{home / 'llmgw.db'}")
    upgrade(engine)
    usage_month.seed(engine)
    engine.dispose()
    pane = Tmux().start(f"{LLMGW} dash --interval 0.5; echo EXIT=$?; sleep 60", size=(80, 24),
                        env={"LLMGW_HOME": str(home)})  # fmt: skip
    try:
        pane.wait_for("needs a server")
        pane.keys("3")
        pane.wait_for("breakdown")
        pane.keys("c")
        pane.wait_for("Custom period")
        for keys in ("End", "C-u", "2026-11-01", "Tab", "2026-12-01"):
            pane.keys(keys)  # one at a time, as typed: a burst would reach one box
            time.sleep(0.3)
        pane.wait_for("2026-12-01  ")
        pane.keys("Enter")
        pane.wait_gone("Until (empty: now)")
        pane.keys("A")
        shown = pane.wait_for("Analytics (11-01 00:00 … 12-01 00:00)")
        shown = pane.wait_for("Top keys by cost")
        assert pane_size(shown) == (80, 24), shown
        row = next(line for line in shown.splitlines() if "RUB   1" in line)
        assert "summariser llmgw_SUMM02" in row, shown
        assert "Escape closes" in shown, "the hint is on the 80x24 screen"
        pane.keys("End")
        shown = pane.wait_for("max tokens")  # the last recommendation, scrolled into view
        assert "190.16 RUB" in shown and "idle key" in shown, shown
        pane.keys("Escape")
        shown = pane.wait_gone("Escape closes")
        assert "breakdown" in shown
        pane.keys("q")
        pane.wait_for("EXIT=0", timeout=30)
    finally:
        pane.close()


@pytest.mark.slow
def test_providers_managed_at_80x24_on_a_local_database(tmp_path: Path) -> None:
    """``m`` on Providers at 80x24 (issue 16) on a real SQLite database, typed as a person
    would: the config file's provider read-only, a provider added in the form (Tab from box to
    box, the key typed into the password box and never on screen), disabled after the
    confirmation, removed; ``llmgw providers stored`` agrees at each step."""
    home = os.environ["LLMGW_HOME"]
    secret = "sk-tmux-typed-credential-0123456789"
    Path(home).mkdir(parents=True, exist_ok=True)
    Path(home, "config.toml").write_text(
        '[[providers]]\nname = "openai"\nkind = "openai"\nmodels = ["gpt-4o-mini"]\n'
    )

    def stored() -> list[dict[str, object]]:
        return list(json.loads(_llmgw("providers", "stored", "--json")))

    pane = Tmux().start(f"{LLMGW} dash --interval 0.5; echo EXIT=$?; sleep 60", size=(80, 24),
                        env={"LLMGW_HOME": home})  # fmt: skip
    try:
        pane.wait_for("needs a server")
        pane.keys("m")
        shown = pane.wait_for("config (read-only)")
        assert pane_size(shown) == (80, 24), shown
        pane.keys("n")
        pane.wait_for("New provider")
        for keys in ("vllm", "Tab", "Tab", "http://127.0.0.1:9/v1", "Tab", "llama-3.1-8b",
                     "Tab", "Tab", "Tab", secret):  # fmt: skip
            pane.keys(keys)  # one at a time, as typed: a burst would reach one box
            time.sleep(0.4)
        shown = pane.wait_for("••••")
        assert secret not in shown and secret[:8] not in shown
        pane.keys("Enter")
        shown = pane.wait_for("2 of 2")
        assert "vllm" in shown and "enabled" in shown and secret not in shown
        assert [(p["name"], p["has_secret"]) for p in stored()] == [("vllm", True)]
        pane.keys("Down", "d")
        pane.wait_for("Disable provider vllm")
        pane.keys("y")
        pane.wait_for("disabled")
        assert stored()[0]["enabled"] is False
        pane.keys("x")
        pane.wait_for("Remove provider vllm")
        pane.keys("y")
        pane.wait_for("1 of 1")
        assert stored() == []
        pane.keys("Escape")  # alone: Escape then q in one burst reads as alt+q
        pane.wait_for("t Test")
        pane.keys("q")
        pane.wait_for("EXIT=0", timeout=30)
    finally:
        pane.close()
