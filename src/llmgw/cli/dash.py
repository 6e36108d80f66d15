"""``llmgw dash``: the full-screen admin dashboard (Textual), on the database or a server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from llmgw.cli.state import state

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps
    from llmgw.alerts.source import AlertSource
    from llmgw.storage.opener import EngineOpener

__all__ = ["dash"]


def dash(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="LLMGW_URL",
            help="A running llmgw serve (its /admin/v1 API); without it, the database directly.",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="LLMGW_TOKEN",
            help="An admin's API key for --url (never echoed); default: the stored llmgw login.",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float,
        typer.Option("--interval", min=0.2, max=3600, help="Seconds between polls of a screen."),
    ] = 2.0,
) -> None:
    """Open the admin dashboard: providers, requests, usage, keys, users, audit, chat, alerts.

    Without --url it reads and changes the database directly (the providers screen then shows
    the provider_status table: live state needs a server); with --url and an admin --token, or
    the stored `llmgw login` for that URL, it uses the server's admin API (and its /v1/chat/completions on the Chat screen). Keys can be
    changed in [tui] keys of the config. ? lists the keys, q quits. Exit code 2 when the
    credential is refused or is not an admin's, or [tui] keys names an unknown binding.
    """
    st = state(ctx)
    from llmgw.cli.dash_launch import launch, local_sources
    from llmgw.tui.keymap import check_keymap  # a wrong [tui] keys is exit 2 before any screen

    keymap = check_keymap(st.settings.tui.keys)

    opener: EngineOpener | None = None

    def local() -> tuple[AdminOps, AlertSource]:
        nonlocal opener
        changes = st.auth_changes()
        ops, alerts, opener = local_sources(
            st.settings.database_url,
            st.engine,
            settings=st.settings,  # `t` on Providers tests with this host's configuration
            on_change=changes.publish if changes is not None else None,
            mode=st.settings.alerts.mode,
        )
        return ops, alerts

    def warm_up() -> None:
        if opener is not None:
            opener()  # after the first paint (a current SQLite file is read with sqlite3 first)

    code = launch(
        url=url or st.url,  # `llmgw --url X dash` works too
        token=token or st.token,
        interval=interval,
        keymap=keymap,
        settings=st.settings,
        login=st.login,
        local=local,
        warm_up=warm_up,
    )
    if code:
        raise typer.Exit(code)
