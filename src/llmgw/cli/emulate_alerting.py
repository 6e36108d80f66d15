"""``llmgw emulate slack|pagerduty|rootly`` (registered on ``emulate_app``): the alert targets."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from llmgw.emulators.control import ControlOptions

__all__ = ["emulate_pagerduty", "emulate_rootly", "emulate_slack"]

HostOpt = Annotated[str, typer.Option("--host", help="Interface to listen on.")]
PortOpt = Annotated[
    int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0 picks a free one).")
]
FailRateOpt = Annotated[
    float,
    typer.Option(
        "--fail-rate", min=0.0, max=1.0, help="Share of requests (0..1) answered with a 500."
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for --fail-rate, for repeatable runs.")]


class AlertFault(StrEnum):
    """Faults of the alerting emulators (``llmgw.emulators.control.ALERT_FAULTS``)."""

    error_400 = "400"
    error_401 = "401"
    error_404 = "404"
    error_410 = "410"
    error_429 = "429"
    error_500 = "500"
    timeout = "timeout"


FaultOpt = Annotated[
    AlertFault | None,
    typer.Option(
        "--fault",
        help="Answer requests with this fault (the service's own error body; 429 with Retry-After; "
        "timeout holds the request --hang-seconds then answers 500).",
    ),
]
FaultCountOpt = Annotated[
    int | None,
    typer.Option("--fault-count", min=1, help="Apply --fault to this many requests, then behave."),
]
RetryAfterOpt = Annotated[
    int, typer.Option("--retry-after", min=0, help="Retry-After seconds on an injected 429.")
]
HangOpt = Annotated[
    float, typer.Option("--hang-seconds", min=0, help="How long the timeout fault holds a request.")
]
LogOpt = Annotated[
    Path | None,
    typer.Option("--log", help="Append every received request to this file as JSON lines."),
]

_CONTROL = [
    "",
    "What it received: GET {url}/_emulator/received   (DELETE clears it)",
    'Faults at run time: POST {url}/_emulator/fault  {{"fault": "429", "count": 2}}',
    "State: GET {url}/_emulator/state",
    "",
    "Press Ctrl-C to stop.",
]


def _serve(app: Any, host: str, port: int, banner: Callable[[str], list[str]]) -> None:
    from llmgw.emulators.runner import serve_forever

    def ready(url: str, _port: int) -> None:
        typer.echo("\n".join([*banner(url), *(line.format(url=url) for line in _CONTROL)]))

    try:
        serve_forever(app, host, port, on_ready=ready)
    except OSError as exc:
        from llmgw.listen import listen_error

        raise listen_error(host, port, exc) from None


def _options(
    fault: AlertFault | None,
    fault_count: int | None,
    retry_after: int,
    hang_seconds: float,
    fail_rate: float,
    seed: int,
    log: Path | None,
) -> ControlOptions:
    """The shared fault and log flags as every alerting emulator's ``create_app`` takes them."""
    return {
        "fault": fault.value if fault else None, "fault_count": fault_count,
        "retry_after": retry_after, "hang_seconds": hang_seconds, "fail_rate": fail_rate,
        "seed": seed, "log_path": log,
    }  # fmt: skip


def emulate_slack(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 9011,
    bot_token: Annotated[
        str | None,
        typer.Option(
            "--bot-token",
            envvar="LLMGW_EMULATOR_SLACK_TOKEN",
            help="Bot token the Web API accepts (default: a built-in test token).",
            show_default=False,
        ),
    ] = None,
    channels: Annotated[
        str,
        typer.Option(
            "--channels", help="Comma-separated channel ids; empty: any well-formed id (C0123...)."
        ),
    ] = "",
    rate: Annotated[
        float,
        typer.Option(
            "--rate", min=0, help="Messages per second per channel or webhook (0: no limit)."
        ),
    ] = 1.0,
    burst: Annotated[
        int, typer.Option("--burst", min=1, help="Short burst allowed above --rate.")
    ] = 4,
    fault: FaultOpt = None,
    fault_count: FaultCountOpt = None,
    retry_after: RetryAfterOpt = 1,
    hang_seconds: HangOpt = 30.0,
    fail_rate: FailRateOpt = 0.0,
    seed: SeedOpt = 0,
    log: LogOpt = None,
) -> None:
    """Serve Slack: incoming webhooks (/services/T.../B.../X...) and the Web API's chat.postMessage and chat.update (/api/...).

    Webhooks answer the plain text ok, or a status with Slack's short error text (400 no_text, 404 no_service, 410 channel_is_archived, 429 with Retry-After); the Web API answers {"ok": true, "ts": ...} with increasing ts, threads under thread_ts, and {"ok": false, "error": ...} for its errors, ratelimited (429, Retry-After) beyond --rate per channel. slack_sdk's WebClient(base_url=URL/api/) and WebhookClient work against it.

    Example: llmgw emulate slack --port 9011 --log slack.jsonl
    """
    from llmgw.emulators import slack

    token = bot_token or slack.DEFAULT_BOT_TOKEN
    chans = {c.strip() for c in channels.split(",") if c.strip()} or None
    app = slack.create_app(
        bot_tokens={token}, channels=chans, rate_per_second=rate, burst=burst,
        **_options(fault, fault_count, retry_after, hang_seconds, fail_rate, seed, log),
    )  # fmt: skip

    def banner(url: str) -> list[str]:
        shown = token if bot_token is None else "<the --bot-token value>"
        return [
            f"Slack emulator listening on {url}",
            f"webhook URL: {url}/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            f"Web API base URL: {url}/api/",
            f"bot token: {shown}",
        ]

    _serve(app, host, port, banner)


def emulate_pagerduty(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 9012,
    routing_keys: Annotated[
        str,
        typer.Option(
            "--routing-keys",
            help="Comma-separated integration keys accepted; empty: any well-formed key.",
        ),
    ] = "",
    rate_limit: Annotated[
        int,
        typer.Option(
            "--rate-limit", min=0, help="Events per minute per routing key (0: no limit)."
        ),
    ] = 120,
    fault: FaultOpt = None,
    fault_count: FaultCountOpt = None,
    retry_after: RetryAfterOpt = 1,
    hang_seconds: HangOpt = 30.0,
    fail_rate: FailRateOpt = 0.0,
    seed: SeedOpt = 0,
    log: LogOpt = None,
) -> None:
    """Serve the PagerDuty Events API v2 (POST /v2/enqueue).

    Answers 202 {"status": "success", "dedup_key": ...} (a key is generated when a trigger has none), 400 "invalid event" with the list of errors (routing_key of 32 characters, event_action, summary/source/severity, 512 KB), 429 beyond --rate-limit per routing key; alerts go triggered -> acknowledged -> resolved per (routing_key, dedup_key). The pagerduty package's EventsApiV2Client(base_url=URL) works against it.

    Example: llmgw emulate pagerduty --port 9012 --fault 429 --fault-count 2
    """
    from llmgw.emulators import pagerduty

    keys = {k.strip() for k in routing_keys.split(",") if k.strip()} or None
    app = pagerduty.create_app(
        routing_keys=keys, rate_limit=rate_limit,
        **_options(fault, fault_count, retry_after, hang_seconds, fail_rate, seed, log),
    )  # fmt: skip

    def banner(url: str) -> list[str]:
        example = pagerduty.DEFAULT_ROUTING_KEY if keys is None else "<one of --routing-keys>"
        return [
            f"PagerDuty Events API v2 emulator listening on {url}",
            f"events URL: {url}/v2/enqueue",
            f"routing key: {example}"
            + ("   (any 32 alphanumeric characters)" if keys is None else ""),
        ]

    _serve(app, host, port, banner)


def emulate_rootly(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 9013,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="LLMGW_EMULATOR_ROOTLY_KEY",
            help="API key accepted as Bearer (default: a built-in test key).",
            show_default=False,
        ),
    ] = None,
    strict_content_type: Annotated[
        bool,
        typer.Option(
            "--strict-content-type",
            help="Answer 415 unless Content-Type is application/vnd.api+json.",
        ),
    ] = False,
    rate_limit: Annotated[
        int,
        typer.Option("--rate-limit", min=0, help="Writes per minute per API key (0: no limit)."),
    ] = 3000,
    fault: FaultOpt = None,
    fault_count: FaultCountOpt = None,
    retry_after: RetryAfterOpt = 1,
    hang_seconds: HangOpt = 30.0,
    fail_rate: FailRateOpt = 0.0,
    seed: SeedOpt = 0,
    log: LogOpt = None,
) -> None:
    """Serve Rootly's alerts API (JSON:API: POST /v1/alerts, POST /v1/alerts/ID/resolve and /acknowledge, GET /v1/alerts) and the generic webhook alert source.

    Creates answer 201 with the alert's id and short_id; a bad or missing key answers 401, a missing source/summary or a value outside the enums 422, an unknown id 404, all with a JSON:API errors body; 429 beyond --rate-limit per key.

    Example: llmgw emulate rootly --port 9013 --strict-content-type
    """
    from llmgw.emulators import rootly

    key = api_key or rootly.DEFAULT_API_KEY
    app = rootly.create_app(
        api_keys={key}, strict_content_type=strict_content_type, rate_limit=rate_limit,
        **_options(fault, fault_count, retry_after, hang_seconds, fail_rate, seed, log),
    )  # fmt: skip

    def banner(url: str) -> list[str]:
        return [
            f"Rootly emulator listening on {url}",
            f"base URL: {url}   (alerts: {url}/v1/alerts)",
            f"API key: {key if api_key is None else '<the --api-key value>'}",
            f"generic webhook: {url}/webhooks/incoming/generic_webhooks"
            f"   (secret: {rootly.DEFAULT_WEBHOOK_SECRET})",
        ]

    _serve(app, host, port, banner)
