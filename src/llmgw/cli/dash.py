"""``llmgw dash``: the full-screen admin dashboard (Textual), on the database or a server."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from llmgw.cli.state import state
from llmgw.errors import UsageError

if TYPE_CHECKING:
    import httpx

    from llmgw.admin.chat import ChatSource
    from llmgw.admin.ops import AdminOps
    from llmgw.alerts.source import AlertSource

__all__ = ["dash"]


def _remote(url: str, token: str | None, auth: httpx.Auth | None) -> AdminOps:
    from llmgw.admin.remote import RemoteAdmin

    return RemoteAdmin(url, token, source="tui", auth=auth)


def _chat(url: str, token: str | None, auth: httpx.Auth | None = None) -> ChatSource:
    """The gateway's own chat API for the Chat screen (the same URL and key or login)."""
    from llmgw.admin.chat_remote import RemoteChat

    return RemoteChat(url, token, auth=auth)


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
    from llmgw.tui.keymap import check_keymap  # a wrong [tui] keys is exit 2 before any screen

    keymap = check_keymap(st.settings.tui.keys)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "llmgw dash needs a terminal", hint="for scripts use llmgw keys|users|usage --json"
        )
    url, token = url or st.url, token or st.token  # `llmgw --url X dash` works too
    ops: AdminOps
    alerts: AlertSource
    chat: ChatSource | None = None
    if url:
        from llmgw.alerts.ops import RemoteAlerts

        auth = None if token else st.login(url)  # the stored `llmgw login`, refreshed
        ops = _remote(url, token, auth)
        chat = _chat(url, token, auth)
        alerts = RemoteAlerts(url, token, "tui", auth=auth)  # the server's /api/alerts
    else:
        from llmgw.admin.local import LocalAdmin
        from llmgw.admin.ops import Actor
        from llmgw.alerts.ops import LocalAlerts

        changes = st.auth_changes()
        ops = LocalAdmin(
            st.engine(),
            Actor.local(),
            source="tui",
            on_change=changes.publish if changes is not None else None,
            settings=st.settings,  # `t` on Providers tests with this host's configuration
        )
        alerts = LocalAlerts(st.engine(), Actor.local(), "tui", mode=st.settings.alerts.mode)
    from llmgw.tui.app import LlmgwApp

    app = LlmgwApp(
        ops,
        st.settings,
        poll_interval=interval,
        chat=chat,
        connect_chat=_chat,
        keymap=keymap,
        alerts=alerts,
    )
    app.run()
    if app.return_code:
        raise typer.Exit(app.return_code)
