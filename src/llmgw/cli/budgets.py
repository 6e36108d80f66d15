"""``llmgw budgets``: spend budgets per key and user, per day or month, with notifications."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from llmgw.cli.options import JsonOpt
from llmgw.cli.output import confirm, emit_json, print_table, stdout
from llmgw.cli.state import state
from llmgw.errors import UsageError

__all__ = ["budgets_app"]

budgets_app = typer.Typer(
    help="Spend budgets per key or user, per day or month: set, list, show, delete.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_REF = Annotated[
    str, typer.Argument(metavar="ID", help="The budget's id or its first 8+ characters.")
]
_COLUMNS = [
    "id",
    "scope",
    "subject",
    "period",
    "amount",
    "spent",
    "percent",
    "hard_stop",
    "resets_at",
]


def _rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **r,
            "id": r["id"][:8],
            "amount": f"{float(r['amount']):.2f} {r['currency']}",
            "spent": f"{float(r['spent']):.2f}",
            "percent": "-" if r["percent"] is None else f"{r['percent']:.1f}%",
            "hard_stop": "stop" if r["hard_stop"] else "notify",
            "resets_at": r["resets_at"][:16].replace("T", " "),
        }
        for r in records
    ]


@budgets_app.command("set")
def budgets_set(
    ctx: typer.Context,
    amount: Annotated[str, typer.Argument(help="The budget per period, e.g. 1000 or 12.50.")],
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="The key (name, id, id prefix or key prefix).", show_default=False
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="The user (email, id, id prefix or name).", show_default=False),
    ] = None,
    period: Annotated[str, typer.Option("--period", help="day or month (UTC).")] = "month",
    currency: Annotated[
        str | None,
        typer.Option(
            "--currency",
            help="ISO 4217 code counted (RUB, USD); default: the providers' one currency.",
            show_default=False,
        ),
    ] = None,
    thresholds: Annotated[
        str, typer.Option("--thresholds", help="Percentages that notify, once per period each.")
    ] = "80,100",
    hard_stop: Annotated[
        bool,
        typer.Option(
            "--hard-stop/--notify-only",
            help="Refuse requests (402 budget_exceeded) once the budget is spent.",
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Create or replace the budget of a key or a user for a period, in one currency.

    Running servers apply it within budgets.refresh_interval (1 s by default).
    """
    if period not in ("day", "month"):
        raise UsageError(f"invalid --period {period!r}", hint="day or month")
    record = (
        state(ctx)
        .admin()
        .budgets_set(
            key=key,
            user=user,
            period=period,
            amount=amount,
            currency=currency,
            thresholds=thresholds,
            hard_stop=hard_stop,
        )
    )
    if json:
        emit_json(record)
        return
    stdout().print(
        f"budget {record['id'][:8]}: {record['scope']} {record['subject']}, "
        f"{float(record['amount']):.2f} {record['currency']} per {record['period']}, "
        f"notify at {', '.join(f'{t}%' for t in record['thresholds'])}"
        + (", hard stop at 100%" if record["hard_stop"] else ""),
        highlight=False,
        markup=False,
    )


@budgets_app.command("list")
def budgets_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Every budget with this period's spend (from the database) and when it resets."""
    records = state(ctx).admin().budgets_list()
    if json:
        emit_json(records)
        return
    print_table(_rows(records), _COLUMNS, title="budgets", optional=("resets_at", "hard_stop"))


@budgets_app.command("show")
def budgets_show(ctx: typer.Context, ref: _REF, json: JsonOpt = False) -> None:
    """One budget: its period, spend, thresholds and the notifications already sent."""
    record = state(ctx).admin().budgets_show(ref)
    if json:
        emit_json(record)
        return
    out = stdout()
    for name in (
        "id",
        "scope",
        "subject",
        "period",
        "currency",
        "amount",
        "spent",
        "percent",
        "thresholds",
        "notified",
        "hard_stop",
        "period_start",
        "resets_at",
        "updated_at",
    ):
        out.print(f"{name:>13}: {record[name]}", highlight=False, markup=False)


@budgets_app.command("delete")
def budgets_delete(
    ctx: typer.Context,
    ref: _REF,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; required when stdin is not a terminal.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Remove a budget: its spend is no longer watched or enforced."""
    ops = state(ctx).admin()
    record = ops.budgets_show(ref)
    confirm(
        f"delete the {record['period']} budget of {record['scope']} {record['subject']}",
        "its notifications and hard stop end",
        yes=yes,
    )
    done = ops.budgets_delete(record["id"])
    if json:
        emit_json(done)
        return
    stdout().print(f"deleted budget {done['id'][:8]}", highlight=False)
