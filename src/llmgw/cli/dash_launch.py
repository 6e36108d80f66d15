"""Open ``llmgw dash`` from resolved options: shared by the Typer command (``cli/dash.py``) and the
CLI's fast path (``cli/fast.py``), which reach it with the same values by different roads."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from llmgw.errors import UsageError

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.engine import Engine

    from llmgw.admin.chat import ChatSource
    from llmgw.admin.ops import AdminOps
    from llmgw.alerts.source import AlertSource
    from llmgw.auth.changes import AuthChange
    from llmgw.storage.opener import EngineOpener

__all__ = ["launch", "local_sources"]

Local = Callable[[], "tuple[AdminOps, AlertSource]"]
"""Builds the database's admin operations and alert history (local mode)."""


def _remote(url: str, token: str | None, auth: httpx.Auth | None) -> AdminOps:
    from llmgw.admin.remote import RemoteAdmin

    return RemoteAdmin(url, token, source="tui", auth=auth)


def _chat(url: str, token: str | None, auth: httpx.Auth | None = None) -> ChatSource:
    """The gateway's own chat API for the Chat screen (the same URL and key or login)."""
    from llmgw.admin.chat_remote import RemoteChat

    return RemoteChat(url, token, auth=auth)


def _local_url(settings: Any) -> str | None:
    """This host's ``llmgw serve`` address (as ``llmgw chat`` finds it), for local mode's Chat
    screen to offer."""
    server = getattr(settings, "server", None)
    if server is None:
        return None
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host  # noqa: S104
    return f"http://{host}:{server.port}"


def local_sources(
    database_url: str,
    engine: Callable[[], Engine],
    *,
    settings: Any,
    on_change: Callable[[AuthChange], None] | None,
    mode: str | None,
) -> tuple[AdminOps, AlertSource, EngineOpener]:
    """``LocalAdmin`` and ``LocalAlerts`` on one ``EngineOpener`` of ``engine``. On a SQLite file
    whose schema is current, Providers paints from ``sqlite3`` and the engine opens later (the
    caller's ``warm_up``); on any other database it opens now, so connection errors and
    migrations come before the screen."""
    from llmgw.admin.local import LocalAdmin
    from llmgw.admin.ops import Actor
    from llmgw.admin.quick import is_current
    from llmgw.alerts.ops import LocalAlerts
    from llmgw.storage.opener import EngineOpener

    opener = EngineOpener(database_url, engine)
    if not is_current(database_url):
        opener()
    ops = LocalAdmin(opener, Actor.local(), source="tui", on_change=on_change, settings=settings)
    return ops, LocalAlerts(opener, Actor.local(), "tui", mode=mode), opener


def launch(
    *,
    url: str | None,
    token: str | None,
    interval: float,
    keymap: Mapping[str, str],
    settings: Any,
    login: Callable[[str], httpx.Auth | None],
    local: Local,
    warm_up: Callable[[], object] | None = None,
) -> int:
    """Run the dashboard until it quits; its exit code. ``keymap`` is already checked;
    ``login(url)`` is the stored ``llmgw login`` for a URL without a token; ``warm_up`` runs in a
    worker once the first screen shows data."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "llmgw dash needs a terminal", hint="for scripts use llmgw keys|users|usage --json"
        )
    ops: AdminOps
    alerts: AlertSource
    chat: ChatSource | None = None
    if url:
        from llmgw.alerts.ops import RemoteAlerts

        auth = None if token else login(url)  # the stored `llmgw login`, refreshed
        ops = _remote(url, token, auth)
        chat = _chat(url, token, auth)
        alerts = RemoteAlerts(url, token, "tui", auth=auth)  # the server's /api/alerts
    else:
        ops, alerts = local()
    from llmgw.tui.app import LlmgwApp

    app = LlmgwApp(
        ops,
        settings,
        poll_interval=interval,
        chat=chat,
        connect_chat=_chat,
        local_chat_url=None if url else _local_url(settings),
        keymap=keymap,
        alerts=alerts,
        warm_up=warm_up,
    )
    app.run()
    return app.return_code or 0
