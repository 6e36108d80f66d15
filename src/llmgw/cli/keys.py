"""``llmgw keys``: create, list, show, revoke and rotate API keys."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmgw.cli.output import confirm, emit_json, print_table, stdout
from llmgw.cli.state import state
from llmgw.durations import parse_duration
from llmgw.errors import UsageError

if TYPE_CHECKING:  # the services load SQLModel; import them only when a command runs
    from llmgw.auth.keys import CreatedKey, KeyInfo, KeyService
    from llmgw.config import Settings

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Create, list, revoke and rotate API keys.", no_args_is_help=True, rich_markup_mode=None
)

_REF_HELP = "Key id, its first 8+ characters, the key prefix (llmgw_xxxxxx) or the whole secret."
_JSON = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_YES = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask; required when stdin is not a terminal.")
]


def _service(ctx: typer.Context) -> KeyService:
    from llmgw.auth.keys import KeyService

    st = state(ctx)
    changes = st.auth_changes()
    return KeyService(st.engine(), on_change=changes.publish if changes is not None else None)


def _record(info: KeyInfo, now: datetime) -> dict[str, Any]:
    """A key as a JSON-ready dict (never the secret or its digest)."""
    return {
        "id": str(info.id),
        "name": info.name,
        "prefix": info.prefix,
        "user": info.user_email,
        "user_id": str(info.user_id) if info.user_id else None,
        "status": info.status(now),
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "revoked_at": info.revoked_at,
        "last_used_at": info.last_used_at,
        "rpm": info.rpm,
        "tpm": info.tpm,
        "models": list(info.models) if info.models is not None else None,
        "rotated_from": str(info.rotated_from) if info.rotated_from else None,
    }


def _print_created(created: CreatedKey, json: bool, verb: str) -> None:
    from llmgw.storage.tables import utcnow

    info = created.info
    if json:
        emit_json({**_record(info, utcnow()), "key": created.secret})
        return
    con = stdout()
    con.print(
        f"{verb} key [bold]{info.name}[/bold] (id {info.id}, prefix {info.prefix})", highlight=False
    )
    if info.expires_at is not None:
        con.print(f"expires {info.expires_at:%Y-%m-%d %H:%M:%S} UTC", highlight=False)
    con.print("[yellow]Save this secret now; it is shown only once:[/yellow]")
    # Plain write: no wrapping or markup may alter the secret.
    typer.echo(created.secret)


def _short(when: datetime | None) -> str | None:
    """Minutes are enough in a table (UTC); ``--json`` has the exact time."""
    return f"{when:%Y-%m-%d %H:%M}" if when is not None else None


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
            "--user", "-u", help="Email of the user who owns the key.", show_default=False
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
    from llmgw.auth.users import normalize_email

    # Every value is checked before the database is opened: bad input writes nothing.
    expires_in = None
    if expires is not None:
        try:
            expires_in = parse_duration(expires, param="--expires")
        except OverflowError:  # more days than a timedelta holds
            raise UsageError(
                f"--expires {expires!r} is too far away", hint="use at most 100 years: 36500d"
            ) from None
    name, allow = check_key_settings(
        name,
        _positive(rpm, "--rpm"),
        _positive(tpm, "--tpm"),
        models.split(",") if models is not None else None,
        expires_in,
    )
    email = normalize_email(user) if user is not None else None
    unknown = _unoffered(state(ctx).settings, allow or ())
    if unknown:
        what = f"--models {', '.join(unknown)}: no configured provider or alias offers " + (
            "it" if len(unknown) == 1 else "them"
        )
        if strict:
            raise UsageError(
                what, hint="`llmgw providers list` shows providers, models and aliases"
            )
        typer.echo(f"warning: {what} (yet); --strict refuses such a key", err=True)
    created = _service(ctx).create(
        name, user_email=email, expires_in=expires_in, rpm=rpm, tpm=tpm, models=allow
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
    from llmgw.storage.tables import utcnow

    now = utcnow()
    records = [_record(k, now) for k in _service(ctx).list(include_revoked=all_)]
    if json:
        emit_json(records)
        return
    rows = [
        {
            "id": r["id"][:8],
            "name": r["name"],
            "prefix": r["prefix"],
            "user": r["user"],
            "created": _short(r["created_at"]),
            "expires": _short(r["expires_at"]),
            "last_used": _short(r["last_used_at"]),
            "status": r["status"],
        }
        for r in records
    ]
    print_table(
        rows,
        ["id", "name", "prefix", "user", "created", "expires", "last_used", "status"],
        title="keys",
        wrap=("name", "user"),
        optional=("created", "last_used", "expires", "user"),  # narrow terminals drop these
    )


@keys_app.command("show")
def keys_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help=_REF_HELP)],
    json: _JSON = False,
) -> None:
    """Show one key's settings and status (never its secret)."""
    from llmgw.storage.tables import utcnow

    record = _record(_service(ctx).get(ref), utcnow())
    if json:
        emit_json(record)
        return
    print_table(
        [{"field": k, "value": v} for k, v in record.items()], ["field", "value"], wrap=("value",)
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
    from llmgw.storage.tables import utcnow

    now = utcnow()
    service = _service(ctx)
    key = service.get(ref)
    if key.revoked_at is None:
        confirm(
            f"revoke key {key.name} ({key.prefix})",
            "clients using it are refused from now on; this cannot be undone",
            yes=yes,
        )
    info = service.revoke(str(key.id))
    state(ctx).warn_unannounced()
    if json:
        emit_json(_record(info, now))
        return
    typer.echo(
        f"revoked key {info.name} ({info.prefix}) at {info.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
    )


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help=_REF_HELP)],
    json: _JSON = False,
    yes: _YES = False,
) -> None:
    """Replace a key's secret: a new key with the same settings; the old one is revoked (asks first)."""
    from llmgw.storage.tables import utcnow

    service = _service(ctx)
    key = service.get(ref)
    if key.status(utcnow()) == "active":  # a revoked or expired key is refused below, unasked
        confirm(
            f"rotate key {key.name} ({key.prefix})",
            "its secret stops working now; clients need the new one",
            yes=yes,
        )
    created = service.rotate(str(key.id))
    state(ctx).warn_unannounced()
    _print_created(created, json, "rotated; new")
