"""Slack (reference §3): an incoming webhook, or ``chat.postMessage`` with a bot token.

With a bot token the message's ``channel`` and ``ts`` are stored; the resolve turns the
original message into its resolved form (``chat.update``) and replies in its thread. A webhook
returns no ``ts``: its resolve is a new message. ``chat.postMessage`` answers HTTP 200 with
``"ok": false`` on most errors: ``ratelimited`` is retried, a missing or archived channel or a
revoked token disables the target, anything else is given up.

Slack has no idempotency key. Each bot message carries our key in its ``metadata``; after a
crash mid-request the channel's newest messages (``conversations.history``) are searched for
it before posting again. A webhook cannot be asked, so such a publication is left ``unknown``
rather than risk a second message.
"""

from __future__ import annotations

from typing import Any

import httpx

from llmgw.alerts.publishers.base import (
    Action,
    Outcome,
    network_outcome,
    outcome_of,
    retry_after,
    short_error,
)
from llmgw.alerts.publishers.templates import slack_message, slack_resolved_reply
from llmgw.config import PublishTarget

__all__ = ["SlackPublisher"]

_DISABLE = {"channel_not_found", "is_archived", "token_revoked", "account_inactive", "no_service"}
_RETRY = {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable"}
_EVENT = "llmgw_alert"


class SlackPublisher:
    """One channel: a webhook or a bot token + channel."""

    idempotent: frozenset[str] = frozenset()

    def __init__(self, target: PublishTarget, client: httpx.AsyncClient) -> None:
        self.target = target
        self.client = client

    # -- Web API (bot token) --------------------------------------------------------------
    async def _api(
        self, method: str, body: dict[str, Any], *, form: bool = False
    ) -> tuple[Outcome, dict[str, Any]]:
        """A Web API call: JSON for the write methods, form fields for the read ones (Slack
        takes JSON bodies only on write methods)."""
        assert self.target.bot_token is not None
        headers = {"Authorization": f"Bearer {self.target.bot_token.get_secret_value()}"}
        url = f"{self.target.api_url.rstrip('/')}/{method}"
        try:
            if form:
                fields = {
                    k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in body.items()
                }
                resp = await self.client.post(url, data=fields, headers=headers)
            else:
                headers["Content-Type"] = "application/json; charset=utf-8"
                resp = await self.client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            return network_outcome(exc), {}
        out = outcome_of(resp)
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if out.kind != "sent":
            return out, data
        if data.get("ok") is True:
            return out, data
        error = str(data.get("error") or "no ok in the answer")
        msg = short_error(resp, error)
        if error in _RETRY:
            return Outcome(
                "retry", resp.status_code, error=msg, retry_after=retry_after(resp)
            ), data
        if error in _DISABLE:
            return Outcome("disable", resp.status_code, error=msg), data
        return Outcome("failed", resp.status_code, error=msg), data

    # -- incoming webhook -----------------------------------------------------------------
    async def _hook(self, body: dict[str, Any]) -> Outcome:
        assert self.target.webhook_url is not None
        try:
            resp = await self.client.post(self.target.webhook_url.get_secret_value(), json=body)
        except httpx.HTTPError as exc:
            return network_outcome(exc)
        out = outcome_of(resp)
        if out.kind == "sent" and resp.text.strip() != "ok":
            return Outcome("failed", resp.status_code, error=short_error(resp))
        return out

    @property
    def _bot(self) -> bool:
        return self.target.bot_token is not None and bool(self.target.channel)

    async def fire(self, alert: dict[str, Any], view: dict[str, Any], key: str) -> Outcome:
        """Post the message; with a bot token its ``channel:ts`` is the external id."""
        msg = slack_message(alert, view)
        if not self._bot:
            return await self._hook(msg)
        body = {
            "channel": self.target.channel,
            **msg,
            "unfurl_links": False,
            "metadata": {"event_type": _EVENT, "event_payload": {"key": key}},
        }
        out, data = await self._api("chat.postMessage", body)
        if out.kind != "sent":
            return out
        return Outcome(
            "sent", out.status, f"{data.get('channel') or self.target.channel}:{data.get('ts')}"
        )

    async def resolve(
        self, alert: dict[str, Any], view: dict[str, Any], key: str, fired: str | None
    ) -> Outcome:
        """Update the original and reply in its thread (bot), else post a resolved message."""
        if not self._bot or not fired or ":" not in fired:
            if self._bot:
                body = {"channel": self.target.channel, **slack_message(alert, view, resolved=True)}
                out, data = await self._api("chat.postMessage", body)
                return (
                    out
                    if out.kind != "sent"
                    else Outcome("sent", out.status, f"{data.get('channel')}:{data.get('ts')}")
                )
            return await self._hook(slack_message(alert, view, resolved=True))
        channel, ts = fired.split(":", 1)
        out, _ = await self._api(
            "chat.update",
            {"channel": channel, "ts": ts, **slack_message(alert, view, resolved=True)},
        )
        if out.kind != "sent":
            return out
        reply = {
            "channel": channel,
            "thread_ts": ts,
            "text": slack_resolved_reply(alert, view),
            "metadata": {"event_type": _EVENT, "event_payload": {"key": f"{key}:resolve"}},
        }
        out, data = await self._api("chat.postMessage", reply)
        if out.kind != "sent":
            return out
        return Outcome("sent", out.status, f"{channel}:{data.get('ts') or ts}")

    async def find(self, action: Action, key: str, fired: str | None) -> Outcome | None:
        """A message of ours with ``key`` in the channel's newest 100 (bot token only)."""
        if not self._bot:
            return None
        want = key if action == "fire" else f"{key}:resolve"
        params: dict[str, Any] = {
            "channel": self.target.channel,
            "limit": 100,
            "include_all_metadata": True,
        }
        method = "conversations.history"
        if action == "resolve" and fired and ":" in fired:
            method = "conversations.replies"
            params = {"channel": fired.split(":", 1)[0], "ts": fired.split(":", 1)[1], "limit": 100,
                      "include_all_metadata": True}  # fmt: skip
        out, data = await self._api(method, params, form=True)
        if out.kind != "sent":
            return None
        for m in data.get("messages") or []:
            meta = (m.get("metadata") or {}).get("event_payload") or {}
            if meta.get("key") == want:
                ts = m.get("ts") if action == "fire" else (fired or "").split(":", 1)[-1]
                channel = (
                    self.target.channel if action == "fire" else (fired or ":").split(":", 1)[0]
                )
                return Outcome("sent", 200, f"{channel}:{ts}")
        return Outcome("absent")
