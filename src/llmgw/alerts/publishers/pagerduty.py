"""PagerDuty Events API v2 (reference §2): ``trigger`` then ``resolve`` with one ``dedup_key``.

PagerDuty answers 202 and deduplicates by ``dedup_key``: a trigger repeated on an open alert
only adds a log entry, so a request whose answer was lost is simply sent again.
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from llmgw.alerts.publishers.base import Action, Outcome, network_outcome, outcome_of
from llmgw.alerts.publishers.templates import pagerduty_event
from llmgw.config import PublishTarget

__all__ = ["PagerDutyPublisher"]


class PagerDutyPublisher:
    """Events API v2 for one integration key."""

    idempotent: frozenset[str] = frozenset({"fire", "resolve"})

    def __init__(self, target: PublishTarget, client: httpx.AsyncClient) -> None:
        self.target = target
        self.client = client

    def _key(self) -> str:
        assert self.target.routing_key is not None  # checked by PublishTarget
        return self.target.routing_key.get_secret_value()

    async def _post(self, body: dict[str, Any], key: str) -> Outcome:
        try:
            resp = await self.client.post(self.target.events_url, json=body)
        except httpx.HTTPError as exc:
            return network_outcome(exc)
        out = outcome_of(resp, key)
        if out.kind == "sent":
            with contextlib.suppress(ValueError):
                key = str(resp.json().get("dedup_key") or key)
            return Outcome("sent", resp.status_code, key)
        return out

    async def fire(self, alert: dict[str, Any], view: dict[str, Any], key: str) -> Outcome:
        """Send ``trigger``."""
        return await self._post(pagerduty_event(alert, view, self._key(), key), key)

    async def resolve(
        self, alert: dict[str, Any], view: dict[str, Any], key: str, fired: str | None
    ) -> Outcome:
        """Send ``resolve`` with the trigger's ``dedup_key``."""
        dedup = fired or key
        body = {"routing_key": self._key(), "event_action": "resolve", "dedup_key": dedup}
        return await self._post(body, dedup)

    async def find(self, action: Action, key: str, fired: str | None) -> Outcome | None:
        """Nothing to ask: re-sending is safe (``idempotent``)."""
        return None
