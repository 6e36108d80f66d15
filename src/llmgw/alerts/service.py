"""``AlertService``: the alert history's long-lived parts in one object the server owns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from llmgw.alerts.stats import AlertStats
from llmgw.alerts.store import AlertStore
from llmgw.config import AlertsSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["AlertService"]


class AlertService:
    """The store the webhook writes to, the counters, and (once started) the worker."""

    def __init__(
        self,
        engine: Engine,
        settings: AlertsSettings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.stats = AlertStats()
        self.store = AlertStore(engine, settings, now=now)
        self.worker: Any = None
        """The job worker, once started (``llmgw serve``)."""

    def wake(self) -> None:
        """New jobs were stored by this process: the worker looks at the queue now."""
        if self.worker is not None:
            self.worker.wake()
