"""``llmgw tokens``: personal access tokens for CI (``create|list|revoke``), and revoking any
issued token by its id; on the database, or with ``--url`` through a server's ``/admin/v1``
(``CliState.identity``), with the same ``--json`` either way. Every change is in the audit log."""

from __future__ import annotations

from typing import Annotated

import typer

from llmgw.cli.options import JsonOpt
from llmgw.cli.output import confirm, emit_json, print_table, when_text
from llmgw.cli.state import state

__all__ = ["tokens_app"]

tokens_app = typer.Typer(
    help="Personal access tokens (long-lived JWTs for CI): create, list, revoke.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user: Annotated[
        str,
        typer.Option(
            "--user", "-u", help="The user the token acts as (email, id, id prefix or name)."
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="A label (what uses the token).")],
    expires: Annotated[
        str,
        typer.Option(
            "--expires", help="Lifetime such as 30d, 12w or 365d (at most identity.pat_max_days)."
        ),  # fmt: skip
    ] = "90d",
    scope: Annotated[
        str,
        typer.Option(
            "--scope", help="Space- or comma-separated scopes: chat, keys:self, usage:self, admin."
        ),
    ] = "chat",
    rpm: Annotated[
        int | None,
        typer.Option(
            "--rpm",
            help="Requests per minute for this token (default: identity.token_rpm).",
            show_default=False,
        ),
    ] = None,
    tpm: Annotated[
        int | None,
        typer.Option(
            "--tpm",
            help="Tokens per minute for this token (default: identity.token_tpm).",
            show_default=False,
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Create a personal access token and print it once (only its id is kept)."""
    from llmgw.durations import parse_duration
    from llmgw.errors import UsageError
    from llmgw.identity.scopes import format_scope, parse_scope

    # Every value is checked before the database (or the server) is reached.
    try:
        lifetime = parse_duration(expires, param="--expires")
    except OverflowError:
        raise UsageError(f"--expires {expires!r} is too far away", hint="use 365d") from None
    scopes = format_scope(parse_scope(" ".join(scope.replace(",", " ").split())))
    for value, flag in ((rpm, "--rpm"), (tpm, "--tpm")):
        if value is not None and not 1 <= value <= 2_000_000_000:
            raise UsageError(f"{flag} must be a positive whole number, got {value}", param=flag)
    record = (
        state(ctx)
        .identity()
        .tokens_create(user, name, expires=lifetime, scope=scopes, rpm=rpm, tpm=tpm)
    )
    if json:
        emit_json(record)
        return
    typer.echo(f"created token {record['jti'][:12]} for {record['user']} ({record['scope']})")
    typer.echo(f"expires {when_text(record['expires_at'])} UTC")
    typer.echo(f"token (shown once, store it now): {record['token']}")


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            "-u",
            help="Only this user's tokens (email, id, id prefix or name).",
            show_default=False,
        ),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Include expired and revoked tokens.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """List issued tokens (personal and OAuth access tokens) that are still valid."""
    records = state(ctx).identity().tokens_list(user=user, include_inactive=all_)
    if json:
        emit_json(records)
        return
    fmt = "%Y-%m-%d %H:%M"
    rows = [
        {
            **r,
            "id": r["jti"][:12],
            "client": r["client_id"],
            "issued": when_text(r["issued_at"], fmt),
            "expires": when_text(r["expires_at"], fmt),
        }
        for r in records
    ]
    print_table(
        rows,
        ["id", "kind", "name", "user", "client", "scope", "status", "issued", "expires"],
        title="tokens",
        wrap=("user", "scope", "name"),
        optional=("issued", "client", "name"),
    )


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    ref: Annotated[
        str, typer.Argument(metavar="ID", help="The token's id (at least 8 characters of it).")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json: JsonOpt = False,
) -> None:
    """Revoke a token (an OAuth access token revokes its whole grant); every server refuses it
    within 1 s."""
    st = state(ctx)
    ident = st.identity()
    record = ident.tokens_show(ref)
    confirm(
        f"revoke token {record['jti'][:12]} ({record['name'] or record['kind']}, {record['user']})",
        "whatever uses it is refused from now on",
        yes=yes,
    )
    answer = ident.tokens_revoke(record["jti"])
    st.warn_unannounced()
    if json:
        emit_json(answer)
        return
    revoked = answer["revoked"]
    typer.echo(f"revoked {len(revoked)} token(s)" if revoked else "already revoked or expired")
