"""Rootly's REST API (reference §4.A): ``POST /v1/alerts`` (JSON:API, 201) with our
``deduplication_key``, then ``POST /v1/alerts/{id}/resolve`` on the stored ``id``.

Rootly has no filter by deduplication key, so after a crash mid-request the newest alerts are
read (``GET /v1/alerts``, two pages) and one carrying our key is adopted instead of creating
another.
"""

from __future__ import annotations

from typing import Any

import httpx

from llmgw.alerts.publishers.base import Action, Outcome, network_outcome, outcome_of
from llmgw.alerts.publishers.templates import rootly_attributes
from llmgw.config import PublishTarget

__all__ = ["RootlyPublisher"]

_JSONAPI = "application/vnd.api+json"


class RootlyPublisher:
    """Alerts API for one API key."""

    idempotent: frozenset[str] = frozenset({"resolve"})

    def __init__(self, target: PublishTarget, client: httpx.AsyncClient) -> None:
        self.target = target
        self.client = client

    def _headers(self) -> dict[str, str]:
        assert self.target.api_key is not None  # checked by PublishTarget
        return {
            "Authorization": f"Bearer {self.target.api_key.get_secret_value()}",
            "Content-Type": _JSONAPI,
            "Accept": _JSONAPI,
        }

    def _url(self, path: str) -> str:
        return self.target.base_url.rstrip("/") + path

    async def fire(self, alert: dict[str, Any], view: dict[str, Any], key: str) -> Outcome:
        """Create the alert; its ``data.id`` is the external id."""
        body = {"data": {"type": "alerts", "attributes": rootly_attributes(alert, view, key)}}
        try:
            resp = await self.client.post(
                self._url("/v1/alerts"), json=body, headers=self._headers()
            )
        except httpx.HTTPError as exc:
            return network_outcome(exc)
        out = outcome_of(resp)
        if out.kind != "sent":
            return out
        try:
            alert_id = str(resp.json()["data"]["id"])
        except (ValueError, KeyError, TypeError):
            return Outcome("failed", resp.status_code, error="Rootly answered without data.id")
        return Outcome("sent", resp.status_code, alert_id)

    async def resolve(
        self, alert: dict[str, Any], view: dict[str, Any], key: str, fired: str | None
    ) -> Outcome:
        """Resolve the stored alert id."""
        if not fired:
            return Outcome("failed", None, error="no Rootly alert id stored for the fire")
        ends = alert.get("ends_at") or "now"
        body = {
            "data": {
                "type": "alerts",
                "attributes": {"resolution_message": f"Resolved by Alertmanager at {ends}"},
            }
        }
        try:
            resp = await self.client.post(
                self._url(f"/v1/alerts/{fired}/resolve"), json=body, headers=self._headers()
            )
        except httpx.HTTPError as exc:
            return network_outcome(exc)
        out = outcome_of(resp, fired)
        if out.kind == "disable" and resp.status_code == 404:
            # the alert is gone (deleted in Rootly), not the target: nothing left to resolve
            return Outcome("failed", 404, fired, error=out.error)
        return out

    async def find(self, action: Action, key: str, fired: str | None) -> Outcome | None:
        """The alert created with ``key`` (for a fire), or the resolved one (for a resolve)."""
        for page in (1, 2):
            try:
                resp = await self.client.get(
                    self._url("/v1/alerts"),
                    params={"page[number]": page, "page[size]": 100, "sort": "-created_at"},
                    headers=self._headers(),
                )
            except httpx.HTTPError:
                return None
            if resp.status_code != 200:
                return None
            try:
                items = resp.json().get("data") or []
            except ValueError:
                return None
            for item in items:
                attrs = item.get("attributes") or {}
                if action == "fire" and key in (
                    attrs.get("deduplication_key"),
                    attrs.get("external_id"),
                ):
                    return Outcome("sent", 200, str(item.get("id")))
                if action == "resolve" and str(item.get("id")) == fired:
                    if attrs.get("status") == "resolved":
                        return Outcome("sent", 200, fired)
                    return Outcome("absent")
            if len(items) < 100:
                break
        return Outcome("absent") if action == "fire" else None
