"""How the CLI prints: tables for people, JSON for scripts, errors on stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

if TYPE_CHECKING:  # rich loads when something is printed for people, never for --json
    from rich.console import Console

__all__ = [
    "confirm",
    "decimal_text",
    "emit_json",
    "json_default",
    "print_error",
    "print_table",
    "stdout",
    "to_jsonable",
    "when_text",
]


def stdout() -> Console:
    """A console on the current stdout (created per call so tests can capture it).

    A terminal's own width; piped output takes ``COLUMNS`` when it is set, else 200 columns
    (piped tables are read in CI logs too: don't squeeze them into 80 columns unasked).
    """
    from rich.console import Console

    width = None
    if not sys.stdout.isatty():
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else 200
    return Console(file=sys.stdout, soft_wrap=True, width=width)


def decimal_text(value: Decimal) -> str:
    """A decimal as a plain fixed-point string: ``0.0000000000``, never ``0E-10`` or ``1E-7``."""
    return format(value, "f")


def json_default(obj: Any) -> Any:
    """orjson's ``default``: decimals as plain fixed-point strings (exact), sets as sorted lists."""
    if isinstance(obj, Decimal):
        return decimal_text(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_jsonable(obj: Any) -> Any:
    """Round-trip through orjson so UUIDs, datetimes and decimals become plain JSON values."""
    return orjson.loads(orjson.dumps(obj, default=json_default))


def when_text(value: str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str | None:
    """An ISO 8601 time from an admin record, as tables show it (UTC); ``None`` stays ``None``."""
    if value is None:
        return None
    return datetime.fromisoformat(value).strftime(fmt)


def emit_json(data: Any) -> None:
    """Print ``data`` as one JSON document on stdout."""
    sys.stdout.write(orjson.dumps(data, default=json_default, option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")
    sys.stdout.flush()


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, UUID):
        return str(v)
    if isinstance(v, list | tuple):
        return ",".join(map(str, v)) or "-"
    return str(v)


def print_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    wrap: Collection[str] = (),
    optional: Sequence[str] = (),
) -> None:
    """Print ``rows`` as a table with ``columns``; an empty list prints a short notice.

    The table fits the console: ``optional`` columns are dropped, first one first, while the
    others would not fit; only the free-text columns in ``wrap`` may fold onto more lines.
    Every other cell (ids, prefixes, dates, statuses, numbers) stays whole on one line.
    """
    from rich.table import Table

    rows = list(rows)
    con = stdout()
    if not rows:
        con.print(f"[dim]no {title or 'rows'}[/dim]")
        return
    cells = [{c: _cell(r.get(c)) for c in columns} for r in rows]
    shown = list(columns)
    for drop in optional:
        if _width(shown, cells, wrap) <= con.width:
            break
        shown.remove(drop)
    table = Table(title=title, header_style="bold")
    for c in shown:
        if c in wrap:
            table.add_column(_header(c), overflow="fold", min_width=min(_natural(c, cells), 10))
        else:
            table.add_column(_header(c), no_wrap=True, overflow="ellipsis")
    for row in cells:
        table.add_row(*(row[c] for c in shown))
    con.print(table)


def _header(column: str) -> str:
    return column.replace("_", " ")


def _natural(column: str, cells: list[dict[str, str]]) -> int:
    from rich.cells import cell_len

    return max(cell_len(_header(column)), *(cell_len(r[column]) for r in cells))


def _width(columns: list[str], cells: list[dict[str, str]], wrap: Collection[str]) -> int:
    """Columns needed with whole unwrappable cells and wrappable ones at up to 10 (Rich's box:
    a border and one space of padding on each side of every cell)."""
    inner = sum(min(_natural(c, cells), 10) if c in wrap else _natural(c, cells) for c in columns)
    return inner + 3 * len(columns) + 1


def confirm(action: str, consequence: str, *, yes: bool) -> None:
    """Ask before a destructive change: a prompt on a terminal, ``--yes`` required otherwise.

    ``action`` is what will happen ("revoke key ci (llmgw_ab12cd)"), ``consequence`` what is lost.
    Declining exits 1 and changes nothing; without a terminal and without ``--yes`` the command is
    refused with exit 2 before anything is touched (a script must say what it means).
    """
    import typer

    from llmgw.errors import LlmgwError, UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"{action}: not confirmed (stdin is not a terminal)",
            hint=f"{consequence}; pass --yes to confirm",
        )
    if not typer.confirm(f"{action[:1].upper()}{action[1:]}? {consequence}.", err=True):
        raise LlmgwError("not confirmed; nothing was changed")


def print_error(message: str, hint: str | None) -> None:
    """One line on stderr, plus a dim hint line when there is one."""
    from rich.console import Console
    from rich.text import Text

    err = Console(file=sys.stderr, soft_wrap=True, highlight=False)
    err.print(Text.assemble(("Error:", "bold red"), " ", message.replace("\n", " ")))
    if hint:
        err.print(Text(f"hint: {hint}", style="dim"))
