"""``llmgw tokens``: personal access tokens for CI (``create|list|revoke``), and revoking any
issued token by its id; on the database directly. Every change is in the audit log."""

from __future__ import annotations

from typing import Annotated

import typer

from llmgw.cli.oauth import token_service
from llmgw.cli.output import confirm, emit_json, print_table, when_text
from llmgw.cli.state import state

__all__ = ["tokens_app"]

tokens_app = typer.Typer(
    help="Personal access tokens (long-lived JWTs for CI): create, list, revoke.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_JSON = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", "-u", help="Email of the user the token acts as.")],
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
    json: _JSON = False,
) -> None:
    """Create a personal access token and print it once (only its id is kept)."""
    from llmgw.admin.audit import AuditService
    from llmgw.admin.ops import Actor
    from llmgw.auth.users import UserService
    from llmgw.durations import parse_duration
    from llmgw.errors import UsageError
    from llmgw.identity.records import token_record
    from llmgw.identity.scopes import format_scope, parse_scope
    from llmgw.storage.tables import utcnow

    try:
        lifetime = parse_duration(expires, param="--expires")
    except OverflowError:
        raise UsageError(f"--expires {expires!r} is too far away", hint="use 365d") from None
    scopes = format_scope(parse_scope(" ".join(scope.replace(",", " ").split())))
    st = state(ctx)
    st.local_only("tokens create")
    owner = UserService(st.engine()).get(user)
    record, token = token_service(ctx).create_pat(
        owner.id, name, scopes, lifetime, rpm=rpm, tpm=tpm
    )
    AuditService(st.engine()).record(
        Actor.local(),
        "tokens.create",
        owner.email,
        source="cli",
        detail={
            "jti": record.jti,
            "name": record.name,
            "scope": record.scope,
            "rpm": record.rpm,
            "tpm": record.tpm,
        },
    )
    if json:
        emit_json({**token_record(record, utcnow()), "token": token})
        return
    typer.echo(f"created token {record.jti[:12]} for {owner.email} ({record.scope})")
    typer.echo(f"expires {when_text(record.expires_at.isoformat())} UTC")
    typer.echo(f"token (shown once, store it now): {token}")


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    user: Annotated[
        str | None,
        typer.Option("--user", "-u", help="Only this user's tokens.", show_default=False),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Include expired and revoked tokens.")
    ] = False,
    json: _JSON = False,
) -> None:
    """List issued tokens (personal and OAuth access tokens) that are still valid."""
    from llmgw.auth.users import UserService
    from llmgw.identity.records import token_record
    from llmgw.storage.tables import utcnow

    st = state(ctx)
    st.local_only("tokens list")
    owner = UserService(st.engine()).get(user).id if user is not None else None
    now = utcnow()
    records = [
        token_record(t, now) for t in token_service(ctx).list_for(owner, include_inactive=all_)
    ]
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
    json: _JSON = False,
) -> None:
    """Revoke a token (an OAuth access token revokes its whole grant); every server refuses it
    within 1 s."""
    from llmgw.admin.audit import AuditService
    from llmgw.admin.ops import Actor

    st = state(ctx)
    st.local_only("tokens revoke")
    tokens = token_service(ctx)
    record = tokens.get(ref)
    confirm(
        f"revoke token {record.jti[:12]} ({record.name or record.kind}, {record.user_email})",
        "whatever uses it is refused from now on",
        yes=yes,
    )
    revoked = tokens.revoke(record.jti)
    st.warn_unannounced()
    AuditService(st.engine()).record(
        Actor.local(), "tokens.revoke", record.user_email or record.client_id, source="cli",
        detail={"jtis": revoked},
    )  # fmt: skip
    if json:
        emit_json({"jti": record.jti, "revoked": revoked})
        return
    typer.echo(f"revoked {len(revoked)} token(s)" if revoked else "already revoked or expired")
