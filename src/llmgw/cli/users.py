"""``llmgw users``: create, list, show, disable and enable users, change their role, set their
password, and make the first admin."""

from __future__ import annotations

from typing import Annotated

import typer

from llmgw.cli.output import emit_json, print_table, when_text
from llmgw.cli.state import state
from llmgw.errors import UsageError

__all__ = ["users_app"]

users_app = typer.Typer(
    help="Create, list, show, disable and enable users, and change their role.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_JSON = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_REF = Annotated[
    str,
    typer.Argument(
        metavar="USER",
        help="The user's email, id, the id's first 8+ characters (as `users list` shows) or "
        "display name.",
    ),
]
_EMAIL = Annotated[str, typer.Argument(metavar="EMAIL", help="The user's email.")]


@users_app.command("create")
def users_create(
    ctx: typer.Context,
    email: Annotated[str, typer.Option("--email", "-e", help="Email address; unique.")],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Display name.", show_default=False)
    ] = None,
    role: Annotated[str, typer.Option("--role", help="user or admin.")] = "user",
    json: _JSON = False,
) -> None:
    """Create a user who can own API keys."""
    from llmgw.auth.users import check_user_fields

    check_user_fields(email, name, role)  # before the database is opened: bad input writes nothing
    user = state(ctx).admin().users_create(email, name=name, role=role)
    if json:
        emit_json(user)
        return
    typer.echo(f"created user {user['email']} (id {user['id']}, role {user['role']})")


@users_app.command("list")
def users_list(ctx: typer.Context, json: _JSON = False) -> None:
    """List users with their role, status and number of live keys."""
    records = state(ctx).admin().users_list()
    if json:
        emit_json(records)
        return
    rows = [{**r, "id": r["id"][:8], "created": when_text(r["created_at"])} for r in records]
    print_table(
        rows,
        ["id", "email", "name", "role", "status", "keys", "created"],
        title="users",
        wrap=("email", "name"),
        optional=("created", "keys", "name"),  # narrow terminals drop these
    )


@users_app.command("disable")
def users_disable(ctx: typer.Context, ref: _REF, json: _JSON = False) -> None:
    """Disable a user: every key they own stops authenticating."""
    user = state(ctx).admin().users_disable(ref)
    state(ctx).warn_unannounced()
    if json:
        emit_json(user)
        return
    keys = f"{user['keys']} live key" + ("" if user["keys"] == 1 else "s")
    typer.echo(f"disabled user {user['email']}; {keys} refused from now on")


@users_app.command("enable")
def users_enable(ctx: typer.Context, ref: _REF, json: _JSON = False) -> None:
    """Enable a disabled user again; their unexpired, unrevoked keys work again."""
    user = state(ctx).admin().users_enable(ref)
    state(ctx).warn_unannounced()
    if json:
        emit_json(user)
        return
    typer.echo(f"enabled user {user['email']}")


@users_app.command("show")
def users_show(ctx: typer.Context, ref: _REF, json: _JSON = False) -> None:
    """Show one user: role, status, number of live keys."""
    user = state(ctx).admin().users_show(ref)
    if json:
        emit_json(user)
        return
    shown = {k: when_text(v) if k == "created_at" else v for k, v in user.items()}
    print_table(
        [{"field": k, "value": v} for k, v in shown.items()], ["field", "value"], wrap=("value",)
    )


@users_app.command("set-role")
def users_set_role(
    ctx: typer.Context,
    ref: _REF,
    role: Annotated[str, typer.Argument(metavar="ROLE", help="user or admin.")],
    json: _JSON = False,
) -> None:
    """Give a user the role user or admin; an admin's keys may call the admin API (/admin/v1)."""
    from llmgw.auth.users import ROLES

    if role not in ROLES:  # before the database is opened
        raise UsageError(f"invalid role {role!r}", hint=f"use one of: {', '.join(ROLES)}")
    user = state(ctx).admin().users_set_role(ref, role)
    state(ctx).warn_unannounced()
    if json:
        emit_json(user)
        return
    typer.echo(f"user {user['email']} now has role {user['role']}")


_PASSWORD_STDIN = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input (for scripts).",
    ),
]


def _read_password(from_stdin: bool) -> str:
    """The new password: one stdin line with ``--password-stdin``, else typed twice (hidden)."""
    import sys

    from llmgw.identity.passwords import check_password

    if from_stdin:
        line = sys.stdin.readline()
        return check_password(line[:-1] if line.endswith("\n") else line)
    if not sys.stdin.isatty():
        raise UsageError(
            "no terminal to type the password on",
            hint="pipe it in with --password-stdin",
        )
    password: str = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    return check_password(password)


@users_app.command("set-password")
def users_set_password(
    ctx: typer.Context, ref: _REF, password_stdin: _PASSWORD_STDIN = False
) -> None:
    """Set a user's password for the sign-in page (argon2id); their browser sessions end."""
    from llmgw.admin.audit import AuditService
    from llmgw.admin.ops import Actor
    from llmgw.identity.passwords import set_password
    from llmgw.identity.sessions import SessionService

    st = state(ctx)
    st.local_only("users set-password")
    password = _read_password(password_stdin)
    engine = st.engine()
    user = set_password(engine, ref, password)
    ended = SessionService(engine).revoke_user(user.id)
    AuditService(engine).record(
        Actor.local(), "users.set_password", user.email, source="cli", detail={"id": str(user.id)}
    )
    sessions = f"; {ended} browser session{'s' if ended != 1 else ''} ended" if ended else ""
    typer.echo(f"password set for {user.email}{sessions}")


@users_app.command("bootstrap-admin")
def users_bootstrap_admin(
    ctx: typer.Context,
    ref: _EMAIL,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Display name.", show_default=False)
    ] = None,
    password_stdin: _PASSWORD_STDIN = False,
) -> None:
    """Make the first admin (created, or promoted if the user exists) with a password; refused
    once any admin exists."""
    from llmgw.admin.audit import AuditService
    from llmgw.admin.ops import Actor
    from llmgw.auth.users import check_user_fields
    from llmgw.identity.passwords import bootstrap_admin

    st = state(ctx)
    st.local_only("users bootstrap-admin")
    email, name, _ = check_user_fields(ref, name, "admin")
    password = _read_password(password_stdin)
    engine = st.engine()
    user = bootstrap_admin(engine, email, password, name=name)
    AuditService(engine).record(
        Actor.local(),
        "users.bootstrap_admin",
        user.email,
        source="cli",
        detail={"id": str(user.id)},
    )
    typer.echo(f"{user.email} is the first admin; sign in at /login on the server")
