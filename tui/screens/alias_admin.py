"""Manage aliases (``a`` on the provider management screen): the stored aliases can be added,
edited and removed; the config file's are listed read-only.

Every change goes through ``AdminOps`` (``aliases_add``, ``aliases_edit``, ``aliases_remove``):
locally the code of ``llmgw providers aliases``, with ``--url`` the server's
``/admin/v1/aliases``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from llmgw.tui.screens.listing import ListingScreen
from llmgw.tui.widgets.dialogs import Field, FormScreen, required

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps, Record

__all__ = ["AliasAdminScreen", "parse_targets", "show_targets"]

READ_ONLY = (
    "is defined in the config file: read-only here, and it wins over a stored alias of the "
    "same name; change it in the config file's [aliases]"
)


def show_targets(targets: list[Any]) -> str:
    """Targets as typed in the form: ``provider/model`` in order, ``*weight`` when weighted."""
    out = []
    for t in targets:
        if isinstance(t, dict):
            weight = float(t.get("weight", 1))
            out.append(str(t["target"]) + ("" if weight == 1 else f"*{weight:g}"))
        else:
            out.append(str(t))
    return ", ".join(out)


def parse_targets(text: str) -> list[Any]:
    """``a/b, c/d*3``: the candidates in order of preference, ``*N`` a weight for spreading."""
    out: list[Any] = []
    for item in (i.strip() for i in required(text).split(",")):
        if not item:
            continue
        target, _, weight = item.partition("*")
        if "/" not in target:
            raise ValueError(f"{target!r}: give provider/model (or another alias's name/...)")
        if not weight:
            out.append(target.strip())
            continue
        try:
            value = float(weight)
        except ValueError:
            raise ValueError(f"{item!r}: the weight after * must be a number") from None
        if value <= 0:
            raise ValueError(f"{item!r}: the weight must be above 0")
        out.append({"target": target.strip(), "weight": value})
    return out


class AliasAdminScreen(ListingScreen):
    """Every alias: stored ones with ``n`` new, ``e`` edit, ``x`` remove; config-file ones
    marked read-only. Escape goes back."""

    TITLE_TEXT = "Aliases · manage"
    COLUMNS = ("alias", "source", "targets (in order)", "unresolved")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "add", "New", id="aliases-add", tooltip="Store a new alias"),
        Binding("e", "edit", "Edit", id="aliases-edit", tooltip="Change a stored alias"),
        Binding("x,delete", "remove", "Remove", id="aliases-remove", tooltip="Remove one"),
        Binding("escape", "back", "Back", id="aliases-close"),
    ]

    def fetch(self, ops: AdminOps) -> list[Record]:
        return ops.aliases_list()

    def row(self, rec: Record) -> tuple[Any, ...]:
        source = Text("config (read-only)", style="italic") if rec["source"] == "config" else (
            "ignored: config wins" if rec.get("shadowed_by_config") else "database"
        )  # fmt: skip
        return (
            rec["name"],
            source,
            show_targets(rec.get("targets") or []),
            ", ".join(rec.get("unresolved") or []) or "-",
        )

    def status_text(self) -> str:
        stored = sum(1 for r in self.records if r["source"] != "config")
        rest = len(self.records) - stored
        return f"{stored} stored, {rest} from the config file; {super().status_text()}"

    def _stored(self) -> Record | None:
        rec = self.selected()
        if rec is None:
            self.notify("No alias selected", severity="warning")
            return None
        if rec["source"] == "config":
            self.notify(f"{rec['name']} {READ_ONLY}", severity="warning", markup=False)
            return None
        return rec

    def _targets_field(self, value: str = "") -> Field:
        return Field(
            "targets", "Targets in order (provider/model, comma-separated; *N weights one)",
            value=value, parse=parse_targets, placeholder="gigachat/GigaChat-2-Max, yandex/yandexgpt-lite",
        )  # fmt: skip

    def action_add(self) -> None:
        """A form for a new stored alias; gateways answer it within seconds."""
        fields = [Field("name", "Alias", parse=required, placeholder="fast"), self._targets_field()]

        def added(values: dict[str, Any] | None) -> None:
            if values is not None:
                name, targets = values["name"], values["targets"]
                self.mutate(
                    f"Alias {name} added: running gateways answer it within seconds",
                    lambda: self.ops.aliases_add(name, targets),
                )

        self.app.push_screen(FormScreen("New alias", fields, submit="Add"), added)

    def action_edit(self) -> None:
        """Replace the highlighted stored alias's targets."""
        rec = self._stored()
        if rec is None:
            return
        name = str(rec["name"])

        def edited(values: dict[str, Any] | None) -> None:
            if values is not None:
                targets = values["targets"]
                self.mutate(f"Alias {name} changed", lambda: self.ops.aliases_edit(name, targets))

        field = self._targets_field(show_targets(rec.get("targets") or []))
        self.app.push_screen(FormScreen(f"Edit alias {name}", [field]), edited)

    def action_remove(self) -> None:
        """Remove the highlighted stored alias after a confirmation."""
        rec = self._stored()
        if rec is None:
            return
        name = str(rec["name"])
        self.confirm_mutate(
            f"Remove alias {name}? Requests naming it are refused within seconds.",
            "Remove",
            f"Alias {name} removed",
            lambda: self.ops.aliases_remove(name),
        )
