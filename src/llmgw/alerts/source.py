"""``AlertSource``: what the dashboard's Alerts screen reads and changes.

``llmgw.alerts.ops.LocalAlerts`` (the database) and ``RemoteAlerts`` (a server's
``/api/alerts``) implement it; the CLI picks one and hands it to ``llmgw dash``. This module
imports nothing heavy (no SQLAlchemy, no httpx), so the TUI may import it: the records are the
JSON-ready ones of ``llmgw.alerts.queries`` (the API's answers and the CLI's ``--json``).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["AlertSource"]


class AlertSource(Protocol):
    """The alert history as the Alerts screen needs it. Errors are ``LlmgwError`` subclasses."""

    def search(
        self,
        *,
        status: str | None = None,
        severity: str | None = None,
        text: str | None = None,
        limit: int = 200,
    ) -> dict[str, Any]:
        """The newest occurrences (by last delivery) that match: ``status`` (firing or
        resolved), the ``severity`` label, ``text`` in the name, labels or annotations.
        ``{"object": "list", "data": [...], "next_cursor"}``."""
        ...

    def show(self, alert_id: int) -> dict[str, Any]:
        """One occurrence with its timeline, classification and ``publications`` (one per
        target and action: ``target, type, action, state, external_id, http_status,
        attempts, error, next_at, updated_at``, as ``GET /api/alerts/{id}/publications``)."""
        ...

    def ack(self, alert_id: int, note: str | None) -> dict[str, Any]:
        """Acknowledge (who and when go to the timeline and the audit log)."""
        ...

    def reclassify(self, alert_id: int) -> dict[str, Any]:
        """Queue a fresh AI classification (audited)."""
        ...
