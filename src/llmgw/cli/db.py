"""``llmgw db``: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from llmgw.cli.output import confirm, emit_json
from llmgw.cli.state import state
from llmgw.storage.db import redact_url

__all__ = ["db_app"]

db_app = typer.Typer(
    help="Manage the database schema.", no_args_is_help=True, rich_markup_mode=None
)


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from llmgw.storage.schema import current_revision, upgrade

    engine = state(ctx).engine(migrate=False)
    before = current_revision(engine)
    upgrade(engine, revision)
    typer.echo(f"{redact_url(engine.url)}: {before or 'empty'} -> {current_revision(engine)}")


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' removes every table.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; required when stdin is not a terminal.")
    ] = False,
) -> None:
    """Revert migrations down to REVISION (asks first: a downgrade drops tables and their rows)."""
    from llmgw.storage.schema import check_revision, current_revision, downgrade

    engine = state(ctx).engine(migrate=False)
    before = current_revision(engine)
    check_revision(engine, revision)  # a typo is exit 2 before any question
    if before is not None:  # an empty database has nothing to lose
        loses = "every table (keys, users, usage)" if revision == "base" else "newer tables"
        confirm(
            f"downgrade {redact_url(engine.url)} from {before} to {revision}",
            f"this drops {loses} and their rows",
            yes=yes,
        )
    downgrade(engine, revision)
    typer.echo(
        f"{redact_url(engine.url)}: {before or 'empty'} -> {current_revision(engine) or 'empty'}"
    )


@db_app.command("current")
def db_current(
    ctx: typer.Context,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the database's revision and whether it is the newest."""
    from llmgw.storage.schema import current_revision, head_revision

    engine = state(ctx).engine(migrate=False)
    cur, head = current_revision(engine), head_revision(engine)
    if json:
        emit_json(
            {"url": redact_url(engine.url), "current": cur, "head": head, "up_to_date": cur == head}
        )
        return
    note = "up to date" if cur == head else f"behind; run `llmgw db upgrade` (head is {head})"
    typer.echo(f"{redact_url(engine.url)}: {cur or 'empty'} ({note})")
