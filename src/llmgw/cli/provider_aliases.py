"""``llmgw providers aliases``: list every alias; add, edit and remove the stored ones."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from llmgw.cli.output import confirm, emit_json, print_table
from llmgw.cli.state import state
from llmgw.errors import UsageError

__all__ = ["aliases_app"]

aliases_app = typer.Typer(
    help="Aliases: list every one (config file and database); add, edit, remove stored ones.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
_NAME = Annotated[str, typer.Argument(metavar="NAME", help="The alias's name (no '/').")]
_TARGETS = Annotated[
    list[str],
    typer.Argument(
        metavar="TARGET...",
        help="Candidates in order: provider/model[:version], or provider/model=WEIGHT to "
        "spread load by weight.",
        show_default=False,
    ),
]
_YES = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask; required when stdin is not a terminal.")
]


def _targets(given: list[str]) -> list[Any]:
    out: list[Any] = []
    for t in given:
        target, sep, weight = t.rpartition("=")
        if not sep:
            out.append(t)
            continue
        try:
            w = float(weight)
        except ValueError:
            raise UsageError(
                f"invalid weight in {t!r}", hint="TARGET=WEIGHT with a positive number, e.g. =3"
            ) from None
        out.append({"target": target, "weight": w})
    return out


def _shown(t: Any) -> str:
    if isinstance(t, str):
        return t
    return f"{t['target']} (weight {t['weight']:g})"


def _done(record: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        emit_json(record)
        return
    targets = ", ".join(_shown(t) for t in record["targets"])
    typer.echo(f"{verb} alias {record['name']} -> {targets}")
    if not record.get("removed"):
        typer.echo("running gateways answer it within seconds, without a restart")
    if record.get("unresolved"):
        print(
            f"warning: no provider offers {', '.join(record['unresolved'])} now: the alias "
            "falls back past it until one does",
            file=sys.stderr,
        )


@aliases_app.command("list")
def aliases_list(ctx: typer.Context, as_json: _JSON = False) -> None:
    """List every alias: the config file's (read-only) and the stored ones, with their targets.

    A stored alias whose name the config file also defines is shadowed (ignored), since
    config-file aliases win on a name clash. "unresolved" names targets no provider offers now.
    With the global --url: the running server's.
    """
    rows = state(ctx).admin().aliases_list()
    if as_json:
        emit_json(rows)
        return
    table = []
    for r in rows:
        notes = []
        if r["shadowed_by_config"]:
            notes.append("shadowed by the config file")
        if r["unresolved"]:
            notes.append("unresolved: " + ", ".join(r["unresolved"]))
        table.append(
            {
                "alias": r["name"],
                "source": r["source"],
                "targets": ", ".join(_shown(t) for t in r["targets"]),
                "note": "; ".join(notes),
            }
        )
    print_table(table, ["alias", "source", "targets", "note"], title="aliases",
                wrap=("targets", "note"))  # fmt: skip


@aliases_app.command("add")
def aliases_add(ctx: typer.Context, name: _NAME, targets: _TARGETS, as_json: _JSON = False) -> None:
    """Store an alias in the database: clients then ask for NAME and get TARGET... in order
    (the next one when a target fails before its first byte); running gateways apply it within
    seconds, no restart.

    A name the config file's [aliases] defines is refused: config-file aliases are read-only
    and win on a name clash.
    """
    _done(state(ctx).admin().aliases_add(name, _targets(targets)), as_json, "added")


@aliases_app.command("edit")
def aliases_edit(
    ctx: typer.Context, name: _NAME, targets: _TARGETS, as_json: _JSON = False
) -> None:
    """Replace a stored alias's targets with TARGET... (the whole ordered list); applied within
    seconds, requests already routed finish on the old list."""
    _done(state(ctx).admin().aliases_edit(name, _targets(targets)), as_json, "changed")


@aliases_app.command("remove")
def aliases_remove(
    ctx: typer.Context, name: _NAME, as_json: _JSON = False, yes: _YES = False
) -> None:
    """Delete a stored alias (asks first); within seconds its name answers 404."""
    confirm(f"remove alias {name}", "clients asking for it get 404 model_not_found", yes=yes)
    _done(state(ctx).admin().aliases_remove(name), as_json, "removed")
