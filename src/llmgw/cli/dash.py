"""``llmgw dash``: the full-screen admin dashboard (Textual), on the database or a server."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from llmgw.cli.state import state
from llmgw.errors import UsageError

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps

__all__ = ["dash"]


def _remote(url: str, token: str | None, ctx: typer.Context) -> AdminOps:
    from llmgw.admin.remote import RemoteAdmin

    auth = None if token else state(ctx).login(url)  # the stored `llmgw login`, refreshed
    return RemoteAdmin(url, token, source="tui", auth=auth)


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
    """Open the full-screen admin dashboard: providers, requests, usage, keys, users, audit.

    Without --url it reads and changes the database directly (the providers screen then shows
    the provider_status table: live state needs a server); with --url and an admin --token, or
    the stored `llmgw login` for that URL, it uses the server's admin API. ? lists the keys, q quits. Exit code 2 when the credential is
    refused or is not an admin's.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "llmgw dash needs a terminal", hint="for scripts use llmgw keys|users|usage --json"
        )
    st = state(ctx)
    url, token = url or st.url, token or st.token  # `llmgw --url X dash` works too
    ops: AdminOps
    if url:
        ops = _remote(url, token, ctx)
    else:
        from llmgw.admin.local import LocalAdmin
        from llmgw.admin.ops import Actor

        changes = st.auth_changes()
        ops = LocalAdmin(
            st.engine(),
            Actor.local(),
            source="tui",
            on_change=changes.publish if changes is not None else None,
        )
    from llmgw.tui.app import LlmgwApp

    app = LlmgwApp(ops, st.settings, poll_interval=interval)
    app.run()
    if app.return_code:
        raise typer.Exit(app.return_code)
