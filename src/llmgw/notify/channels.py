"""Send one ``Notification`` to a configured channel, with retries; never log a secret.

A channel is ``[notify.channels.<name>]`` in the config (``NotifyChannel``): ``kind`` is
``webhook`` (a JSON POST of ``Notification.payload()``), ``slack`` (an incoming webhook:
``{"text": ...}``) or ``email`` (SMTP through the standard library's ``smtplib``, in a worker
thread, with STARTTLS or implicit TLS). URLs and passwords are ``SecretStr``: a Slack webhook
URL *is* a credential, so logs and errors name the channel and its kind, never its URL, host
credentials or the upstream's answer body.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from llmgw.config import NotifyChannel, NotifySettings
from llmgw.errors import LlmgwError

if TYPE_CHECKING:
    import httpx

__all__ = ["Notification", "Notifier", "NotifyError", "send"]

log = logging.getLogger("llmgw.notify")


class NotifyError(LlmgwError):
    """A channel did not accept a notification after its retries (or is not configured)."""

    exit_code = 1
    http_status = 502
    error_type = "notify_error"


@dataclass(frozen=True, slots=True)
class Notification:
    """What is sent: a one-line ``title``, a plain ``text``, machine-readable ``data``, an
    ``event`` name (``budget.threshold``, ``report.daily``) and optionally an ``html`` body
    (email sends it as the alternative part; the webhook carries it)."""

    event: str
    title: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    html: str | None = None

    def payload(self) -> dict[str, Any]:
        """The generic webhook's JSON body."""
        body: dict[str, Any] = {
            "event": self.event,
            "title": self.title,
            "text": self.text,
            "data": self.data,
        }
        if self.html is not None:
            body["html"] = self.html
        return body

    def slack(self) -> dict[str, Any]:
        """The Slack incoming webhook's JSON body (mrkdwn)."""
        return {"text": f"*{self.title}*\n{self.text}"}


def _email(channel: NotifyChannel, note: Notification) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = note.title
    msg["From"] = channel.sender or "llmgw@localhost"
    msg["To"] = ", ".join(channel.to)
    msg.set_content(note.text)
    if note.html is not None:
        msg.add_alternative(note.html, subtype="html")
    return msg


def _smtp_send(channel: NotifyChannel, msg: EmailMessage) -> None:
    host = channel.smtp_host or "localhost"
    ctx = ssl.create_default_context()
    smtp: smtplib.SMTP
    if channel.smtp_security == "tls":
        smtp = smtplib.SMTP_SSL(host, channel.smtp_port, timeout=channel.timeout, context=ctx)
    else:
        smtp = smtplib.SMTP(host, channel.smtp_port, timeout=channel.timeout)
    with smtp:
        if channel.smtp_security == "starttls":
            smtp.starttls(context=ctx)
        if channel.username is not None:
            password = channel.password.get_secret_value() if channel.password else ""
            smtp.login(channel.username, password)
        smtp.send_message(msg)


async def _send_once(
    channel: NotifyChannel, note: Notification, client: httpx.AsyncClient | None
) -> None:
    if channel.kind == "email":
        if not channel.to:
            raise NotifyError(f"email channel {channel.name!r} has no recipients")
        await asyncio.to_thread(_smtp_send, channel, _email(channel, note))
        return
    if channel.url is None:
        raise NotifyError(f"{channel.kind} channel {channel.name!r} has no url")
    import httpx  # here: a gateway without channels never loads it for notifications

    body = note.slack() if channel.kind == "slack" else note.payload()
    url = channel.url.get_secret_value()
    headers = dict(channel.headers)
    if client is None:
        async with httpx.AsyncClient(timeout=channel.timeout) as own:
            response = await own.post(url, json=body, headers=headers)
    else:
        response = await client.post(url, json=body, headers=headers, timeout=channel.timeout)
    if response.status_code >= 300:
        # The status only: an upstream body may echo the URL's token.
        raise NotifyError(
            f"{channel.kind} channel {channel.name!r} answered {response.status_code}"
        )


def _describe(exc: BaseException) -> str:
    """An error's class and, for our own errors, the message (which names no secret); other
    exceptions' messages can carry URLs, so only their class is shown."""
    if isinstance(exc, NotifyError):
        return exc.message
    return type(exc).__name__


async def send(
    channel: NotifyChannel,
    note: Notification,
    *,
    client: httpx.AsyncClient | None = None,
    sleep: Any = asyncio.sleep,
) -> None:
    """Deliver ``note`` through ``channel``: up to ``channel.retries + 1`` attempts with
    exponential backoff (``retry_backoff`` seconds, doubled each time); ``NotifyError`` when
    all fail. A 4xx other than 408/429 is not retried (the request itself is wrong)."""
    import httpx

    delay = channel.retry_backoff
    for attempt in range(channel.retries + 1):
        try:
            await _send_once(channel, note, client)
        except (OSError, smtplib.SMTPException, httpx.HTTPError, NotifyError) as exc:
            final = attempt == channel.retries or _permanent(exc)
            log.warning(
                "notify: %s channel %r attempt %d failed: %s%s",
                channel.kind,
                channel.name,
                attempt + 1,
                _describe(exc),
                "" if final else f"; retrying in {delay:g}s",
            )
            if final:
                raise NotifyError(
                    f"{channel.kind} channel {channel.name!r} failed after {attempt + 1} "
                    f"attempt(s): {_describe(exc)}",
                    hint="check the channel under [notify.channels] in the config file",
                ) from None
            await sleep(delay)
            delay *= 2
        else:
            log.info("notify: %s sent to %s channel %r", note.event, channel.kind, channel.name)
            return


def _permanent(exc: BaseException) -> bool:
    if isinstance(exc, smtplib.SMTPAuthenticationError | smtplib.SMTPRecipientsRefused):
        return True
    if isinstance(exc, NotifyError):
        msg = exc.message
        if "has no" in msg:
            return True
        code = msg.rsplit(" ", 1)[-1]
        return code.isdigit() and 400 <= int(code) < 500 and int(code) not in (408, 429)
    return False


class Notifier:
    """The configured channels by name; ``notify`` sends to several and reports each result."""

    def __init__(self, settings: NotifySettings) -> None:
        self.channels: dict[str, NotifyChannel] = {
            name: ch.model_copy(update={"name": name}) for name, ch in settings.channels.items()
        }
        self.sent = 0
        self.failed = 0

    def channel(self, name: str) -> NotifyChannel:
        """The channel called ``name``, or ``NotifyError``."""
        ch = self.channels.get(name)
        if ch is None:
            raise NotifyError(
                f"no notification channel named {name!r}",
                hint="define it under [notify.channels.NAME] in the config file",
            )
        return ch

    async def notify(self, names: list[str], note: Notification) -> dict[str, bool]:
        """Send ``note`` to each channel in ``names`` concurrently; never raises (failures are
        logged and counted): channel name -> delivered."""

        async def one(name: str) -> bool:
            try:
                await send(self.channel(name), note)
            except NotifyError as exc:
                log.error("notify: %s not delivered: %s", note.event, exc.message)
                self.failed += 1
                return False
            self.sent += 1
            return True

        results = await asyncio.gather(*(one(n) for n in names))
        return dict(zip(names, results, strict=True))
