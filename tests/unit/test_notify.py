"""Notification channels against real receivers: an HTTP webhook, Slack's body, SMTP (aiosmtpd)."""

from __future__ import annotations

import logging
import socket
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from llmgw.config import NotifyChannel, NotifySettings
from llmgw.notify import Notification, Notifier, NotifyError, send
from tests.webhook_receiver import WebhookReceiver

NOTE = Notification(
    event="budget.threshold",
    title="Budget 80% reached",
    text="key ci spent 80.00 of 100.00 RUB today",
    data={"percent": 80},
)


async def _no_sleep(_: float) -> None:
    return None


def _channel(**kw: Any) -> NotifyChannel:
    return NotifyChannel.model_validate({"name": "t", "retry_backoff": 0, **kw})


async def test_webhook_posts_the_json_payload_with_headers() -> None:
    with WebhookReceiver() as hook:
        ch = _channel(kind="webhook", url=hook.url + "/in", headers={"Authorization": "Bearer x"})
        await send(ch, NOTE)
        ((path, headers, body),) = hook.received
    assert path == "/in"
    assert headers["Authorization"] == "Bearer x"
    assert body == {
        "event": "budget.threshold",
        "title": "Budget 80% reached",
        "text": "key ci spent 80.00 of 100.00 RUB today",
        "data": {"percent": 80},
    }


async def test_slack_gets_a_text_body() -> None:
    with WebhookReceiver() as hook:
        await send(_channel(kind="slack", url=hook.url + "/services/T/B/secret"), NOTE)
        assert hook.bodies() == [
            {"text": "*Budget 80% reached*\nkey ci spent 80.00 of 100.00 RUB today"}
        ]


async def test_5xx_is_retried_then_delivered() -> None:
    with WebhookReceiver() as hook:
        hook.statuses[:] = [500, 503]
        await send(_channel(kind="webhook", url=hook.url, retries=3), NOTE, sleep=_no_sleep)
        assert len(hook.bodies()) == 1


async def test_4xx_is_not_retried_and_the_secret_url_is_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llmgw.notify")
    with WebhookReceiver() as hook:
        hook.statuses[:] = [404, 200]
        ch = _channel(kind="slack", url=hook.url + "/services/T0/B0/xoxsecret", retries=3)
        with pytest.raises(NotifyError) as err:
            await send(ch, NOTE, sleep=_no_sleep)
        assert hook.statuses == [200]  # one attempt only
    assert "404" in err.value.message
    assert "xoxsecret" not in err.value.message
    assert "xoxsecret" not in caplog.text
    assert "slack channel 't'" in caplog.text


async def test_unreachable_gives_up_after_the_retries(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    ch = _channel(kind="webhook", url=f"http://127.0.0.1:{port}/tok3n", retries=2, timeout=1)
    with pytest.raises(NotifyError, match="after 3 attempt"):
        await send(ch, NOTE, sleep=_no_sleep)
    assert "tok3n" not in caplog.text


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


async def test_email_is_delivered_to_a_real_smtp_server() -> None:
    inbox = _Inbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        ch = _channel(
            kind="email",
            smtp_host="127.0.0.1",
            smtp_port=port,
            sender="llmgw@example.test",
            to=["finance@example.test", "ops@example.test"],
        )
        note = Notification(event="report.daily", title="Daily", text="plain", html="<b>h</b>")
        await send(ch, note)
    finally:
        controller.stop()
    ((sender, rcpts, raw),) = inbox.messages
    assert sender == "llmgw@example.test"
    assert rcpts == ["finance@example.test", "ops@example.test"]
    msg = message_from_bytes(raw)
    assert msg["Subject"] == "Daily"
    parts = {p.get_content_type(): p.get_payload(decode=True) for p in msg.walk()}
    assert parts["text/plain"] == b"plain\r\n"
    assert parts["text/html"] == b"<b>h</b>\r\n"


async def test_notifier_sends_to_each_named_channel_and_counts_failures() -> None:
    with WebhookReceiver() as hook:
        settings = NotifySettings.model_validate(
            {
                "channels": {
                    "hook": {"kind": "webhook", "url": hook.url + "/a"},
                    "broken": {"kind": "webhook", "url": hook.url + "/b", "retries": 0},
                }
            }
        )
        hook.statuses[:] = []
        notifier = Notifier(settings)
        assert notifier.channel("hook").name == "hook"
        results = await notifier.notify(["hook", "missing"], NOTE)
    assert results == {"hook": True, "missing": False}
    assert notifier.sent == 1 and notifier.failed == 1
    assert hook.bodies("/a")[0]["event"] == "budget.threshold"
