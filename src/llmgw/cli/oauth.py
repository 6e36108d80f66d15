"""``llmgw oauth``: OAuth clients (``clients create|list|revoke``) and JWT signing keys
(``keys list|rotate``), on the database, or with ``--url`` through a server's ``/admin/v1``
(``CliState.identity``), with the same ``--json`` either way. Every change is in the audit log."""

from __future__ import annotations

from typing import Annotated

import typer

from llmgw.cli.output import confirm, emit_json, print_table, when_text
from llmgw.cli.state import state

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

# llmgw.identity.clients.DEVICE_GRANT, spelled here: importing it loads SQLAlchemy (--url needs none)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_JSON = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_YES = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _split(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


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
    grants = [DEVICE_GRANT if g == "device_code" else g for g in _split(grant or [])]
    if not grants:
        grants = ["authorization_code", "refresh_token"]
    scopes = _split([scope.replace(" ", ",")])
    record = (
        state(ctx)
        .identity()
        .oauth_clients_create(
            name,
            kind=kind,
            redirect_uris=_split(redirect_uri or []),
            grant_types=grants,
            scopes=scopes,
        )
    )
    if json:
        emit_json(record)
        return
    typer.echo(f"created {record['kind']} client {record['client_id']} ({record['name']})")
    if record["client_secret"] is not None:
        typer.echo(f"client secret (shown once, store it now): {record['client_secret']}")


@clients_app.command("list")
def clients_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include revoked clients.")] = False,
    json: _JSON = False,
) -> None:
    """List OAuth clients: id, name, kind, grants, scopes, redirect URIs."""
    records = state(ctx).identity().oauth_clients_list(include_revoked=all_)
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
    st = state(ctx)
    ident = st.identity()
    info = ident.oauth_clients_show(client_id)
    confirm(
        f"revoke client {info['client_id']} ({info['name']})",
        "its users are logged out and it can get no new tokens",
        yes=yes,
    )
    record = ident.oauth_clients_revoke(info["client_id"])
    st.warn_unannounced()
    if json:
        emit_json(record)
        return
    typer.echo(
        f"revoked client {record['client_id']}; {record['tokens_revoked']} live token(s) revoked"
    )


@keys_app.command("list")
def keys_list(ctx: typer.Context, json: _JSON = False) -> None:
    """List signing keys: kid, state (signing, verifying, expired), created, retires, expires."""
    records = state(ctx).identity().oauth_keys_list()
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
    from llmgw.durations import parse_duration

    st = state(ctx)
    span = parse_duration(overlap, param="--overlap") if overlap is not None else None
    if span is not None:
        shown = str(span)
    elif st.remote:
        shown = "the server's identity.key_overlap_seconds"
    else:
        shown = f"{st.settings.identity.key_overlap_seconds} s"
    confirm(
        "rotate the token signing key",
        f"tokens signed with the current key stop verifying after {shown} "
        "(later while personal access tokens it signed live)",
        yes=yes,
    )
    record = st.identity().oauth_keys_rotate(overlap=span)
    if json:
        emit_json(record)
        return
    typer.echo(f"new signing key {record['kid']}; older keys verify until the overlap ends")
