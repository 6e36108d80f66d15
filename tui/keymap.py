"""The binding ids of ``llmgw dash`` and the check of a ``[tui] keys`` keymap against them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from textual.binding import Binding, BindingType

from llmgw.errors import ConfigError

__all__ = ["binding_ids", "check_keymap"]


def _ids(bindings: Iterable[BindingType]) -> set[str]:
    return {b.id for b in bindings if isinstance(b, Binding) and b.id}


def binding_ids() -> set[str]:
    """Every binding id of the app, its screens and its dialogs (what ``[tui] keys`` may name)."""
    from llmgw.tui.app import SCREENS_ORDER, LlmgwApp, screen_class
    from llmgw.tui.screens.alert_detail import AlertDetailScreen
    from llmgw.tui.screens.alias_admin import AliasAdminScreen
    from llmgw.tui.screens.analytics import AnalyticsScreen
    from llmgw.tui.screens.base import PolledScreen
    from llmgw.tui.screens.budgets import BudgetsScreen
    from llmgw.tui.screens.help import HelpScreen
    from llmgw.tui.screens.listing import FilteredScreen
    from llmgw.tui.screens.provider_admin import ProviderAdminScreen
    from llmgw.tui.widgets.conversation_list import ConversationList
    from llmgw.tui.widgets.dialogs import ConfirmScreen, FormScreen, SecretScreen

    ids = _ids(LlmgwApp.BINDINGS) | _ids(PolledScreen.BINDINGS) | _ids(FilteredScreen.BINDINGS)
    for mode, _title in SCREENS_ORDER:
        ids |= _ids(screen_class(mode).BINDINGS)
    for dialog in (HelpScreen, ConfirmScreen, FormScreen, SecretScreen, AlertDetailScreen,
                   BudgetsScreen, ProviderAdminScreen, AliasAdminScreen, AnalyticsScreen):  # fmt: skip
        ids |= _ids(dialog.BINDINGS)
    ids |= _ids(ConversationList.BINDINGS)
    return ids


def check_keymap(keymap: Mapping[str, str]) -> dict[str, str]:
    """``keymap`` if every id in it is a binding of the dashboard, else ``ConfigError`` (exit 2).
    An empty keymap is checked without loading the screens (the first paint would pay for them)."""
    if not keymap:
        return {}
    known = binding_ids()
    unknown = sorted(set(keymap) - known)
    if unknown:
        raise ConfigError(
            f"[tui] keys: no binding has the id {unknown[0]!r}",
            hint="binding ids: " + ", ".join(sorted(known)) + " (? in llmgw dash lists them)",
        )
    return dict(keymap)
