"""Manage providers (``m`` on Providers): the stored (runtime) providers can be added, edited,
disabled, enabled and removed; the config file's are listed read-only.

Every change goes through ``AdminOps`` (``providers_add``, ``providers_edit``,
``providers_set_enabled``, ``providers_remove``): locally the same code as ``llmgw providers
add|edit|disable|enable|remove`` on the database, with ``--url`` the server's
``/admin/v1/providers``. A credential is typed into a password box, sent once and never shown:
the records only say ``has_secret``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from llmgw.tui.format import state_style
from llmgw.tui.screens.listing import ListingScreen
from llmgw.tui.widgets.dialogs import (
    Field,
    FormScreen,
    optional_list,
    optional_positive,
    optional_text,
    optional_url,
    required,
)

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from llmgw.admin.ops import AdminOps, Record

__all__ = ["ProviderAdminScreen", "config_providers"]

KINDS = (
    ("OpenAI-compatible (vLLM, Ollama, OpenAI...)", "openai"),
    ("GigaChat (Sber)", "gigachat"),
    ("YandexGPT (Yandex Cloud)", "yandexgpt"),
)
CONFIG = "config (read-only)"
READ_ONLY = (
    "is defined in the config file: read-only here, and it wins over a stored provider of the "
    "same name; change it in the config file"
)


def config_providers(prices: list[Record], stored: list[Record]) -> list[Record]:
    """The config file's providers, from the price table: ``providers_prices`` lists every
    provider requests can reach (locally and from a server), the config file's and the enabled
    stored ones, so the stored names are left out, except one the config file shadows (that
    name is the config file's). Each: the name, its kind and the models it offers."""
    others = {str(r["name"]) for r in stored if not r.get("shadowed_by_config")}
    out: dict[str, Record] = {}
    for row in prices:
        name = str(row["provider"])
        if name in others:
            continue
        rec = out.setdefault(
            name, {"name": name, "source": "config", "kind": row.get("kind"), "models": []}
        )
        if row.get("offered") and row["model"] not in rec["models"]:
            rec["models"].append(row["model"])
    return list(out.values())


def _name(text: str) -> str:
    name = required(text)
    if any(c in name for c in " /:"):
        raise ValueError("letters, digits, '-', '_' and '.' only (no spaces, '/' or ':')")
    return name


class ProviderAdminScreen(ListingScreen):
    """Every provider: stored ones with ``n`` new, ``e`` edit, ``d`` disable or enable, ``x``
    remove; config-file ones marked read-only. Escape goes back to Providers."""

    TITLE_TEXT = "Providers · manage"
    TABLE_ID = "rows"
    COLUMNS = ("name", "source", "state", "kind", "credential", "base URL", "models")
    """Most telling first: at 80 columns the base URL and the models run off to the right (the
    table scrolls; the pane below shows the highlighted provider whole)."""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "add", "New", id="providers-add", tooltip="Store a new provider"),
        Binding("e", "edit", "Edit", id="providers-edit", tooltip="Change a stored provider"),
        Binding(
            "d", "flip", "Disable/enable", id="providers-toggle",
            tooltip="Disable (running requests finish) or enable a stored provider",
        ),
        Binding(
            "x,delete", "remove", "Remove", id="providers-remove",
            tooltip="Remove a stored provider and its credential",
        ),
        Binding("a", "aliases", "Aliases", id="providers-aliases", tooltip="Manage aliases"),
        Binding("escape", "back", "Back", id="providers-manage-close"),
    ]  # fmt: skip

    def compose_body(self) -> ComposeResult:
        yield from super().compose_body()
        yield Static("", id="detail", markup=False)

    def fetch(self, ops: AdminOps) -> list[Record]:
        stored = ops.providers_stored()
        return config_providers(ops.providers_prices(), stored) + [
            {**r, "source": "database"} for r in stored
        ]

    def row(self, rec: Record) -> tuple[Any, ...]:
        colors = self.app.theme_variables
        models = ", ".join(rec.get("models") or []) or "(ask the provider)"
        if rec["source"] == "config":
            kind = rec.get("kind") or "-"
            return (rec["name"], Text(CONFIG, style="italic"), "-", kind, "-", "-", models)
        state = "enabled" if rec.get("enabled") else "disabled"
        if rec.get("shadowed_by_config"):
            state = "ignored"
        return (
            rec["name"],
            "database",
            Text(state, style=state_style("healthy" if state == "enabled" else "down", colors)),
            rec.get("kind") or "-",
            "sealed" if rec.get("has_secret") else "none",
            rec.get("base_url") or "(default)",
            models,
        )

    def render_rows(self) -> None:
        super().render_rows()
        self._detail(self.query_one("#rows", DataTable).cursor_row)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def _detail(self, index: int) -> None:
        pane = self.query_one("#detail", Static)
        rec = self.shown[index] if 0 <= index < len(self.shown) else None
        if rec is None:
            pane.update("No provider yet: n stores one.")
        elif rec["source"] == "config":
            models = ", ".join(rec.get("models") or []) or "-"
            pane.update(f"{rec['name']} {READ_ONLY}. Models: {models}.")
        elif rec.get("shadowed_by_config"):
            pane.update(
                f"{rec['name']}: the config file defines a provider of this name too; this "
                "stored one is ignored (the config file wins). x removes it."
            )
        else:
            keys = ("folder_id", "max_concurrency")
            extra = "".join(f"; {k}: {rec[k]}" for k in keys if rec.get(k) is not None)
            models = ", ".join(rec.get("models") or []) or "asked from the provider"
            secret = "sealed (never shown)" if rec.get("has_secret") else "none"
            verb = "disables" if rec.get("enabled") else "enables"
            pane.update(
                f"{rec['name']} ({rec.get('kind')}, stored, revision {rec.get('revision')}): "
                f"{rec.get('base_url') or 'the public default URL'}; models: {models}; "
                f"credential {secret}{extra}. e edits, d {verb}, x removes."
            )

    def status_text(self) -> str:
        stored = sum(1 for r in self.records if r["source"] == "database")
        return f"{stored} stored, {len(self.records) - stored} from the config file; " + (
            super().status_text()
        )

    def _stored(self) -> Record | None:
        """The highlighted provider if it is a stored one; a config one is refused in words."""
        rec = self.selected()
        if rec is None:
            self.notify("No provider selected", severity="warning")
            return None
        if rec["source"] == "config":
            self.notify(f"{rec['name']} {READ_ONLY}", severity="warning", markup=False)
            return None
        return rec

    def action_aliases(self) -> None:
        """Open the alias management screen."""
        from llmgw.tui.screens.alias_admin import AliasAdminScreen

        self.app.push_screen(AliasAdminScreen())

    def action_add(self) -> None:
        """A form for a new stored provider; gateways serve it within seconds."""
        fields = [
            Field("name", "Name (as in provider/model)", parse=_name, placeholder="vllm"),
            Field("kind", "Kind", choices=KINDS),
            Field("base_url", "Base URL (empty: the kind's public default)", parse=optional_url,
                  placeholder="http://vllm.internal:8000/v1"),
            Field("models", "Models (comma-separated; empty: ask the provider)",
                  parse=optional_list),
            Field("folder_id", "Folder ID (YandexGPT only)", parse=optional_text),
            Field("max_concurrency", "Most requests in flight (empty: 1,024)",
                  parse=optional_positive),
            Field("api_key", "API key or credential (stored sealed, never shown again)",
                  parse=optional_text, password=True),
        ]  # fmt: skip

        def added(values: dict[str, Any] | None) -> None:
            if values is None:
                return
            name, kind, secret = values.pop("name"), values.pop("kind"), values.pop("api_key")
            given = {k: v for k, v in values.items() if v is not None}
            self.mutate(
                f"Provider {name} added: running gateways serve it within seconds",
                lambda: self.ops.providers_add(name, kind, given, secret=secret),
            )

        self.app.push_screen(FormScreen("New provider", fields, submit="Add", compact=True), added)

    def action_edit(self) -> None:
        """Change the highlighted stored provider; an empty API key keeps the stored one."""
        rec = self._stored()
        if rec is None:
            return
        name = str(rec["name"])

        def text(key: str) -> str:
            value = rec.get(key)
            return ",".join(value) if isinstance(value, list) else str(value or "")

        fields = [
            Field("base_url", "Base URL (empty: the kind's public default)",
                  value=text("base_url"), parse=optional_url),
            Field("models", "Models (comma-separated; empty: ask the provider)",
                  value=text("models"), parse=optional_list),
            Field("folder_id", "Folder ID (YandexGPT only)", value=text("folder_id"),
                  parse=optional_text),
            Field("max_concurrency", "Most requests in flight (empty: 1,024)",
                  value=text("max_concurrency"), parse=optional_positive),
            Field("api_key", "New API key (empty: keep the stored one)", parse=optional_text,
                  password=True),
        ]  # fmt: skip

        def edited(values: dict[str, Any] | None) -> None:
            if values is None:
                return
            secret = values.pop("api_key")
            changed = {k: v for k, v in values.items() if v != (rec.get(k) or None)}
            if not changed and secret is None:
                self.notify(f"{name}: nothing changed")
                return
            self.mutate(
                f"Provider {name} changed: applied within seconds",
                lambda: self.ops.providers_edit(name, changed, secret=secret),
            )

        self.app.push_screen(
            FormScreen(f"Edit provider {name} ({rec.get('kind')})", fields, compact=True), edited
        )

    def action_flip(self) -> None:
        """Disable the highlighted stored provider (after a confirmation) or enable it."""
        rec = self._stored()
        if rec is None:
            return
        name = str(rec["name"])
        if not rec.get("enabled"):
            self.mutate(
                f"Provider {name} enabled", lambda: self.ops.providers_set_enabled(name, True)
            )
            return
        self.confirm_mutate(
            f"Disable provider {name}? Its models answer 404 within seconds; requests already "
            "running finish.",
            "Disable",
            f"Provider {name} disabled",
            lambda: self.ops.providers_set_enabled(name, False),
        )

    def action_remove(self) -> None:
        """Remove the highlighted stored provider and its credential, after a confirmation."""
        rec = self._stored()
        if rec is None:
            return
        name = str(rec["name"])
        self.confirm_mutate(
            f"Remove provider {name}? Its settings and credential are deleted; gateways stop "
            "routing to it within seconds (requests already running finish). This cannot be "
            "undone.",
            "Remove",
            f"Provider {name} removed",
            lambda: self.ops.providers_remove(name),
        )
