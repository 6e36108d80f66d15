"""``[tui] keys``: bindings are changed by id from the config; an unknown id is exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from llmgw.config import TuiSettings
from llmgw.errors import ConfigError
from llmgw.tui.keymap import binding_ids, check_keymap
from llmgw.tui.screens.chat import ChatScreen


def test_every_binding_has_an_id() -> None:
    from textual.binding import Binding

    from llmgw.tui.app import LlmgwApp

    for owner in (LlmgwApp, *LlmgwApp.MODES.values()):
        for binding in getattr(owner, "BINDINGS", []):
            assert isinstance(binding, Binding) and binding.id, (owner, binding)
    ids = binding_ids()
    assert {"quit", "help", "screen-chat", "filter", "filter-clear", "chat-stop",
            "usage-period", "keys-create", "providers-test"} <= ids  # fmt: skip


def test_an_unknown_id_is_a_config_error_listing_the_ids() -> None:
    with pytest.raises(ConfigError) as info:
        check_keymap({"quit": "ctrl+q", "qiut": "x"})
    assert "no binding has the id 'qiut'" in str(info.value)
    assert "screen-chat" in (info.value.hint or "")
    assert check_keymap({"quit": "ctrl+q"}) == {"quit": "ctrl+q"}


def test_empty_keys_are_refused_by_the_settings() -> None:
    with pytest.raises(ValidationError, match="give one or more keys"):
        TuiSettings(keys={"quit": " "})
    with pytest.raises(ValidationError):
        TuiSettings(keys={"quit": "ctrl+q,"})


async def test_a_keymap_moves_bindings(make_app, ops, wait):
    app = make_app(ops, keymap={"screen-chat": "c", "quit": "ctrl+q"})
    async with app.run_test(size=(100, 30)) as pilot:
        await wait(pilot)
        await pilot.press("q")  # no longer quits
        await wait(pilot)
        assert app.is_running
        await pilot.press("c")
        await wait(pilot)
        assert isinstance(app.screen, ChatScreen)
        await pilot.press("escape", "ctrl+q")
        await wait(pilot)
    assert app.return_code == 0


def test_dash_refuses_an_unknown_binding_id_with_exit_2(cli, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "config.toml"
    cfg.write_text('[tui.keys]\nquit = "ctrl+q"\nnot-a-binding = "x"\n')
    res = cli("dash")
    assert res.exit_code == 2
    assert res.stderr.splitlines()[0] == "Error: [tui] keys: no binding has the id 'not-a-binding'"
