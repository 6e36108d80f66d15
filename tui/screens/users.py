"""Users: list and filter; create, disable or enable, and change the role (each confirmed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from llmgw.tui.format import num, short_time, state_style
from llmgw.tui.screens.listing import ListingScreen
from llmgw.tui.widgets.dialogs import Field, FormScreen, optional_text, required

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps, Record

__all__ = ["UsersScreen"]

ROLES = ("user", "admin")


def _role(text: str) -> str:
    role = text or "user"
    if role not in ROLES:
        raise ValueError(f"{role!r} is not a role (user or admin)")
    return role


class UsersScreen(ListingScreen):
    """Users: ``n`` new, ``d`` disable/enable, ``R`` toggles the role between user and admin."""

    TITLE_TEXT = "Users"
    COLUMNS = ("email", "name", "role", "status", "keys", "created")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "create", "New", id="users-create", tooltip="Create a user"),
        Binding(
            "d",
            "toggle_disabled",
            "Disable/enable",
            id="users-disable",
            tooltip="Disable or enable the selected user",
        ),
        Binding(
            "R",
            "toggle_role",
            "Role",
            id="users-role",
            tooltip="Make the user an admin, or a user again",
        ),
    ]

    def fetch(self, ops: AdminOps) -> list[Record]:
        return ops.users_list()

    def row(self, rec: Record) -> tuple[Any, ...]:
        status = str(rec.get("status") or "-")
        return (
            rec.get("email") or "-",
            rec.get("name") or "-",
            rec.get("role") or "-",
            Text(status, style=state_style(status, self.app.theme_variables)),
            num(rec.get("keys")),
            short_time(rec.get("created_at")),
        )

    def action_create(self) -> None:
        """A form for a new user."""
        fields = [
            Field("email", "Email", parse=required, placeholder="ana@example.com"),
            Field("name", "Name (optional)", parse=optional_text),
            Field("role", "Role (user or admin)", value="user", parse=_role),
        ]

        def created(values: dict[str, Any] | None) -> None:
            if values is not None:
                self.mutate(
                    f"User {values['email']} created",
                    lambda: self.ops.users_create(
                        values["email"], name=values["name"], role=values["role"]
                    ),
                )

        self.app.push_screen(FormScreen("New user", fields, submit="Create"), created)

    def action_toggle_disabled(self) -> None:
        """Disable the selected user (their keys stop working) or enable them, once confirmed."""
        rec = self.selected()
        if rec is None:
            return
        ref, email = str(rec["id"]), rec.get("email")
        if rec.get("status") != "disabled":
            self.confirm_mutate(
                f"Disable {email}? Their keys stop authenticating until they are enabled again.",
                "Disable",
                f"{email} disabled",
                lambda: self.ops.users_disable(ref),
            )
        else:
            self.confirm_mutate(
                f"Enable {email} again?",
                "Enable",
                f"{email} enabled",
                lambda: self.ops.users_enable(ref),
            )

    def action_toggle_role(self) -> None:
        """Switch the selected user between the roles user and admin, once confirmed."""
        rec = self.selected()
        if rec is None:
            return
        ref, email = str(rec["id"]), rec.get("email")
        role = "user" if rec.get("role") == "admin" else "admin"
        self.confirm_mutate(
            f"Give {email} the role {role}?",
            "Change role",
            f"{email} is now {role}",
            lambda: self.ops.users_set_role(ref, role),
        )
