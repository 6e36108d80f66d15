"""A local Slack: incoming webhooks (``POST /services/T.../B.../X...``) and the Web API's
``chat.postMessage`` / ``chat.update`` (``POST /api/...``), as the shared reference ``alerting.md`` §3
describes them.

Webhooks answer 200 with the plain text ``ok``, errors as a status code with a short ``text/html``
body (400 ``invalid_payload`` / ``no_text`` / ``invalid_blocks``, 404 ``no_service``, 410
``channel_is_archived``, 429 with ``Retry-After``, 500 ``rollup_error``). The Web API answers HTTP 200
with ``{"ok": false, "error": ...}`` for its own errors and 429 ``ratelimited`` with ``Retry-After``.
Posting is limited to about one message a second per channel (or webhook) with a short burst.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Unpack
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.emulators.control import (
    ControlOptions,
    FaultSwitch,
    Recorder,
    TokenBucket,
    control_routes,
    controls,
)
from llmgw.emulators.faults import json_response

__all__ = ["DEFAULT_BOT_TOKEN", "SlackEmulator", "SlackMessage", "create_app"]

DEFAULT_BOT_TOKEN = "xoxb-0000000000-emulator-token"  # noqa: S105 - a public test value
"""The bot token accepted when none is configured."""

_METHODS = ("chat.postMessage", "chat.update", "auth.test", "conversations.history",
            "conversations.replies")  # fmt: skip
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_WEBHOOK = re.compile(r"^/services/(T[A-Z0-9]+)/(B[A-Z0-9]+)/([A-Za-z0-9]+)$")
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_TEXT = 40_000


@dataclass
class SlackMessage:
    """One message as it stands in a channel (``thread_ts`` set on replies)."""

    channel: str
    ts: str
    text: str
    blocks: list[Any] | None
    attachments: list[Any] | None
    thread_ts: str | None = None
    edited: int = 0
    """How many times ``chat.update`` changed it."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Earlier versions (text, blocks, attachments), oldest first."""
    metadata: dict[str, Any] | None = None
    """Message metadata (``event_type`` + ``event_payload``) posted with it."""

    def as_json(self, *, metadata: bool = False) -> dict[str, Any]:
        """The message in the shape Slack returns under ``message``."""
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text}
        if self.blocks is not None:
            out["blocks"] = self.blocks
        if self.attachments is not None:
            out["attachments"] = self.attachments
        if self.thread_ts is not None:
            out["thread_ts"] = self.thread_ts
        if self.edited:
            out["edited"] = {"user": "U0EMULATOR", "ts": self.ts}
        if metadata and self.metadata is not None:
            out["metadata"] = self.metadata
        return out


@dataclass
class SlackEmulator:
    """Switches, channels, messages and the received log; tests may change switches while it runs."""

    recorder: Recorder
    faults: FaultSwitch
    limiter: TokenBucket
    bot_tokens: set[str]
    channels: set[str] | None = None
    """Known channel ids (``None``: any well-formed id such as ``C0123456789``)."""
    not_in_channel: set[str] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)
    """Archived channel ids and webhook paths (``/services/...``): 410 / ``is_archived``."""
    disabled_webhooks: set[str] = field(default_factory=set)
    """Webhook paths answered 404 ``no_service`` (a revoked webhook)."""
    fail_rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    messages: list[SlackMessage] = field(default_factory=list)
    """Every message posted (web API and webhooks), oldest first."""
    _last_ts: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_ts(self) -> str:
        """A message timestamp later than every one given before (``"1763781547.000200"``)."""
        with self._lock:
            t = max(time.time(), self._last_ts + 0.000001)
            self._last_ts = t
            return f"{t:.6f}"

    def find(self, channel: str, ts: str) -> SlackMessage | None:
        """The message ``ts`` in ``channel``."""
        return next((m for m in self.messages if m.channel == channel and m.ts == ts), None)

    def thread(self, channel: str, ts: str) -> list[SlackMessage]:
        """The replies under the message ``ts``, oldest first."""
        return [m for m in self.messages if m.channel == channel and m.thread_ts == ts]

    def state(self) -> dict[str, Any]:
        """Channels and their messages, as ``GET /_emulator/state`` shows them."""
        return {
            "messages": [
                {"channel": m.channel, "edited": m.edited, **m.as_json()} for m in self.messages
            ],
            "archived": sorted(self.archived),
        }


def _text(body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    # Slack serves webhook answers (even "ok") as text/html.
    return Response(body, status_code=status, media_type="text/html", headers=headers)


def _message_problem(body: dict[str, Any]) -> str | None:
    """The Slack error code for a message body that cannot be posted, else ``None``."""
    text, blocks, attachments = body.get("text"), body.get("blocks"), body.get("attachments")
    if isinstance(blocks, str):  # form-encoded calls carry JSON in a string
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return "invalid_blocks"
    if not text and not blocks and not attachments:
        return "no_text"
    if blocks is not None:
        if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
            return "invalid_blocks"
        for block in blocks:
            if not isinstance(block, dict) or "type" not in block:
                return "invalid_blocks"
            section = block.get("text")
            if isinstance(section, dict) and len(str(section.get("text", ""))) > MAX_SECTION_TEXT:
                return "invalid_blocks"
    if attachments is not None and (not isinstance(attachments, list) or len(attachments) > 100):
        return "too_many_attachments"
    return None


class _App:
    def __init__(self, emu: SlackEmulator) -> None:
        self.emu = emu

    # -- incoming webhooks ---------------------------------------------------------------------
    async def webhook(self, request: Request) -> Response:
        emu = self.emu
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        path = request.url.path
        resp, note = await self._webhook(path, body)
        secret = path.removeprefix("/services/").split("/")[2:]  # a webhook URL's secret part
        emu.recorder.add(request, body, resp.status_code, note, secret)
        return resp

    async def _webhook(self, path: str, body: Any) -> tuple[Response, str]:
        emu = self.emu
        fault = await emu.faults.draw(emu.fail_rate, emu.rng)
        if fault is not None:
            code = {"400": "invalid_payload", "401": "invalid_token", "404": "no_service",
                    "410": "channel_is_archived", "500": "rollup_error"}.get(fault)  # fmt: skip
            if fault == "429":
                return self._webhook_429(emu.faults.retry_after), "fault: 429"
            return _text(
                code or "rollup_error", 403 if fault == "401" else int(fault)
            ), f"fault: {fault}"
        if not _WEBHOOK.match(path) or path in emu.disabled_webhooks:
            return _text("no_service", 404), "unknown webhook"
        if path in emu.archived:
            return _text("channel_is_archived", 410), "archived"
        if not isinstance(body, dict):
            return _text("invalid_payload", 400), "invalid"
        problem = _message_problem(body)
        if problem is not None:
            return _text(problem, 400), problem
        wait = emu.limiter.hit(path)
        if wait:
            return self._webhook_429(max(1, round(wait))), "rate limited"
        emu.messages.append(
            SlackMessage(path, emu.next_ts(), str(body.get("text") or "")[:MAX_TEXT],
                         body.get("blocks"), body.get("attachments"))
        )  # fmt: skip
        return _text("ok", 200), "posted"

    @staticmethod
    def _webhook_429(retry_after: int) -> Response:
        return json_response(
            {"ok": False, "error": "ratelimited", "retry_after": retry_after},
            429, {"Retry-After": str(retry_after)},
        )  # fmt: skip

    # -- Web API -------------------------------------------------------------------------------
    async def api(self, request: Request) -> Response:
        emu = self.emu
        method = request.path_params["method"]
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        body: Any
        if "application/json" in ctype:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        else:
            body = dict(parse_qsl(raw.decode(errors="replace")))
        resp, note = await self._api(request, method, body)
        emu.recorder.add(request, body, resp.status_code, note)
        return resp

    def _token(self, request: Request, body: Any) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return None

    async def _api(self, request: Request, method: str, body: Any) -> tuple[Response, str]:
        emu = self.emu

        def err(
            code: str, status: int = 200, headers: dict[str, str] | None = None
        ) -> tuple[Response, str]:
            return json_response({"ok": False, "error": code}, status, headers), code

        if method not in _METHODS:
            return err("unknown_method", 404)
        raw = await request.body()
        form_token = (
            dict(parse_qsl(raw.decode(errors="replace"))).get("token") if b"token=" in raw else None
        )
        token = self._token(request, body) or form_token
        if not token:
            return err("not_authed")
        if token not in emu.bot_tokens:
            return err("invalid_auth")
        fault = await emu.faults.draw(emu.fail_rate, emu.rng)
        if fault is not None:
            if fault == "429":
                r = str(emu.faults.retry_after)
                return err("ratelimited", 429, {"Retry-After": r})[0], "fault: 429"
            code, status = {"400": ("invalid_arguments", 200), "401": ("invalid_auth", 200),
                            "404": ("channel_not_found", 200), "410": ("is_archived", 200),
                            "500": ("internal_error", 500)}[fault]  # fmt: skip
            return err(code, status)[0], f"fault: {fault}"
        if method == "auth.test":
            return json_response({"ok": True, "url": "https://emulator.slack.com/", "team": "Emulator",
                                  "user": "alerts-bot", "team_id": "T0EMULATOR", "user_id": "U0EMULATOR",
                                  "bot_id": "B0EMULATOR"}), "auth.test"  # fmt: skip
        if not isinstance(body, dict):
            return err("invalid_json")
        channel = str(body.get("channel") or "")
        if not channel:
            return err("channel_not_found")
        known = emu.channels is None and bool(_CHANNEL.match(channel))
        if not known and (emu.channels is None or channel not in emu.channels):
            return err("channel_not_found")
        if channel in emu.not_in_channel:
            return err("not_in_channel")
        if channel in emu.archived:
            return err("is_archived")
        if method == "chat.update":
            return self._update(channel, body)
        if method.startswith("conversations."):
            return self._read(method, channel, body)
        problem = _message_problem(body)
        if problem is not None:
            return err(problem)
        wait = emu.limiter.hit(channel)
        if wait:
            return err("ratelimited", 429, {"Retry-After": str(max(1, round(wait)))})[
                0
            ], "rate limited"
        thread_ts = body.get("thread_ts") or None
        note = "posted"
        if thread_ts is not None:
            parent = emu.find(channel, str(thread_ts))
            note = "reply" if parent is not None else "reply to an unknown thread_ts"
        blocks = body.get("blocks")
        meta = body.get("metadata")
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except ValueError:
                return err("invalid_metadata_format")
        if meta is not None and not (isinstance(meta, dict) and meta.get("event_type")):
            return err("invalid_metadata_format")
        msg = SlackMessage(
            channel, emu.next_ts(), str(body.get("text") or "")[:MAX_TEXT],
            json.loads(blocks) if isinstance(blocks, str) else blocks,
            body.get("attachments"), str(thread_ts) if thread_ts else None, metadata=meta,
        )  # fmt: skip
        emu.messages.append(msg)
        return json_response(
            {"ok": True, "channel": channel, "ts": msg.ts, "message": msg.as_json()}
        ), note

    def _read(self, method: str, channel: str, body: dict[str, Any]) -> tuple[Response, str]:
        """``conversations.history`` (newest first, top-level messages and thread parents) and
        ``conversations.replies`` (the parent then its replies, oldest first); metadata only
        with ``include_all_metadata``."""
        meta = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
        try:
            limit = max(1, min(1000, int(body.get("limit") or 100)))
        except ValueError:
            return json_response({"ok": False, "error": "invalid_limit"}), "invalid_limit"
        if method == "conversations.history":
            found = [m for m in self.emu.messages if m.channel == channel and m.thread_ts is None]
            found = found[::-1]
        else:
            ts = str(body.get("ts") or "")
            parent = self.emu.find(channel, ts)
            if parent is None:
                return json_response({"ok": False, "error": "thread_not_found"}), "thread_not_found"
            found = [parent, *self.emu.thread(channel, ts)]
        items = [m.as_json(metadata=meta) for m in found[:limit]]
        return json_response(
            {"ok": True, "messages": items, "has_more": len(found) > limit}
        ), "read"

    def _update(self, channel: str, body: dict[str, Any]) -> tuple[Response, str]:
        ts = str(body.get("ts") or "")
        msg = self.emu.find(channel, ts)
        if msg is None:
            return json_response({"ok": False, "error": "message_not_found"}), "message_not_found"
        problem = _message_problem(body)
        if problem is not None:
            return json_response({"ok": False, "error": problem}), problem
        msg.history.append({"text": msg.text, "blocks": msg.blocks, "attachments": msg.attachments})
        blocks = body.get("blocks")
        msg.text = str(body.get("text") or "")[:MAX_TEXT]
        msg.blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        msg.attachments = body.get("attachments")
        msg.edited += 1
        out = {"ok": True, "channel": channel, "ts": ts, "text": msg.text, "message": msg.as_json()}
        return json_response(out), "updated"


def create_app(
    *,
    bot_tokens: set[str] | None = None,
    channels: set[str] | None = None,
    rate_per_second: float = 1.0,
    burst: int = 4,
    **options: Unpack[ControlOptions],
) -> Starlette:
    """The Slack emulator; ``app.state.emulator`` is its ``SlackEmulator``.

    ``rate_per_second``/``burst``: messages per channel (or webhook) before 429 (0: no limit).
    ``fault``: answer the next ``fault_count`` requests (all when ``None``) with that fault; the
    other ``options`` as ``ControlOptions`` says.
    """
    emu = SlackEmulator(
        **controls(options), limiter=TokenBucket(rate_per_second, burst),
        bot_tokens=bot_tokens or {DEFAULT_BOT_TOKEN}, channels=channels,
    )  # fmt: skip
    h = _App(emu)
    app = Starlette(
        routes=[
            Route("/services/{rest:path}", h.webhook, methods=["POST"]),
            Route("/api/{method}", h.api, methods=["POST", "GET"]),
            *control_routes(emu.recorder, emu.faults, emu.state),
        ]
    )
    app.state.emulator = emu
    return app
