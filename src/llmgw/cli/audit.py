"""``llmgw audit``: the log of administrative actions (who, what, which object, when, from where)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from llmgw.cli.output import emit_json, print_table, when_text
from llmgw.cli.state import state
from llmgw.durations import parse_duration

__all__ = ["audit"]


def audit(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only the last 90s, 15m, 12h, 7d, 2w... (default: any time)."),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            help="Only actions by this actor: an email, a key prefix or local:<os user>.",
            show_default=False,
        ),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            help="Only this action (keys.revoke) or group of actions (keys.*).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many entries.")] = 50,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show administrative actions, newest first: who changed which key or user, when, from where.

    Changes made through the CLI, the admin API (/admin/v1) and the dashboard are all recorded;
    secrets never are.
    """
    start = datetime.now(UTC) - parse_duration(since, param="--since") if since else None
    entries = state(ctx).admin().audit_list(since=start, limit=limit, actor=actor, action=action)
    if json:
        emit_json(entries)
        return
    rows = [
        {
            **e,
            "at": when_text(e["at"]),
            "detail": ", ".join(f"{k}={v}" for k, v in (e["detail"] or {}).items()) or None,
        }
        for e in entries
    ]
    print_table(
        rows,
        ["at", "actor", "action", "target", "source", "remote_addr", "detail"],
        title="audit log",
        wrap=("actor", "target", "detail"),
        optional=("detail", "remote_addr", "source"),  # narrow terminals drop these
    )
