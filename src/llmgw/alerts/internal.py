"""The gateway's own provider-health transitions as alerts of source ``llmgw``.

A circuit breaker that opens fires ``LlmgwCircuitOpen`` for its (provider, model); the probe that
closes it resolves the same occurrence. The breaker tells ``BreakerAlerts.on_change`` on the
event loop in the middle of a request, so that only appends to a list and wakes a task: the task
writes the transitions through ``AlertStore.ingest`` (in a thread, one transaction per batch, the
same path as a webhook delivery, so the occurrence gets its events and jobs) and wakes the
worker. A database outage keeps the transitions in memory (at most ``MAX_PENDING``, oldest
dropped) and tries again after ``retry_delay``.

Breakers are per process: two instances whose breakers open each record their own occurrence
(the same fingerprint, different ``startsAt``); the ``instance`` annotation says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from llmgw.alerts.payload import Delivery, IncomingAlert, am_fingerprint, delivery_digest
from llmgw.alerts.store import AlertStore
from llmgw.tasks import stop_task

__all__ = ["ALERTNAME", "MAX_PENDING", "BreakerAlerts", "breaker_labels"]

log = logging.getLogger("llmgw.alerts")

ALERTNAME = "LlmgwCircuitOpen"
MAX_PENDING = 10_000


def breaker_labels(provider: str, model: str) -> dict[str, str]:
    """The label set of a breaker's alert (its fingerprint is Alertmanager's hash of it)."""
    return {
        "alertname": ALERTNAME,
        "provider": provider,
        "model": model,
        "severity": "warning",
        "service": "llmgw",
    }


@dataclass(frozen=True, slots=True)
class _Change:
    provider: str
    model: str
    status: Literal["firing", "resolved"]
    starts_at: datetime
    at: datetime


class BreakerAlerts:
    """Turns breaker transitions into deliveries of source ``llmgw`` (module docstring)."""

    def __init__(
        self,
        store: AlertStore,
        *,
        wake: Callable[[], None] = lambda: None,
        retry_delay: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.wake = wake
        self.retry_delay = retry_delay
        self.now = now
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.stored = 0
        """Transitions written to the history."""
        self.dropped = 0
        """Transitions lost because more than ``MAX_PENDING`` waited for the database."""
        self._pending: list[_Change] = []
        self._open: dict[tuple[str, str], datetime] = {}
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def on_change(self, breaker: Any, change: Literal["open", "closed"]) -> None:
        """The breaker listener: O(1), no I/O (runs inside a request)."""
        provider, model = breaker.key
        at = self.now()
        if change == "open":
            starts = self._open.setdefault((provider, model), at)
            status: Literal["firing", "resolved"] = "firing"
        else:
            opened = self._open.pop((provider, model), None)
            if opened is None:  # opened before this listener existed: nothing to resolve
                return
            starts, status = opened, "resolved"
        if len(self._pending) >= MAX_PENDING:
            del self._pending[0]
            self.dropped += 1
        self._pending.append(_Change(provider, model, status, starts, at))
        self._event.set()

    def delivery(self, changes: list[_Change]) -> Delivery:
        """The transitions as one delivery of source ``llmgw``."""
        alerts: list[IncomingAlert] = []
        raw: list[dict[str, Any]] = []
        for ch in changes:
            labels = breaker_labels(ch.provider, ch.model)
            target = f"{ch.provider}/{ch.model}"
            annotations = {
                "summary": f"llmgw's circuit breaker for {target} "
                + (
                    "opened: requests fail fast or fall back" if ch.status == "firing" else "closed"
                ),
                "description": f"Consecutive upstream failures or the error rate opened the circuit "
                f"of {target}; a successful probe closes it.",
                "instance": self.instance,
            }
            ends = ch.at if ch.status == "resolved" else None
            fp = am_fingerprint(labels)
            alerts.append(IncomingAlert(ch.status, labels, annotations, ch.starts_at, ends, "", fp))
            raw.append(
                {
                    "status": ch.status,
                    "labels": labels,
                    "annotations": annotations,
                    "startsAt": ch.starts_at.isoformat(),
                    "endsAt": ends.isoformat() if ends else "0001-01-01T00:00:00Z",
                    "fingerprint": fp,
                    "at": ch.at.isoformat(),
                }
            )
        status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
        payload: dict[str, Any] = {
            "version": "4",
            "receiver": "llmgw",
            "status": status,
            "groupKey": f"llmgw:breakers:{self.instance}",
            "externalURL": "",
            "alerts": raw,
        }
        return Delivery(
            receiver="llmgw",
            status=status,
            group_key=payload["groupKey"],
            truncated=0,
            external_url="",
            alerts=alerts,
            payload=payload,
            digest=delivery_digest(payload),
            source="llmgw",
        )

    async def flush(self) -> None:
        """Store what is pending now (raises the database's error; the changes stay pending)."""
        batch = list(self._pending)
        if not batch:
            return
        # one delivery per change: a firing and its resolution in one batch are two notifications
        for i, ch in enumerate(batch):
            await asyncio.to_thread(self.store.ingest, self.delivery([ch]))
            del self._pending[0]
            self.stored += 1
            if i == 0:
                self.wake()

    async def run(self) -> None:
        """Store transitions as they come; after a failure, try again in ``retry_delay``."""
        failing = False
        while not self._stopping:
            self._event.clear()
            try:
                await self.flush()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database may be down: keep them
                if not failing:
                    log.warning("llmgw health alerts: cannot store (%s); retrying",
                                type(exc).__name__)  # fmt: skip
                failing = True
                await asyncio.sleep(self.retry_delay)  # a re-sent delivery is a duplicate
                continue
            if not self._pending and not self._stopping:
                await self._event.wait()

    def start(self) -> None:
        """Run the loop as a task on the current event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name="llmgw-breaker-alerts"
            )

    async def aclose(self, grace: float = 5.0) -> None:
        """Store what is pending (within ``grace`` seconds), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._event.set()
        await stop_task(task, grace, "the breaker alert recorder")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(grace):
                await self.flush()
