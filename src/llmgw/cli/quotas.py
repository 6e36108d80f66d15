"""``llmgw quotas``: rpm/tpm per user (all their keys together) and per model version."""

from __future__ import annotations

from typing import Annotated

import typer

from llmgw.cli.options import JsonOpt
from llmgw.cli.output import confirm, emit_json, print_table, stdout
from llmgw.cli.state import state

__all__ = ["quotas_app"]

quotas_app = typer.Typer(
    help="Request and token quotas per user and per model version: set, list, delete.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@quotas_app.command("set")
def quotas_set(
    ctx: typer.Context,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="The key (name, id, id prefix or key prefix).", show_default=False
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="The user (email, id, id prefix or name).", show_default=False),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Only requests to this model version: model[:version] or "
            "provider/model[:version] (a key's quota needs one).",
            show_default=False,
        ),
    ] = None,
    rpm: Annotated[
        int | None, typer.Option("--rpm", help="Requests per minute.", show_default=False)
    ] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", help="Tokens per minute.", show_default=False)
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Create or replace a quota: a user's rpm/tpm over all of their keys, or a key's or user's
    on one model version. Same algorithm and headers as a key's own limits."""
    record = state(ctx).admin().quotas_set(key=key, user=user, model=model, rpm=rpm, tpm=tpm)
    if json:
        emit_json(record)
        return
    stdout().print(
        f"quota {record['id'][:8]}: {record['scope']} {record['subject']}"
        f"{' on ' + record['model'] if record['model'] else ' (all models)'}: "
        f"rpm {record['rpm'] or '-'}, tpm {record['tpm'] or '-'}",
        highlight=False,
        markup=False,
    )


@quotas_app.command("list")
def quotas_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Every quota."""
    records = state(ctx).admin().quotas_list()
    if json:
        emit_json(records)
        return
    rows = [{**r, "id": r["id"][:8], "model": r["model"] or "(all)"} for r in records]
    print_table(rows, ["id", "scope", "subject", "model", "rpm", "tpm"], title="quotas")


@quotas_app.command("delete")
def quotas_delete(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help="The quota's id or 8+ characters.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; required when stdin is not a terminal.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Remove a quota."""
    confirm(f"delete quota {ref}", "its limits stop applying", yes=yes)
    record = state(ctx).admin().quotas_delete(ref)
    if json:
        emit_json(record)
        return
    stdout().print(f"deleted quota {record['id'][:8]}", highlight=False)
