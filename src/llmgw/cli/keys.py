"""``llmgw keys``: create, list, show, revoke, rotate and update API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmgw.admin.ops import UNSET, Unset
from llmgw.cli.keys_view import show_keys
from llmgw.cli.output import confirm, emit_json, print_table, stdout, when_text
from llmgw.cli.state import state
from llmgw.durations import parse_duration
from llmgw.errors import UsageError

if TYPE_CHECKING:
    from llmgw.config import Settings

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Create, list, show, revoke, rotate and update API keys.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_REF_HELP = (
    "Key name, id, the id's first 8+ characters, the key prefix (llmgw_xxxxxx) or the whole secret."
)
_JSON = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_YES = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask; required when stdin is not a terminal.")
]


def _print_created(created: dict[str, Any], json: bool, verb: str) -> None:
    if json:
        emit_json(created)
        return
    con = stdout()
    con.print(
        f"{verb} key [bold]{created['name']}[/bold] (id {created['id']}, prefix {created['prefix']})",
        highlight=False,
    )
    if created["expires_at"] is not None:
        con.print(f"expires {when_text(created['expires_at'])} UTC", highlight=False)
    con.print("[yellow]Save this secret now; it is shown only once:[/yellow]")
    # Plain write: no wrapping or markup may alter the secret.
    typer.echo(created["key"])


def _lifetime(expires: str | None) -> timedelta | None:
    if expires is None:
        return None
    try:
        return parse_duration(expires, param="--expires")
    except OverflowError:  # more days than a timedelta holds
        raise UsageError(
            f"--expires {expires!r} is too far away", hint="use at most 100 years: 36500d"
        ) from None


def _positive(value: int | None, flag: str) -> int | None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be a positive whole number, got {value}", param=flag)
    return value


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Option("--name", "-n", help="A label for the key (who or what uses it).")
    ],
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            "-u",
            help="The user who owns the key: email, id (8+ characters) or name.",
            show_default=False,
        ),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            help="Lifetime such as 90m, 12h, 30d or 2w; default: never.",
            show_default=False,
        ),
    ] = None,
    rpm: Annotated[
        int | None,
        typer.Option(
            "--rpm",
            help="Requests per minute for this key; beyond it the server answers 429.",
            show_default=False,
        ),
    ] = None,
    tpm: Annotated[
        int | None,
        typer.Option(
            "--tpm",
            help="Tokens per minute for this key (prompt and answer); beyond it the server answers 429.",
            show_default=False,
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Comma-separated allow-list of models or aliases (provider/* for all of one "
            "provider); default: every model.",
            show_default=False,
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse --models entries that no configured provider or alias offers "
            "(default: a warning).",
        ),
    ] = False,
    json: _JSON = False,
) -> None:
    """Create an API key and print its secret once (store it; only a digest is kept)."""
    from llmgw.auth.keys import check_key_settings
    from llmgw.auth.users import check_user_ref

    # Every value is checked before the database is opened: bad input writes nothing.
    expires_in = _lifetime(expires)
    name, allow = check_key_settings(
        name,
        _positive(rpm, "--rpm"),
        _positive(tpm, "--tpm"),
        models.split(",") if models is not None else None,
        expires_in,
    )
    check_user_ref(user)
    # With --url the server's configuration decides; the local one is not the server's.
    unknown = [] if state(ctx).remote else _unoffered(state(ctx).settings, allow or ())
    if unknown:
        what = f"--models {', '.join(unknown)}: no configured provider or alias offers " + (
            "it" if len(unknown) == 1 else "them"
        )
        if strict:
            raise UsageError(
                what, hint="`llmgw providers list` shows providers, models and aliases"
            )
        typer.echo(f"warning: {what} (yet); --strict refuses such a key", err=True)
    created = (
        state(ctx)
        .admin()
        .keys_create(name, user=user, expires=expires_in, rpm=rpm, tpm=tpm, models=allow)
    )
    _print_created(created, json, "created")


def _unoffered(settings: Settings, allow: tuple[str, ...]) -> list[str]:
    """Entries of a key's allow-list that no configured provider or alias answers to."""
    from llmgw.errors import LlmgwError
    from llmgw.routing.resolve import Resolver

    resolver = Resolver(settings)
    providers = {p.name for p in settings.providers}
    out = []
    for name in allow:
        provider, _, rest = name.partition("/")
        if rest == "*":
            if provider not in providers:
                out.append(name)
            continue
        try:
            resolver.candidates(name)
        except LlmgwError:
            out.append(name)
    return out


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include revoked keys.")] = False,
    json: _JSON = False,
) -> None:
    """List keys: id, name, prefix, user, dates and status (active, expired, revoked)."""
    st = state(ctx)
    records = None
    if not st.remote:  # a current SQLite file is read with the stdlib: no SQLAlchemy start-up
        from llmgw.admin.quick import keys_list as quick_keys

        now = datetime.now(UTC)
        records = quick_keys(st.settings.database_url, include_revoked=all_, now=now)
    if records is None:
        records = st.admin().keys_list(include_revoked=all_)
    show_keys(records, json=json)


@keys_app.command("show")
def keys_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help=_REF_HELP)],
    json: _JSON = False,
) -> None:
    """Show one key's settings and status (never its secret)."""
    record = state(ctx).admin().keys_show(ref)
    if json:
        emit_json(record)
        return
    _print_fields(record)


def _print_fields(record: dict[str, Any]) -> None:
    shown = {k: when_text(v) if k.endswith("_at") else v for k, v in record.items()}
    print_table(
        [{"field": k, "value": v} for k, v in shown.items()], ["field", "value"], wrap=("value",)
    )


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help=_REF_HELP)],
    json: _JSON = False,
    yes: _YES = False,
) -> None:
    """Revoke a key at once (asks first); running servers refuse it within 1 s with Redis, else
    within server.key_cache_seconds."""
    admin = state(ctx).admin()
    key = admin.keys_show(ref)
    if key["revoked_at"] is None:
        confirm(
            f"revoke key {key['name']} ({key['prefix']})",
            "clients using it are refused from now on; this cannot be undone",
            yes=yes,
        )
    info = admin.keys_revoke(key["id"])
    state(ctx).warn_unannounced()
    if json:
        emit_json(info)
        return
    typer.echo(
        f"revoked key {info['name']} ({info['prefix']}) at {when_text(info['revoked_at'])} UTC"
    )


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help=_REF_HELP)],
    json: _JSON = False,
    yes: _YES = False,
) -> None:
    """Replace a key's secret: a new key with the same settings; the old one is revoked (asks first)."""
    admin = state(ctx).admin()
    key = admin.keys_show(ref)
    if key["status"] == "active":  # a revoked or expired key is refused below, unasked
        confirm(
            f"rotate key {key['name']} ({key['prefix']})",
            "its secret stops working now; clients need the new one",
            yes=yes,
        )
    created = admin.keys_rotate(key["id"])
    state(ctx).warn_unannounced()
    _print_created(created, json, "rotated; new")


def _limit(text: str | None, flag: str) -> int | None | Unset:
    if text is None:
        return UNSET
    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(
            f"invalid {flag} {text[:40]!r}",
            hint=f"{flag} takes a positive whole number, or none to remove the limit",
            param=flag,
        ) from None
    return _positive(value, flag)


@keys_app.command("update")
def keys_update(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help=_REF_HELP)],
    rpm: Annotated[
        str | None,
        typer.Option(
            "--rpm",
            help="New requests per minute, or none for no per-key limit.",
            show_default=False,
        ),
    ] = None,
    tpm: Annotated[
        str | None,
        typer.Option(
            "--tpm", help="New tokens per minute, or none for no per-key limit.", show_default=False
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="New comma-separated allow-list of models or aliases (provider/* for all of "
            "one provider).",
            show_default=False,
        ),
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all-models", help="Remove the allow-list: every model.")
    ] = False,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            help="New lifetime from now (90m, 12h, 30d, 2w), or never.",
            show_default=False,
        ),
    ] = None,
    json: _JSON = False,
) -> None:
    """Change a key's limits, allowed models or expiry; what is not given stays as it is.

    Running servers apply the change within 1 s with Redis, else within server.key_cache_seconds.
    """
    from llmgw.auth.keys import check_key_settings
    from llmgw.storage.tables import utcnow

    if models is not None and all_models:
        raise UsageError("--models and --all-models cannot be used together", hint="pick one")
    allow: list[str] | None | Unset = UNSET
    if all_models:
        allow = None
    elif models is not None:
        allow = list(check_key_settings("-", None, None, models.split(","))[1] or ())
        unknown = [] if state(ctx).remote else _unoffered(state(ctx).settings, tuple(allow))
        if unknown:
            typer.echo(
                f"warning: --models {', '.join(unknown)}: no configured provider or alias "
                "offers " + ("it" if len(unknown) == 1 else "them") + " (yet)",
                err=True,
            )
    expires_at: datetime | None | Unset = UNSET
    if expires is not None:
        lifetime = None if expires.strip().lower() == "never" else _lifetime(expires)
        expires_at = None if lifetime is None else utcnow() + lifetime
    rpm_value, tpm_value = _limit(rpm, "--rpm"), _limit(tpm, "--tpm")
    info = (
        state(ctx)
        .admin()
        .keys_update(ref, rpm=rpm_value, tpm=tpm_value, models=allow, expires_at=expires_at)
    )
    state(ctx).warn_unannounced()
    if json:
        emit_json(info)
        return
    typer.echo(f"updated key {info['name']} ({info['prefix']})")
    _print_fields({k: info[k] for k in ("rpm", "tpm", "models", "expires_at", "status")})
