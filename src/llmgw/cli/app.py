"""The root Typer app: global options, and one command group per file, imported on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmgw import __version__
from llmgw.cli.lazy import LazyCommand, LazyGroup
from llmgw.cli.state import CliState

__all__ = ["COMMANDS", "app"]

COMMANDS = {
    "serve": LazyCommand(
        "llmgw.cli.serve",
        "serve",
        "Run the gateway: /v1/chat/completions, /v1/embeddings, /v1/models, /healthz, /readyz, "
        "/metrics.",
    ),
    "smoke": LazyCommand(
        "llmgw.cli.smoke",
        "smoke",
        "Check a deployment end to end: /healthz, /readyz, a chat completion, /metrics.",
    ),
    "config": LazyCommand(
        "llmgw.cli.config_cmd", "config_app", "Show, check and create the configuration."
    ),
    "db": LazyCommand(
        "llmgw.cli.db", "db_app", "Manage the database: schema, migration to PostgreSQL, backups."
    ),
    "emulate": LazyCommand(
        "llmgw.cli.emulate",
        "emulate_app",
        "Run a local emulator of an LLM provider or an alert target (no cloud account needed).",
    ),
    "keys": LazyCommand(
        "llmgw.cli.keys", "keys_app", "Create, list, show, revoke, rotate and update API keys."
    ),
    "providers": LazyCommand(
        "llmgw.cli.providers",
        "providers_app",
        "Upstream providers: list, prices, models, health status, test, secrets; add, edit, disable, remove stored ones; aliases.",
    ),
    "chat": LazyCommand(
        "llmgw.cli.chat",
        "chat",
        "Chat with a model through the gateway, which keeps the conversation.",
    ),
    "users": LazyCommand(
        "llmgw.cli.users",
        "users_app",
        "Create, list, show, disable and enable users, and change their role.",
    ),
    "usage": LazyCommand("llmgw.cli.usage", "usage_app", "Usage and cost: statistics and exports."),
    "report": LazyCommand(
        "llmgw.cli.report",
        "report",
        "The daily, weekly or monthly usage report: terminal charts, Markdown, HTML, CSV, JSON.",
    ),
    "budgets": LazyCommand(
        "llmgw.cli.budgets",
        "budgets_app",
        "Spend budgets per key or user, per day or month: set, list, show, delete.",
    ),
    "quotas": LazyCommand(
        "llmgw.cli.quotas",
        "quotas_app",
        "Request and token quotas per user and per model version: set, list, delete.",
    ),
    "audit": LazyCommand(
        "llmgw.cli.audit",
        "audit",
        "Show administrative actions, newest first: who changed which key or user, when, from where.",
    ),
    "oauth": LazyCommand("llmgw.cli.oauth", "oauth_app", "OAuth clients and the JWT signing keys."),
    "tokens": LazyCommand(
        "llmgw.cli.tokens",
        "tokens_app",
        "Personal access tokens (long-lived JWTs for CI): create, list, revoke.",
    ),
    "alerts": LazyCommand(
        "llmgw.cli.alerts",
        "alerts_app",
        "The alert history: list, show, stats, ack, note, reclassify, test-fire; publishing"
        " targets: targets, publish-test.",
    ),
    "login": LazyCommand(
        "llmgw.cli.login",
        "login",
        "Log in to an llmgw server with your account (OAuth 2.0; the browser, or --device).",
    ),
    "logout": LazyCommand(
        "llmgw.cli.login",
        "logout",
        "Log out: revoke the stored tokens at the server, then forget them here.",
    ),
    "whoami": LazyCommand(
        "llmgw.cli.login",
        "whoami",
        "Show who you are logged in as, on which servers, with which scopes, until when.",
    ),
    "dash": LazyCommand(
        "llmgw.cli.dash",
        "dash",
        "Open the admin dashboard: providers, requests, usage, keys, users, audit, chat, alerts.",
    ),
}
"""Every command, in the order ``llmgw --help`` lists them; each module is imported on first use."""


class _Root(LazyGroup):
    lazy_commands = COMMANDS


app = typer.Typer(
    name="llmgw",
    help="llmgw: an OpenAI-compatible LLM gateway for GigaChat, YandexGPT and OpenAI-compatible "
    "models, administered from the terminal.",
    no_args_is_help=True,
    # Plain help, the same text as docs/cli.md: Rich markup would eat literal [brackets] in
    # help strings, typer's Rich panels print a <bool> metavar on flags, and Rich help imports
    # rich and markdown-it (half of `llmgw --help`'s start-up; tests/perf/bench_cli.py).
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,  # API keys live in locals
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=_Root,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmgw {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML config file (else $LLMGW_CONFIG, else $LLMGW_HOME/config.toml).",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for unexpected errors.")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="LLMGW_URL",
            metavar="URL",
            help="Run keys, users, usage, providers status|prices and audit against the llmgw server "
            "at this address (its /admin/v1 API) instead of the database.",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="LLMGW_TOKEN",
            metavar="KEY",
            help="API key of an admin user, for --url (prefer LLMGW_TOKEN: a flag shows in ps).",
            show_default=False,
            show_envvar=True,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """llmgw: an OpenAI-compatible LLM gateway administered from the terminal."""
    ctx.obj = CliState(config_file=config, debug=debug, url=url or None, token=token or None)
    ctx.call_on_close(ctx.obj.close)
