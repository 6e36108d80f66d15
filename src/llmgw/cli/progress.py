"""Progress of long data commands: Rich bars on a terminal, JSON lines with ``--json``, else lines."""

from __future__ import annotations

import sys
from typing import Any

import orjson

__all__ = ["make_progress"]


class JsonLines:
    """Every event as one JSON object per line on stdout (``--json``)."""

    def __call__(self, event: dict[str, Any]) -> None:
        sys.stdout.write(orjson.dumps(event).decode() + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        """Nothing to stop."""


class PlainLines:
    """One line per finished table and per warning, on stderr (logs, pipes)."""

    def __init__(self) -> None:
        self.last: dict[str, Any] | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "warning":
            sys.stderr.write(f"warning: {event['message']}\n")
        elif kind == "progress":
            self.last = event
        elif kind in ("table", "verify", "check"):
            self._flush()
        sys.stderr.flush()

    def _flush(self) -> None:
        if self.last is not None:
            e, self.last = self.last, None
            rate = f" ({e['rows_per_s']:,} rows/s)" if e.get("rows_per_s") else ""
            sys.stderr.write(f"{e['table']}: {e['done']:,} rows copied{rate}\n")

    def close(self) -> None:
        """Print what is still pending."""
        self._flush()
        sys.stderr.flush()


class Bars:
    """A Rich progress bar per table (rows, rows/s, ETA) on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>12}"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
        )
        self.tasks: dict[str, Any] = {}
        self.progress.start()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "warning":
            self.progress.console.print(f"[yellow]warning:[/] {event['message']}")
        elif kind == "table":
            self.tasks[event["table"]] = self.progress.add_task(
                event["table"], total=event["total"] or 0, rate=""
            )
        elif kind == "progress" and event["table"] in self.tasks:
            rate = f"{event['rows_per_s']:,} rows/s" if event.get("rows_per_s") else ""
            self.progress.update(self.tasks[event["table"]], completed=event["done"], rate=rate)

    def close(self) -> None:
        """Stop drawing."""
        self.progress.stop()


def make_progress(json: bool) -> JsonLines | PlainLines | Bars:
    """The progress printer for this terminal and these flags."""
    if json:
        return JsonLines()
    if sys.stderr.isatty():
        return Bars()
    return PlainLines()
