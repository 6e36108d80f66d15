"""``llmgw serve``: run the OpenAI-compatible gateway on uvicorn (uvloop + httptools)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from llmgw.cli.state import state
from llmgw.config import Settings

__all__ = ["serve"]


async def _preflight(settings: Settings) -> None:
    """Build the providers once so a missing credential fails here, as one clear line."""
    from llmgw.providers.registry import SecretResolver, build_providers

    # Quiet: the server says "no keyring" itself at startup; once is enough.
    providers = build_providers(settings, SecretResolver(warn=lambda _msg: None))
    for provider in providers.values():
        await provider.aclose()


def serve(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML config file (same as the global --config).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Interface to listen on [default: server.host, 127.0.0.1].",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="TCP port [default: server.port, 8080].", show_default=False),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", help="Worker processes [default: server.workers, 1].", show_default=False
        ),
    ] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not upgrade the database schema on start.")
    ] = False,
    drain_seconds: Annotated[
        float | None,
        typer.Option(
            "--drain-seconds",
            help="On SIGTERM, how long in-flight requests and streams may run [default: server.drain_seconds, 30].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the gateway: /v1/chat/completions, /v1/embeddings, /v1/models, /healthz, /readyz, /metrics.

    The database schema is upgraded first unless --no-migrate. SIGTERM drains: /readyz turns 503 at
    once, in-flight requests and streams get --drain-seconds to finish, streams still open then
    end with a final SSE error event, usage is flushed, and the exit code is 0.
    """
    st = state(ctx)
    if config is not None:
        st.config_file = config
    server: dict[str, Any] = {}
    for name, value in (
        ("host", host),
        ("port", port),
        ("workers", workers),
        ("drain_seconds", drain_seconds),
    ):
        if value is not None:
            server[name] = value
    if server:
        st.overrides = {**st.overrides, "server": {**st.overrides.get("server", {}), **server}}
    settings = st.settings
    st.engine(migrate=not no_migrate)  # checks the database; upgrades the schema unless told not to
    st.close()
    asyncio.run(_preflight(settings))

    from llmgw.server.serving import run

    run(settings, config_file=st.loaded().config_file, overrides=st.overrides)
