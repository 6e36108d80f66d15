"""Keys: list and filter; create (the secret shown once), revoke, rotate and edit limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from llmgw.tui.format import age, num, short_time, state_style
from llmgw.tui.screens.listing import ListingScreen
from llmgw.tui.widgets.dialogs import (
    Field,
    FormScreen,
    SecretScreen,
    optional_duration,
    optional_list,
    optional_positive,
    optional_text,
    required,
)

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps, Record

__all__ = ["KeysScreen"]


def _limit(value: Any) -> str:
    return "-" if value is None else num(value)


class KeysScreen(ListingScreen):
    """API keys: ``n`` new, ``e`` edit limits, ``o`` rotate, ``d`` revoke, ``a`` all/live."""

    TITLE_TEXT = "Keys"
    COLUMNS = ("prefix", "name", "user", "status", "rpm", "tpm", "models", "expires", "last used")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "create", "New", id="keys-create", tooltip="Create a key"),
        Binding(
            "e", "edit", "Edit limits", id="keys-edit", tooltip="Edit rpm, tpm, models, expiry"
        ),
        Binding("o", "rotate", "Rotate", id="keys-rotate", tooltip="New secret, old one revoked"),
        Binding("d", "revoke", "Revoke", id="keys-revoke", tooltip="Revoke the selected key"),
        Binding("a", "toggle_all", "All/live", id="keys-all", tooltip="Show revoked keys too"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.include_revoked = False

    def fetch(self, ops: AdminOps) -> list[Record]:
        return ops.keys_list(include_revoked=self.include_revoked)

    def row(self, rec: Record) -> tuple[Any, ...]:
        status = str(rec.get("status") or "-")
        colors = self.app.theme_variables
        return (
            rec.get("prefix") or "-",
            rec.get("name") or "-",
            rec.get("user") or "-",
            Text(status, style=state_style(status, colors)),
            _limit(rec.get("rpm")),
            _limit(rec.get("tpm")),
            ",".join(rec.get("models") or []) or "all",
            short_time(rec.get("expires_at")) if rec.get("expires_at") else "never",
            age(rec.get("last_used_at"), self.llmgw.now()),
        )

    def action_toggle_all(self) -> None:
        """Show revoked keys too, or only live ones."""
        self.include_revoked = not self.include_revoked
        self.poll()

    def action_create(self) -> None:
        """A form for a new key; the secret is shown once when it is created."""
        fields = [
            Field("name", "Name", parse=required, placeholder="ci-pipeline"),
            Field("user", "User (email, id or name; optional)", parse=optional_text),
            Field("rpm", "Requests per minute (empty: no limit)", parse=optional_positive),
            Field("tpm", "Tokens per minute (empty: no limit)", parse=optional_positive),
            Field("models", "Models (comma-separated; empty: all)", parse=optional_list),
            Field("expires", "Expires in (30d, 12h; empty: never)", parse=optional_duration),
        ]

        def created(values: dict[str, Any] | None) -> None:
            if values is None:
                return
            self.mutate(
                "Create key",
                lambda: self.ops.keys_create(
                    values["name"],
                    user=values["user"],
                    expires=values["expires"],
                    rpm=values["rpm"],
                    tpm=values["tpm"],
                    models=values["models"],
                ),
                lambda rec: self._secret(
                    f"Key {rec.get('prefix')} ({rec.get('name')}) created", rec
                ),
            )

        self.app.push_screen(FormScreen("New API key", fields, submit="Create"), created)

    def _secret(self, title: str, rec: Record) -> None:
        self.app.push_screen(SecretScreen(title, str(rec.get("key") or "")))

    def action_edit(self) -> None:
        """Edit the selected key's limits, allow-list and expiry."""
        rec = self.selected()
        if rec is None:
            return
        ref = str(rec["id"])
        fields = [
            Field("rpm", "Requests per minute (empty: no limit)", value=str(rec.get("rpm") or ""), parse=optional_positive),
            Field("tpm", "Tokens per minute (empty: no limit)", value=str(rec.get("tpm") or ""), parse=optional_positive),
            Field("models", "Models (comma-separated; empty: all)", value=",".join(rec.get("models") or []), parse=optional_list),
        ]  # fmt: skip

        def edited(values: dict[str, Any] | None) -> None:
            if values is None:
                return
            self.mutate(
                f"Limits of {rec.get('prefix')} saved",
                lambda: self.ops.keys_update(
                    ref, rpm=values["rpm"], tpm=values["tpm"], models=values["models"]
                ),
            )

        self.app.push_screen(
            FormScreen(f"Limits of {rec.get('prefix')} ({rec.get('name')})", fields), edited
        )

    def action_revoke(self) -> None:
        """Revoke the selected key after a confirmation."""
        rec = self.selected()
        if rec is None:
            return
        ref = str(rec["id"])
        self.confirm_mutate(
            f"Revoke key {rec.get('prefix')} ({rec.get('name')})? "
            "Requests with it are refused from now on; this cannot be undone.",
            "Revoke",
            f"Key {rec.get('prefix')} revoked",
            lambda: self.ops.keys_revoke(ref),
        )

    def action_rotate(self) -> None:
        """Rotate the selected key after a confirmation; the new secret is shown once."""
        rec = self.selected()
        if rec is None:
            return
        ref = str(rec["id"])
        self.confirm_mutate(
            f"Rotate key {rec.get('prefix')} ({rec.get('name')})? A new secret is made with the "
            "same settings and the old one stops working now.",
            "Rotate",
            "Rotate key",
            lambda: self.ops.keys_rotate(ref),
            lambda new: self._secret(
                f"Key {rec.get('prefix')} rotated: new key {new.get('prefix')}", new
            ),
        )
