"""Audit: the admin action log, newest first (who, what, target, when, from where)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from llmgw.tui.format import short_time
from llmgw.tui.screens.listing import ListingScreen

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps, Record

__all__ = ["AuditScreen"]


class AuditScreen(ListingScreen):
    """Every admin action done through the CLI, the API or this dashboard."""

    TITLE_TEXT = "Audit"
    COLUMNS = ("time", "actor", "action", "target", "source", "from", "detail")

    def fetch(self, ops: AdminOps) -> list[Record]:
        return ops.audit_list(limit=500)

    def row(self, rec: Record) -> tuple[Any, ...]:
        detail = rec.get("detail")
        return (
            short_time(rec.get("at")),
            rec.get("actor") or "-",
            rec.get("action") or "-",
            rec.get("target") or "-",
            rec.get("source") or "-",
            rec.get("remote_addr") or "-",
            json.dumps(detail, separators=(",", ":"), sort_keys=True) if detail else "",
        )
