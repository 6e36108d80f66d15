"""``llmgw users``: create, list, disable and enable users."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmgw.cli.output import emit_json, print_table
from llmgw.cli.state import state

if TYPE_CHECKING:  # the services load SQLModel; import them only when a command runs
    from llmgw.auth.users import UserInfo, UserService

__all__ = ["users_app"]

users_app = typer.Typer(
    help="Create, list, disable and enable users.", no_args_is_help=True, rich_markup_mode=None
)

_JSON = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_REF = Annotated[str, typer.Argument(metavar="EMAIL", help="The user's email (or id).")]


def _service(ctx: typer.Context) -> UserService:
    from llmgw.auth.users import UserService

    st = state(ctx)
    changes = st.auth_changes()
    return UserService(st.engine(), on_change=changes.publish if changes is not None else None)


def _record(user: UserInfo) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "status": "disabled" if user.disabled else "active",
        "keys": user.keys,
        "created_at": user.created_at,
    }


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
    user = _service(ctx).create(email, name=name, role=role)
    if json:
        emit_json(_record(user))
        return
    typer.echo(f"created user {user.email} (id {user.id}, role {user.role})")


@users_app.command("list")
def users_list(ctx: typer.Context, json: _JSON = False) -> None:
    """List users with their role, status and number of live keys."""
    records = [_record(u) for u in _service(ctx).list()]
    if json:
        emit_json(records)
        return
    rows = [{**r, "id": r["id"][:8], "created": r["created_at"]} for r in records]
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
    user = _service(ctx).disable(ref)
    state(ctx).warn_unannounced()
    if json:
        emit_json(_record(user))
        return
    keys = f"{user.keys} live key" + ("" if user.keys == 1 else "s")
    typer.echo(f"disabled user {user.email}; {keys} refused from now on")


@users_app.command("enable")
def users_enable(ctx: typer.Context, ref: _REF, json: _JSON = False) -> None:
    """Enable a disabled user again; their unexpired, unrevoked keys work again."""
    user = _service(ctx).enable(ref)
    state(ctx).warn_unannounced()
    if json:
        emit_json(_record(user))
        return
    typer.echo(f"enabled user {user.email}")
