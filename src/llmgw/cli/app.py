"""The root Typer app: global options and one sub-app per command group (one file each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmgw import __version__
from llmgw.cli.config_cmd import config_app
from llmgw.cli.db import db_app
from llmgw.cli.emulate import emulate_app
from llmgw.cli.keys import keys_app
from llmgw.cli.providers import providers_app
from llmgw.cli.serve import serve
from llmgw.cli.state import CliState
from llmgw.cli.usage import usage_app
from llmgw.cli.users import users_app

__all__ = ["app"]

app = typer.Typer(
    name="llmgw",
    help="llmgw: an OpenAI-compatible LLM gateway for GigaChat, YandexGPT and OpenAI-compatible "
    "models, administered from the terminal.",
    no_args_is_help=True,
    # Plain help, the same text as docs/cli.md: Rich markup would eat literal [brackets] in
    # help strings, and typer's Rich panels print a <bool> metavar on flags.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,  # API keys live in locals
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(emulate_app, name="emulate")
app.add_typer(keys_app, name="keys")
app.add_typer(providers_app, name="providers")
app.add_typer(users_app, name="users")
app.command("serve")(serve)
app.add_typer(usage_app, name="usage")


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
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """llmgw: an OpenAI-compatible LLM gateway administered from the terminal."""
    ctx.obj = CliState(config_file=config, debug=debug)
    ctx.call_on_close(ctx.obj.close)
