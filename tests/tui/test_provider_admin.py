"""Managing stored providers in ``llmgw dash`` (``m`` on Providers, issue 16 part 2), driven as a
person would: locally on a real database (SQLite and PostgreSQL) through ``LocalAdmin`` (the
code of ``llmgw providers add`` etc.), the credential typed into a password box and never
shown; the config file's provider listed read-only and refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from textual.widgets import DataTable, Input, Select

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.config import load_settings
from llmgw.tui import app as app_module
from llmgw.tui.app import LlmgwApp
from llmgw.tui.screens.provider_admin import ProviderAdminScreen
from llmgw.tui.widgets.dialogs import ConfirmScreen, FormScreen
from tests.tui.conftest import clock, settle
from tests.tui.test_flows import cells, type_text

SECRET = "sk-typed-into-the-dashboard-0123456789abcdef"
CONFIG = (
    '[[providers]]\nname = "openai"\nkind = "openai"\nmodels = ["gpt-4o-mini", "gpt-4o"]\n\n'
    '[aliases]\nsmart = ["openai/gpt-4o"]\n'
)


class PatientApp(LlmgwApp):
    """Notifications that outlast a slow step on a loaded machine (read after it)."""

    NOTIFICATION_TIMEOUT = 3600
    CSS_PATH = str(Path(app_module.__file__).with_name("llmgw.tcss"))


def local_app(engine: Engine, home: Path) -> tuple[LlmgwApp, LocalAdmin]:
    """The dashboard in local mode as ``llmgw dash`` wires it: ``LocalAdmin`` with the settings
    of a config file that defines the provider ``openai``."""
    cfg = home / "config.toml"
    home.mkdir(parents=True, exist_ok=True)
    cfg.write_text(CONFIG)
    settings = load_settings(cfg).settings
    ops = LocalAdmin(engine, Actor.local(), source="tui", settings=settings)
    return PatientApp(ops, settings, clock=clock, poll_interval=3600), ops


def shown(app: Any) -> str:
    """Everything on the screen as a person sees it (masked password boxes included)."""
    return str(app.export_screenshot())


async def fill(pilot: Any, values: dict[str, str]) -> None:
    """Type into the open form's boxes, one after the other, as a person would."""
    form = pilot.app.screen
    assert isinstance(form, FormScreen)
    for name, text in values.items():
        box = form.query_one(f"#f-{name}", Input)
        box.focus()
        await pilot.pause()
        box.value = ""
        await type_text(pilot, text)


async def test_add_edit_disable_remove_a_provider_locally(engine: Engine, home: Path) -> None:
    app, ops = local_app(engine, home)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, ProviderAdminScreen)
        assert cells(app) == [
            ["openai", "config (read-only)", "-", "openai", "-", "-", "gpt-4o, gpt-4o-mini"]
        ], "the config file's provider, marked read-only"
        await pilot.press("e")  # a config-file provider cannot be changed here
        await settle(pilot)
        assert not isinstance(app.screen, FormScreen)
        assert any("config file" in str(n.message) for n in app._notifications)

        await pilot.press("n")
        await settle(pilot)
        await fill(pilot, {"name": "vllm"})
        form = app.screen
        kind = form.query_one("#f-kind", Select)
        assert kind.value == "openai", "OpenAI-compatible is the first kind"
        kind.focus()
        await pilot.press("enter", "down", "down", "enter")  # open the list: YandexGPT
        await pilot.pause()
        assert kind.value == "yandexgpt"
        kind.focus()
        await pilot.press("enter", "up", "up", "enter")  # a person changes their mind
        await pilot.pause()
        assert kind.value == "openai"
        await fill(pilot, {"base_url": "ftp://nowhere"})
        await fill(pilot, {"models": "llama-3.1-8b, qwen", "api_key": SECRET})
        assert SECRET not in shown(app), "the password box shows dots"
        await pilot.press("enter")  # the URL is refused in the form
        await settle(pilot)
        assert isinstance(app.screen, FormScreen)
        assert "not an http:// or https:// URL" in str(form.query_one("#form-error").render())
        await fill(pilot, {"base_url": "http://127.0.0.1:9/v1"})
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ProviderAdminScreen)
        stored = ops.providers_stored()
        assert [(r["name"], r["kind"], r["models"], r["has_secret"]) for r in stored] == [
            ("vllm", "openai", ["llama-3.1-8b", "qwen"], True)
        ]
        assert cells(app)[1] == [
            "vllm", "database", "enabled", "openai", "sealed", "http://127.0.0.1:9/v1",
            "llama-3.1-8b, qwen",
        ]  # fmt: skip
        assert SECRET not in shown(app)

        await pilot.press("down", "e")
        await settle(pilot)
        edit = app.screen
        assert isinstance(edit, FormScreen)
        assert edit.query_one("#f-models", Input).value == "llama-3.1-8b,qwen"
        assert edit.query_one("#f-api_key", Input).value == "", "never put back into a form"
        await fill(pilot, {"models": "qwen"})
        await pilot.press("enter")
        await settle(pilot)
        assert ops.providers_stored()[0]["models"] == ["qwen"]
        assert ops.providers_stored()[0]["has_secret"] is True, "an empty key keeps the old"

        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # nothing happens
        await settle(pilot)
        assert ops.providers_stored()[0]["enabled"] is True
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert ops.providers_stored()[0]["enabled"] is False
        assert cells(app)[1][2] == "disabled"
        await pilot.press("d")  # enabling needs no confirmation
        await settle(pilot)
        assert ops.providers_stored()[0]["enabled"] is True

        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert ops.providers_stored() == []
        assert [c[0] for c in cells(app)] == ["openai"]
        await pilot.press("escape")
        await settle(pilot)
        assert type(app.screen).__name__ == "ProvidersScreen"

    with engine.connect() as conn:
        audit = conn.execute(sa.text("SELECT action, source, detail FROM audit_log")).all()
    assert [(a, s) for a, s, _ in audit if a.startswith("providers.")] == [
        ("providers.add", "tui"), ("providers.edit", "tui"), ("providers.disable", "tui"),
        ("providers.enable", "tui"), ("providers.remove", "tui"),
    ]  # fmt: skip
    assert SECRET not in str(audit)


async def test_a_config_file_name_is_refused_in_words(engine: Engine, home: Path) -> None:
    """Adding a provider named like the config file's: the server's refusal is shown."""
    app, ops = local_app(engine, home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await fill(pilot, {"name": "openai", "api_key": SECRET})
        await pilot.press("enter")
        await settle(pilot)
        messages = [str(n.message) for n in app._notifications]
        assert any("defined in the config file" in m for m in messages), messages
        assert SECRET not in " ".join(messages)
        assert ops.providers_stored() == []
        assert isinstance(app.screen, ProviderAdminScreen)
        table = app.screen.query_one("#rows", DataTable)
        assert table.row_count == 1


async def test_aliases_are_added_edited_and_removed_locally(engine: Engine, home: Path) -> None:
    """``a`` on the management screen: the config file's alias read-only, a stored one added in
    the form (a weight with ``*N``; a target without a provider refused in the form), edited
    and removed after a confirmation, each change in the audit log with source ``tui``."""
    from llmgw.tui.screens.alias_admin import AliasAdminScreen

    app, ops = local_app(engine, home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AliasAdminScreen)
        assert cells(app) == [["smart", "config (read-only)", "openai/gpt-4o", "-"]]
        await pilot.press("x")  # the config file's alias cannot be removed here
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("config file" in str(n.message) for n in app._notifications)
        await pilot.press("n")
        await settle(pilot)
        await fill(pilot, {"name": "fast", "targets": "gpt-4o-mini"})
        await pilot.press("enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, FormScreen), "a target without its provider is refused"
        assert "provider/model" in str(form.query_one("#form-error").render())
        await fill(pilot, {"targets": "openai/gpt-4o-mini*3, openai/gpt-4o"})
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AliasAdminScreen)
        stored = [a for a in ops.aliases_list() if a["source"] == "database"]
        assert [(a["name"], a["targets"]) for a in stored] == [
            ("fast", [{"target": "openai/gpt-4o-mini", "weight": 3.0}, "openai/gpt-4o"])
        ]
        assert cells(app)[1][:3] == ["fast", "database", "openai/gpt-4o-mini*3, openai/gpt-4o"]
        await pilot.press("down", "e")
        await settle(pilot)
        edit = app.screen
        assert isinstance(edit, FormScreen)
        assert edit.query_one("#f-targets", Input).value == "openai/gpt-4o-mini*3, openai/gpt-4o"
        await fill(pilot, {"targets": "openai/gpt-4o"})
        await pilot.press("enter")
        await settle(pilot)
        stored = [a for a in ops.aliases_list() if a["source"] == "database"]
        assert stored[0]["targets"] == ["openai/gpt-4o"]
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert [a["name"] for a in ops.aliases_list()] == ["smart"]
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ProviderAdminScreen)
    with engine.connect() as conn:
        audit = conn.execute(sa.text("SELECT action, source FROM audit_log")).all()
    assert [tuple(r) for r in audit if r[0].startswith("aliases.")] == [
        ("aliases.add", "tui"), ("aliases.edit", "tui"), ("aliases.remove", "tui")
    ]  # fmt: skip
