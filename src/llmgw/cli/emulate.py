"""``llmgw emulate``: local servers that speak real providers' wire formats, for demos, tests and CI.

Each subcommand is one function below (``emulate_openai``, ...); servers run in the foreground
until Ctrl-C and print the URLs and config to use on start. Heavy imports (uvicorn, starlette) happen
inside the command functions so ``import llmgw.cli`` stays light.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from llmgw.errors import UsageError

__all__ = ["emulate_app"]

emulate_app = typer.Typer(
    help="Run a local emulator of an LLM provider or an alert target (no cloud account needed).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

# Options every emulator shares.
HostOpt = Annotated[str, typer.Option("--host", help="Interface to listen on.")]
LatencyOpt = Annotated[
    float,
    typer.Option(
        "--latency-ms", min=0, help="Delay before each answer's headers, in milliseconds."
    ),
]
FailRateOpt = Annotated[
    float,
    typer.Option(
        "--fail-rate",
        min=0.0,
        max=1.0,
        help="Share of requests (0..1) answered with an injected 500.",
    ),
]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Seed for --fail-rate, for repeatable runs.")
]


class OpenAIFault(StrEnum):
    """Faults of the OpenAI emulator (same names as ``llmgw.emulators.openai.FAULTS``)."""

    hang_before_headers = "hang_before_headers"
    stall_mid_stream = "stall_mid_stream"
    invalid_json = "invalid_json"
    html_error = "html_error"
    redirect = "redirect"
    echo_credentials = "echo_credentials"
    drop_mid_stream = "drop_mid_stream"


def _models(value: str) -> tuple[str, ...]:
    models = tuple(m.strip() for m in value.split(",") if m.strip())
    if value.strip() and not models:
        raise UsageError("--models: give a comma-separated list of model names")
    return models


def _openai_banner(url: str, api_key: str | None, models: tuple[str, ...]) -> str:
    lines = [
        f"OpenAI-compatible emulator listening on {url}",
        f"base URL: {url}/v1",
        "",
        "Config snippet for llmgw (config.toml):",
        "",
        "[[providers]]",
        'name = "local"',
        'kind = "openai"',
        f'base_url = "{url}/v1"',
    ]
    if api_key:
        lines.append(
            'api_key_env = "LOCAL_OPENAI_KEY"   # export LOCAL_OPENAI_KEY=<the --api-key value>'
        )
    if models:
        lines.append("models = [" + ", ".join(f'"{m}"' for m in models) + "]")
    lines += ["", "Press Ctrl-C to stop."]
    return "\n".join(lines)


@emulate_app.command("openai")
def emulate_openai(
    host: HostOpt = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0 picks a free one).")
    ] = 9001,
    latency_ms: LatencyOpt = 0.0,
    chunk_delay_ms: Annotated[
        float,
        typer.Option(
            "--chunk-delay-ms", min=0, help="Delay between streamed chunks, in milliseconds."
        ),
    ] = 0.0,
    fail_rate: FailRateOpt = 0.0,
    seed: SeedOpt = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="LLMGW_EMULATOR_API_KEY",
            help="Require `Authorization: Bearer KEY` (else any caller is accepted).",
            show_default=False,
        ),
    ] = None,
    models: Annotated[
        str,
        typer.Option(
            "--models", help="Comma-separated models to serve; an empty string accepts any name."
        ),
    ] = "gpt-4o-mini,text-embedding-3-small",
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            "--max-concurrency",
            min=1,
            help="Answer 429 with Retry-After beyond this many in flight.",
        ),
    ] = None,
    fault: Annotated[
        OpenAIFault | None,
        typer.Option(
            "--fault", help="Misbehave on every request, to test a client's error handling."
        ),
    ] = None,
    context_window: Annotated[
        int | None,
        typer.Option(
            "--context-window",
            min=1,
            help="Answer 400 context_length_exceeded when a chat's messages count more tokens.",
        ),
    ] = None,
) -> None:
    """Serve an OpenAI-compatible API: chat (JSON and SSE streaming, tool calls), embeddings, models.

    Answers are deterministic: chat echoes the last user message ("Echo: ..."), a tool is called when the message names it (or tool_choice forces it), embeddings come from a hash of the text. Token counts are whitespace-separated words.

    Point llmgw or the openai package at the printed base URL. Example: llmgw emulate openai --port 9001 --latency-ms 20
    """
    from llmgw.emulators.openai import create_app
    from llmgw.emulators.runner import serve_forever

    model_list = _models(models)
    app = create_app(
        latency_ms=latency_ms,
        chunk_delay_ms=chunk_delay_ms,
        fail_rate=fail_rate,
        seed=seed,
        api_key=api_key,
        models=model_list,
        max_concurrency=max_concurrency,
        fault=fault.value if fault else None,
        context_window=context_window,
    )

    def ready(url: str, _port: int) -> None:
        typer.echo(_openai_banner(url, api_key, model_list), err=False)

    try:
        serve_forever(app, host, port, on_ready=ready)
    except OSError as exc:
        from llmgw.listen import listen_error

        raise listen_error(host, port, exc) from None


# GigaChat and YandexGPT emulators live in their own module (owner: russian-providers helper).
from llmgw.cli.emulate_ru import emulate_gigachat, emulate_yandexgpt  # noqa: E402

emulate_app.command("gigachat")(emulate_gigachat)
emulate_app.command("yandexgpt")(emulate_yandexgpt)

# Slack, PagerDuty and Rootly (the alert targets) live in their own module.
from llmgw.cli.emulate_alerting import emulate_pagerduty, emulate_rootly, emulate_slack  # noqa: E402

emulate_app.command("slack")(emulate_slack)
emulate_app.command("pagerduty")(emulate_pagerduty)
emulate_app.command("rootly")(emulate_rootly)
