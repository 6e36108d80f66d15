"""``llmgw report``: the daily, weekly or monthly usage report, in the terminal (with charts) or
as Markdown, HTML (inline SVG charts), CSV or JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from llmgw.cli.state import state
from llmgw.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["report"]

_BLOCKS = " ▁▂▃▄▅▆▇█"


def _column_chart(
    out: Console, title: str, labels: list[str], values: list[float], every: int
) -> None:
    """Vertical bars drawn with block characters, 8 rows high, one column per value."""
    from rich.text import Text

    top = max(values, default=0) or 1
    rows = 8
    width = max(1, min(8, 64 // max(len(values), 1)))
    out.print(Text(f"{title} (peak {max(values, default=0):,.0f})", style="bold"))
    for r in range(rows, 0, -1):
        line = Text("│")
        for v in values:
            level = v / top * rows - (r - 1)
            ch = _BLOCKS[8] if level >= 1 else _BLOCKS[max(0, int(level * 8))] if level > 0 else " "
            line.append(ch * (width - 1) + " " if width >= 3 else ch * width, style="blue")
        out.print(line)
    out.print("└" + "─" * (len(values) * width))
    axis = ""
    for i, label in enumerate(labels):
        if i % every == 0 and (i == 0 or len(axis) < i * width):
            axis = axis.ljust(i * width) + label
    out.print(" " + axis, highlight=False)


def _bar_chart(out: Console, title: str, rows: list[tuple[str, float, str]]) -> None:
    """Horizontal bars, one per row, with a note after each."""
    from rich.text import Text

    top = max((v for _, v, _ in rows), default=0) or 1
    name_w = max((len(n) for n, _, _ in rows), default=1)
    out.print(Text(title, style="bold"))
    for name, v, note in rows:
        n = int(round(v / top * 40))
        line = Text(f"{name:>{name_w}} ")
        line.append("█" * n, style="green")
        line.append(f" {v:,.0f} {note}")
        out.print(line, highlight=False)


def _table_report(rep: dict[str, Any]) -> None:
    from llmgw.cli.output import print_table, stdout
    from llmgw.usage.report_render import _key_rows, _model_rows, _provider_rows, _summary, money

    out = stdout()
    out.print(f"[bold]{rep['title']}[/bold]")
    out.print(f"{rep['start']} to {rep['end']} (UTC)", highlight=False)
    hourly = rep["period"] == "daily"
    labels = [s["at"][11:13] if hourly else s["at"][8:10] for s in rep["series"]]
    _column_chart(
        out,
        "requests per " + ("hour" if hourly else "day"),
        labels,
        [float(s["requests"]) for s in rep["series"]],
        3 if hourly else max(1, len(labels) // 10),
    )
    _bar_chart(
        out,
        "requests per provider",
        [(p["provider"] or "-", float(p["requests"]), f"({p['error_share']:.1%} errors, {money(p['costs'])})")
         for p in rep["providers"]],
    )  # fmt: skip

    def table(head: list[str], rows: list[list[Any]], title: str) -> None:
        print_table([dict(zip(head, r, strict=True)) for r in rows], head, title=title)

    table(["", "this period", "previous", "change"], _summary(rep), "summary and trend")
    table(
        ["provider", "requests", "errors", "tokens", "cost", "avg ms", "p95 ms"],
        _provider_rows(rep),
        "providers",
    )
    table(["model", "requests", "errors", "tokens", "cost"], _model_rows(rep), "models")
    table(["key", "requests", "tokens", "cost"], _key_rows(rep), "top keys")
    if rep["recommendations"]:
        from rich.markup import escape

        out.print("[bold]recommendations[/bold]")
        for r in rep["recommendations"]:
            out.print(
                f"- {r['kind'].replace('_', ' ')} (saving {money(r['saving'])}): {escape(r['recommendation'])}"
            )


def report(
    ctx: typer.Context,
    period: Annotated[str, typer.Argument(help="daily, weekly (ISO week) or monthly.")],
    on: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="A day in the period (YYYY-MM-DD, UTC); default: the last complete period.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="table (terminal, with charts), md, html, csv or json."
        ),
    ] = "table",
    out: Annotated[
        str | None,
        typer.Option(
            "--out", "-o", help="Write to this file instead of stdout.", show_default=False
        ),
    ] = None,
) -> None:
    """The daily, weekly or monthly usage report: terminal charts, Markdown, HTML, CSV, JSON.

    Totals against the previous period, usage over time, providers and models compared, top
    keys and recommendations. HTML is one self-contained file with SVG charts; costs stay per
    currency."""
    from llmgw.usage.report_data import PERIODS, Period, build
    from llmgw.usage.report_render import FORMATS, render

    if period not in PERIODS:
        raise UsageError(f"invalid period {period!r}", hint="use daily, weekly or monthly")
    if fmt not in FORMATS:
        raise UsageError(f"invalid --format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
    day: date | None = None
    if on is not None:
        try:
            day = date.fromisoformat(on)
        except ValueError:
            raise UsageError(f"invalid --date {on!r}", hint="give a day as YYYY-MM-DD") from None
    if fmt == "table" and out is not None:
        raise UsageError("--out needs a file format", hint="add --format md, html, csv or json")
    rep = build(state(ctx).admin(), cast(Period, period), day, now=datetime.now(UTC))
    if fmt == "table":
        _table_report(rep)
        return
    text = render(rep, fmt)
    if out is None:
        typer.echo(text, nl=False)
        return
    from pathlib import Path

    target = Path(out)
    if not target.parent.is_dir():
        raise UsageError(
            f"no such directory: {target.parent}", hint="create it first or pick another --out"
        )
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    typer.echo(f"wrote {rep['title']} to {target}", err=True)
