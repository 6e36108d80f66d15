"""``llmgw db``: schema migrations, moving to PostgreSQL, backups and restores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmgw.cli.output import confirm, emit_json
from llmgw.cli.state import state
from llmgw.storage.db import redact_url

__all__ = ["db_app"]

db_app = typer.Typer(
    help="Manage the database: schema, migration to PostgreSQL, backups.",
    no_args_is_help=True,
    rich_markup_mode=None,
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


def _report_path(ctx: typer.Context, given: Path | None, kind: str) -> Path:
    if given is not None:
        return given
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return state(ctx).settings.home / "reports" / f"{kind}-{stamp}.json"


@db_app.command("migrate")
def db_migrate(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL",
            help="PostgreSQL database to copy into: postgresql://USER@HOST:PORT/DB.",
            show_default=False,
        ),
    ],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="URL",
            help="SQLite database to copy (sqlite:///PATH); default: the configured database.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check every value and the target, print the plan and an estimate; copy nothing.",
        ),
    ] = False,
    verify_only: Annotated[
        bool,
        typer.Option(
            "--verify-only", help="Compare counts and checksums of an existing pair; copy nothing."
        ),
    ] = False,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Copy a consistent snapshot even while another process (a gateway) has the "
            "source open; rows written after the snapshot are not copied.",
        ),
    ] = False,
    strip_nul: Annotated[
        bool,
        typer.Option(
            "--strip-nul",
            help="Remove NUL characters from text (PostgreSQL refuses them) instead of stopping.",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Empty the target's llmgw tables first and copy everything again (asks first).",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows per COPY batch and checkpoint.")
    ] = 50_000,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="FILE",
            help="Where to save the JSON report (default: $LLMGW_HOME/reports/migrate-TIME.json).",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; required when stdin is not a terminal.")
    ] = False,
    json: Annotated[
        bool, typer.Option("--json", help="Print progress and the report as JSON lines.")
    ] = False,
) -> None:
    """Copy a SQLite database into PostgreSQL and prove the copy (counts and checksums).

    The source is read from one snapshot and never modified; the target gets the same schema
    revision through Alembic. A stopped run resumes where it stopped; a finished one copies
    nothing. Exit 10 when a table differs or a source value matches no rule (docs/migration.md).
    """
    import orjson

    from llmgw.cli.output import stdout
    from llmgw.cli.progress import make_progress
    from llmgw.errors import UsageError
    from llmgw.storage.transfer import Migration, Options, check_report, sqlite_path

    if dry_run and verify_only:
        raise UsageError("--dry-run and --verify-only exclude each other", hint="pick one")
    mode = "dry-run" if dry_run else "verify-only" if verify_only else "copy"
    path = sqlite_path(source or state(ctx).settings.database_url)
    saved = _report_path(ctx, report, "migrate")
    progress = make_progress(json)
    options = Options(batch_size=batch_size, strip_nul=strip_nul, live=live)
    migration = Migration(path, to, options, progress)
    try:
        migration.open()
        plans = migration.plan()
        if mode == "copy" and migration._target_revision() == migration.revision:
            filled = [p.spec.name for p in plans if p.target_rows]
            if overwrite and filled:
                progress.close()
                confirm(
                    f"empty the llmgw tables of {redact_url(to)} ({', '.join(filled)})",
                    f"their {sum(p.target_rows for p in plans):,} rows are deleted",
                    yes=yes,
                )
                progress = make_progress(json)
                migration.emit = progress
                migration.empty_target()
                plans = migration.plan()
        result = migration.run(mode, plans=plans)
    finally:
        progress.close()
        migration.close()
    data = {**result.as_dict(), "report_file": str(saved)}
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    if json:
        emit_json_line(data)
    else:
        _print_migration(data, stdout())
    check_report(result, saved)
    typer.echo(f"report: {saved}", err=True)


def emit_json_line(data: dict[str, object]) -> None:
    """One JSON object on one line (the last line of ``--json`` progress)."""
    import sys

    import orjson

    sys.stdout.write(orjson.dumps(data).decode() + "\n")
    sys.stdout.flush()


def _print_migration(data: dict[str, Any], con: Any) -> None:
    from llmgw.cli.output import print_table

    rows = [
        {
            "table": t["table"],
            "source rows": t["source_rows"],
            "target rows": t["target_rows"] if data["mode"] != "dry-run" else "-",
            "copied": t["copied"],
            "checksum": (t["source_checksum"] or "")[:12],
            "match": ("yes" if t["match"] else "NO") if data["mode"] != "dry-run" else "-",
        }
        for t in data["tables"]
    ]
    print_table(rows, ["table", "source rows", "target rows", "copied", "checksum", "match"])
    for p in data["problems"]:
        con.print(
            f"[red]refused[/red] {p['table']} rowid {p['rowid']} {p['column']}: "
            f"{p['problem']} ({p['value']})",
            markup=True,
            highlight=False,
        )
    if data["problem_count"] > len(data["problems"]):
        con.print(f"... {data['problem_count'] - len(data['problems'])} more in the report")
    if data["mode"] == "dry-run":
        con.print(
            f"dry run: {data['rows_to_copy']:,} rows to copy, about {data['estimated_seconds']} s; "
            "nothing was written"
        )
    elif data["mode"] == "copy" and data["ok"] and data["rows_copied"] == 0:
        con.print("nothing to copy: the target already matches the source")
    elif data["ok"]:
        con.print(
            f"{data['rows_copied']:,} rows copied in {data['seconds']} s; every table matches"
        )


@db_app.command("backup")
def db_backup(
    ctx: typer.Context,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            metavar="DIR",
            help="Folder for the backups (default: [backup] dir, else $LLMGW_HOME/backups).",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep",
            min=1,
            metavar="N",
            help="Keep the N newest backups in the folder, delete older ones (default: [backup] keep).",
            show_default=False,
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Back up the database while the gateway runs, check the copy, rotate old backups.

    SQLite: the online backup API (a consistent snapshot; writers are not stopped). PostgreSQL:
    pg_dump --format=custom, when installed. Exit 10 when the copy fails its check.
    """
    from llmgw.storage.backup import backup

    s = state(ctx)
    state(ctx).local_only("db backup")
    settings = s.settings
    folder = to or settings.backup.dir or settings.home / "backups"
    result = backup(
        settings.database_url,
        folder,
        keep=keep or settings.backup.keep,
        tcp_timeout=settings.database.dead_connection_timeout,
    )
    if json:
        emit_json(result.as_dict())
        return
    typer.echo(
        f"backup {result.file} ({result.bytes:,} bytes, {result.seconds:.1f} s): "
        + ", ".join(f"{k} {v}" for k, v in result.checks.items())
    )
    for old in result.removed or []:
        typer.echo(f"removed {old}")


@db_app.command("restore")
def db_restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A backup made by `llmgw db backup`.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; required when stdin is not a terminal.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Replace the database with a backup (asks first; checks the backup first; keeps the
    replaced data). Refused while another process (a gateway) uses the database."""
    from llmgw.storage.backup import restore

    s = state(ctx)
    s.local_only("db restore")
    url = s.settings.database_url
    result = restore(
        url,
        file,
        confirm=lambda action, then: confirm(action, then, yes=yes),
        tcp_timeout=s.settings.database.dead_connection_timeout,
    )
    if json:
        emit_json(result.as_dict())
        return
    kept = f"; the replaced data is in {result.replaced}" if result.replaced else ""
    typer.echo(f"restored {file} into {redact_url(url)}{kept}")


@db_app.command("verify")
def db_verify(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(help="A backup file to check (default: the configured database)."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Check a database or a backup: SQLite integrity, foreign keys and schema revision; a
    pg_dump archive's contents. Exit 10 when a check fails."""
    from llmgw.storage.backup import verify_database, verify_file

    s = state(ctx)
    s.local_only("db verify")
    what = str(file) if file is not None else redact_url(s.settings.database_url)
    checks = (
        verify_file(file)
        if file is not None
        else verify_database(
            s.settings.database_url, tcp_timeout=s.settings.database.dead_connection_timeout
        )
    )
    if json:
        emit_json({"checked": what, "ok": True, "checks": checks})
        return
    typer.echo(f"{what}: ok (" + ", ".join(f"{k} {v}" for k, v in checks.items()) + ")")
