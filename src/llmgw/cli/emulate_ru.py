"""``llmgw emulate gigachat`` and ``llmgw emulate yandexgpt`` (registered on ``emulate_app``)."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from llmgw.errors import UsageError

__all__ = ["emulate_gigachat", "emulate_yandexgpt"]

HostOpt = Annotated[str, typer.Option("--host", help="Interface to listen on.")]
LatencyOpt = Annotated[
    float, typer.Option("--latency-ms", min=0, help="Delay before each answer, in milliseconds.")
]
FailRateOpt = Annotated[
    float,
    typer.Option(
        "--fail-rate",
        min=0.0,
        max=1.0,
        help="Share of requests (0..1) answered with the provider's 500.",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for --fail-rate, for repeatable runs.")]


class Fault(StrEnum):
    """Faults of the GigaChat and YandexGPT emulators (``llmgw.emulators.faults.FAULTS``)."""

    error_500 = "500"
    error_429 = "429"
    timeout = "timeout"
    invalid_json = "invalid_json"
    html = "html"
    redirect = "redirect"
    echo_credentials = "echo_credentials"


FaultOpt = Annotated[
    Fault | None,
    typer.Option("--fault", help="Misbehave on every API request (not the token endpoint)."),
]


def _serve(app: Any, host: str, port: int, banner: Any) -> None:
    from llmgw.emulators.runner import serve_forever

    try:
        serve_forever(app, host, port, on_ready=lambda url, _p: typer.echo(banner(url)))
    except OSError as exc:
        from llmgw.listen import listen_error

        raise listen_error(host, port, exc) from None


def emulate_gigachat(
    host: HostOpt = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0 picks a free one).")
    ] = 9002,
    latency_ms: LatencyOpt = 0.0,
    fail_rate: FailRateOpt = 0.0,
    seed: SeedOpt = 0,
    credentials: Annotated[
        str | None,
        typer.Option(
            "--credentials",
            envvar="LLMGW_EMULATOR_GIGACHAT_KEY",
            help="The authorization key (base64 of id:secret) to accept; default: a built-in test key.",
            show_default=False,
        ),
    ] = None,
    token_ttl: Annotated[
        float, typer.Option("--token-ttl", min=1, help="Access token lifetime in seconds.")
    ] = 1800.0,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            "--max-concurrency",
            min=1,
            help="Concurrent requests per account (default: 1 PERS, 10 B2B/CORP).",
        ),
    ] = None,
    fault: FaultOpt = None,
    oauth_fault: Annotated[
        Fault | None, typer.Option("--oauth-fault", help="Misbehave on every token request.")
    ] = None,
    expires_at_seconds: Annotated[
        bool,
        typer.Option(
            "--expires-at-seconds", help="Answer expires_at in seconds instead of milliseconds."
        ),
    ] = False,
) -> None:
    """Serve GigaChat: the OAuth endpoint (/api/v2/oauth) and the v1 API (/api/v1 and /v1) on one port.

    Chat (JSON and SSE, functions), embeddings, models, tokens/count and balance in GigaChat's own formats; tokens expire after --token-ttl; over --max-concurrency answers the real 429. The official gigachat package works against it over plain http.

    Example: llmgw emulate gigachat --port 9002 --token-ttl 120
    """
    from llmgw.emulators import gigachat

    key = credentials or gigachat.DEFAULT_CREDENTIALS
    app = gigachat.create_app(
        credentials=key, token_ttl=token_ttl, latency_ms=latency_ms, fail_rate=fail_rate,
        max_concurrency=max_concurrency, fault=fault.value if fault else None,
        oauth_fault=oauth_fault.value if oauth_fault else None,
        expires_at_seconds=expires_at_seconds, seed=seed,
    )  # fmt: skip

    def banner(url: str) -> str:
        shown = key if credentials is None else "<the --credentials value>"
        return "\n".join(
            [
                f"GigaChat emulator listening on {url}",
                f"base URL: {url}/api/v1   (also {url}/v1)",
                f"auth URL: {url}/api/v2/oauth",
                f"authorization key: {shown}",
                "",
                "Config snippet for llmgw (config.toml):",
                "",
                "[[providers]]",
                'name = "gigachat"',
                'kind = "gigachat"',
                f'base_url = "{url}/api/v1"',
                f'auth_url = "{url}/api/v2/oauth"',
                'scope = "GIGACHAT_API_PERS"',
                'api_key_env = "GIGACHAT_CREDENTIALS"   # export GIGACHAT_CREDENTIALS=<the key above>',
                "",
                "Press Ctrl-C to stop.",
            ]
        )

    _serve(app, host, port, banner)


def _sa_key(path: Path) -> tuple[dict[str, str], bool]:
    """The key in ``path``, or a new one written there (mode 600); and whether it was created."""
    from llmgw.emulators.yandexgpt import make_service_account_key

    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return {k: data[k] for k in ("id", "service_account_id", "public_key")}, False
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(
                f"{path}: not a service account key written by this emulator",
                hint="remove the file to have a new one generated",
            ) from None
    key = make_service_account_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(key, fh, indent=2)
    return key, True


def emulate_yandexgpt(
    host: HostOpt = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0 picks a free one).")
    ] = 9003,
    latency_ms: LatencyOpt = 0.0,
    fail_rate: FailRateOpt = 0.0,
    seed: SeedOpt = 0,
    folder_id: Annotated[
        str, typer.Option("--folder-id", help="The folder models live in.")
    ] = "b1gemulatorfolder0001",
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="LLMGW_EMULATOR_YANDEX_KEY",
            help="API key to accept (default: a built-in test key).",
            show_default=False,
        ),
    ] = None,
    service_account_key: Annotated[
        Path | None,
        typer.Option(
            "--service-account-key",
            help="Authorized-key JSON whose JWTs /iam/v1/tokens accepts; created if missing.",
        ),
    ] = None,
    iam_token_ttl: Annotated[
        float, typer.Option("--iam-token-ttl", min=1, help="IAM token lifetime in seconds.")
    ] = 43200.0,
    max_concurrency: Annotated[
        int,
        typer.Option(
            "--max-concurrency", min=1, help="Concurrent generations per model before 429."
        ),
    ] = 10,
    fault: FaultOpt = None,
    iam_fault: Annotated[
        Fault | None, typer.Option("--iam-fault", help="Misbehave on every IAM token request.")
    ] = None,
) -> None:
    """Serve YandexGPT: /foundationModels/v1/completion and /textEmbedding, plus the IAM exchange at /iam/v1/tokens.

    JSON and the native cumulative stream (put [[rewrite]] or [[content_filter]] in a message to see a mid-stream rewrite or a content-filter final), latest/rc/deprecated versions with their own modelVersion, Api-Key and IAM auth, string usage counts, the real error bodies and 429 quota answers.

    Example: llmgw emulate yandexgpt --port 9003 --service-account-key ./sa-key.json
    """
    from llmgw.emulators import yandexgpt

    key = api_key or yandexgpt.DEFAULT_API_KEY
    sa, created = _sa_key(service_account_key) if service_account_key is not None else (None, False)
    app = yandexgpt.create_app(
        folder_id=folder_id, api_keys=(key,), service_account_keys=[sa] if sa else (),
        iam_token_ttl=iam_token_ttl, latency_ms=latency_ms, fail_rate=fail_rate,
        max_concurrency=max_concurrency, fault=fault.value if fault else None,
        iam_fault=iam_fault.value if iam_fault else None, seed=seed,
    )  # fmt: skip

    def banner(url: str) -> str:
        lines = [
            f"YandexGPT emulator listening on {url}",
            f"base URL: {url}   (completion: {url}/foundationModels/v1/completion)",
            f"IAM URL:  {url}/iam/v1/tokens",
            f"folder:   {folder_id}",
            f"API key:  {key if api_key is None else '<the --api-key value>'}",
        ]
        if service_account_key is not None:
            lines.append(
                f"service account key: {service_account_key}" + (" (created)" if created else "")
            )
        lines += [
            "",
            "Config snippet for llmgw (config.toml):",
            "",
            "[[providers]]",
            'name = "yandex"',
            'kind = "yandexgpt"',
            f'base_url = "{url}"',
            f'folder_id = "{folder_id}"',
        ]
        if service_account_key is not None:
            lines += [
                f'iam_url = "{url}/iam/v1/tokens"',
                f'service_account_key_file = "{service_account_key}"',
            ]
        else:
            lines.append(
                'api_key_env = "YANDEX_API_KEY"   # export YANDEX_API_KEY=<the API key above>'
            )
        lines += ["", "Press Ctrl-C to stop."]
        return "\n".join(lines)

    _serve(app, host, port, banner)
