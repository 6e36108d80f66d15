"""How ``llmgw keys list`` prints its records, shared by the command and the CLI's fast path."""

from __future__ import annotations

from collections.abc import Sequence

from llmgw.admin.ops import Record
from llmgw.cli.output import emit_json, print_table, when_text

__all__ = ["show_keys"]


def show_keys(records: Sequence[Record], *, json: bool) -> None:
    """The records as JSON for scripts, else as a table that fits the terminal."""
    if json:
        emit_json(records)
        return
    rows = [
        {
            "id": r["id"][:8],
            "name": r["name"],
            "prefix": r["prefix"],
            "user": r["user"],
            "created": _short(r["created_at"]),
            "expires": _short(r["expires_at"]),
            "last_used": _short(r["last_used_at"]),
            "status": r["status"],
        }
        for r in records
    ]
    print_table(
        rows,
        ["id", "name", "prefix", "user", "created", "expires", "last_used", "status"],
        title="keys",
        wrap=("name", "user"),
        optional=("created", "last_used", "expires", "user"),  # narrow terminals drop these
    )


def _short(when: str | None) -> str | None:
    """Minutes are enough in a table (UTC); ``--json`` has the exact time."""
    return when_text(when, "%Y-%m-%d %H:%M")
