"""``llmgw oauth``: OAuth clients (``clients create|list|revoke``) and JWT signing keys
(``keys list|rotate``), on the database directly. Every change is in the audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmgw.cli.output import confirm, emit_json, print_table, when_text
from llmgw.cli.state import state

if TYPE_CHECKING:
    from llmgw.identity.tokens import TokenService

__all__ = ["oauth_app"]

oauth_app = typer.Typer(
    help="OAuth clients and the JWT signing keys.", no_args_is_help=True, rich_markup_mode=None
)
clients_app = typer.Typer(
    help="Register, list and revoke OAuth clients.", no_args_is_help=True, rich_markup_mode=None
)
keys_app = typer.Typer(
    help="List and rotate the keys access tokens are signed with.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
oauth_app.add_typer(clients_app, name="clients")
oauth_app.add_typer(keys_app, name="keys")

_JSON = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_YES = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _split(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _audit(ctx: typer.Context, action: str, target: str, detail: dict[str, Any]) -> None:
    from llmgw.admin.audit import AuditService
    from llmgw.admin.ops import Actor

    AuditService(state(ctx).engine()).record(
        Actor.local(), action, target, source="cli", detail=detail
    )


def token_service(ctx: typer.Context) -> TokenService:
    """The token service on this invocation's database; revocations reach running servers
    through Redis when configured."""
    from llmgw.identity.tokens import TokenService

    st = state(ctx)
    changes = st.auth_changes()
    return TokenService.from_settings(
        st.settings, st.engine(), on_change=changes.publish if changes is not None else None
    )


@clients_app.command("create")
def clients_create(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Option("--name", "-n", help="What the client is (shown on consent).")
    ],
    kind: Annotated[
        str,
        typer.Option(
            "--kind", help="public (native apps, the CLI: no secret) or confidential (a secret)."
        ),
    ] = "public",
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option(
            "--redirect-uri",
            help="A redirect URI (repeat or separate with commas): https://..., or "
            "http://127.0.0.1/PATH for a native app (any port then matches).",
            show_default=False,
        ),
    ] = None,
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--grant",
            help="Grant types (repeat or commas): authorization_code, refresh_token, "
            "urn:ietf:params:oauth:grant-type:device_code (or device_code), client_credentials.",
            show_default=False,
        ),
    ] = None,
    scope: Annotated[
        str, typer.Option("--scope", help="Space- or comma-separated scopes the client may get.")
    ] = "chat",
    json: _JSON = False,
) -> None:
    """Register an OAuth client; a confidential client's secret is printed once."""
    from llmgw.identity.clients import DEVICE_GRANT, ClientService
    from llmgw.identity.records import client_record

    grants = [DEVICE_GRANT if g == "device_code" else g for g in _split(grant or [])]
    if not grants:
        grants = ["authorization_code", "refresh_token"]
    scopes = _split([scope.replace(" ", ",")])
    st = state(ctx)
    st.local_only("oauth clients create")
    info, secret = ClientService(st.engine()).create(
        name, kind, _split(redirect_uri or []), grants, scopes
    )
    _audit(ctx, "oauth.clients.create", info.client_id, {"name": info.name, "kind": info.kind})
    record = client_record(info)
    if json:
        emit_json({**record, "client_secret": secret})
        return
    typer.echo(f"created {info.kind} client {info.client_id} ({info.name})")
    if secret is not None:
        typer.echo(f"client secret (shown once, store it now): {secret}")


@clients_app.command("list")
def clients_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include revoked clients.")] = False,
    json: _JSON = False,
) -> None:
    """List OAuth clients: id, name, kind, grants, scopes, redirect URIs."""
    from llmgw.identity.clients import ClientService
    from llmgw.identity.records import client_record

    st = state(ctx)
    st.local_only("oauth clients list")
    records = [client_record(c) for c in ClientService(st.engine()).list(include_revoked=all_)]
    if json:
        emit_json(records)
        return
    rows = [
        {
            **r,
            "grants": " ".join(g.rsplit(":", 1)[-1] for g in r["grant_types"]),
            "scopes": " ".join(r["scopes"]),
            "redirect uris": " ".join(r["redirect_uris"]),
            "created": when_text(r["created_at"], "%Y-%m-%d %H:%M"),
        }
        for r in records
    ]
    print_table(
        rows,
        ["client_id", "name", "kind", "status", "grants", "scopes", "redirect uris", "created"],
        title="OAuth clients",
        wrap=("name", "grants", "redirect uris", "scopes"),
        optional=("created", "redirect uris"),
    )


@clients_app.command("revoke")
def clients_revoke(
    ctx: typer.Context,
    client_id: Annotated[str, typer.Argument(metavar="CLIENT_ID", help="The client's id.")],
    yes: _YES = False,
    json: _JSON = False,
) -> None:
    """Revoke a client: it gets no new tokens, and every token it holds is revoked now."""
    from llmgw.identity.clients import ClientService
    from llmgw.identity.records import client_record

    st = state(ctx)
    st.local_only("oauth clients revoke")
    clients = ClientService(st.engine())
    info = clients.get(client_id)
    confirm(
        f"revoke client {info.client_id} ({info.name})",
        "its users are logged out and it can get no new tokens",
        yes=yes,
    )
    info = clients.revoke(info.client_id)
    revoked = token_service(ctx).revoke_client(info.client_id)
    st.warn_unannounced()
    _audit(ctx, "oauth.clients.revoke", info.client_id, {"tokens_revoked": len(revoked)})
    if json:
        emit_json({**client_record(info), "tokens_revoked": len(revoked)})
        return
    typer.echo(f"revoked client {info.client_id}; {len(revoked)} live token(s) revoked")


@keys_app.command("list")
def keys_list(ctx: typer.Context, json: _JSON = False) -> None:
    """List signing keys: kid, state (signing, verifying, expired), created, retires, expires."""
    from llmgw.identity.records import key_record
    from llmgw.storage.tables import utcnow

    state(ctx).local_only("oauth keys list")
    now = utcnow()
    records = [key_record(k, now) for k in token_service(ctx).keys.list()]
    if json:
        emit_json(records)
        return
    fmt = "%Y-%m-%d %H:%M"
    rows = [
        {**r, **{c: when_text(r[f"{c}_at"], fmt) for c in ("created", "retires", "expires")}}
        for r in records
    ]
    print_table(
        rows, ["kid", "alg", "state", "created", "retires", "expires"], title="signing keys"
    )
    if not records:
        typer.echo("no signing key yet: one is made when the first token is issued", err=True)


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    overlap: Annotated[
        str | None,
        typer.Option(
            "--overlap",
            help="How long older keys keep verifying, e.g. 1h or 2d (default: "
            "identity.key_overlap_seconds; longer while personal access tokens they signed live).",
            show_default=False,
        ),
    ] = None,
    yes: _YES = False,
    json: _JSON = False,
) -> None:
    """Make a new signing key; older keys stop signing now and verify until the overlap ends."""
    from datetime import timedelta

    from llmgw.durations import parse_duration
    from llmgw.identity.records import key_record
    from llmgw.storage.tables import utcnow

    st = state(ctx)
    st.local_only("oauth keys rotate")
    span = (
        parse_duration(overlap, param="--overlap")
        if overlap is not None
        else timedelta(seconds=st.settings.identity.key_overlap_seconds)
    )
    confirm(
        "rotate the token signing key",
        f"tokens signed with the current key stop verifying after {span} "
        "(later while personal access tokens it signed live)",
        yes=yes,
    )
    new = token_service(ctx).keys.rotate(span)
    _audit(ctx, "oauth.keys.rotate", new.kid, {"overlap_seconds": int(span.total_seconds())})
    if json:
        emit_json(key_record(new, utcnow()))
        return
    typer.echo(f"new signing key {new.kid}; older keys verify until the overlap ends")
