"""What ``llmgw usage`` shares with the fast path (``cli/fast.py``), without Typer: reading
``--since``/``--until``, and printing ``usage stats`` rows as a table, JSON or CSV."""

from __future__ import annotations

import csv
import re
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from llmgw.cli.output import decimal_text, emit_json, print_table
from llmgw.durations import parse_duration
from llmgw.errors import UsageError

__all__ = ["costs_text", "csv_value", "key_label", "show_stats", "since", "window"]

# The table for people is narrower than --json/--csv: names instead of UUIDs, short headers.
_TABLE_LABELS = {
    "day": ("day",),
    "hour": ("hour",),
    "status": ("status",),
    "model": ("model",),
    "version": ("version",),
    "provider": ("provider",),
    "key": ("key",),
    "user": ("email",),
}
_TABLE_METRICS = {
    "requests": "requests",
    "errors": "errors",
    "total_tokens": "tokens",
    "cost": "cost",
    "avg_latency_ms": "avg_ms",
    "p95_latency_ms": "p95_ms",
}


def since(text: str | None, param: str = "--since") -> datetime | None:
    """``text`` as a moment: a duration ago (``7d``) or an ISO 8601 date or time (UTC unless
    it names a zone)."""
    if text is None:
        return None
    if re.fullmatch(r"\s*\d+\s*[smhdw]\s*", text):  # 90s, 5200w: a duration (its own errors)
        return datetime.now(UTC) - parse_duration(text, param=param)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"invalid {param} {text!r}",
            hint="give a duration ago (90s, 15m, 12h, 7d, 2w) or a date/time (2026-12-01, "
            "2026-12-01T09:00)",
            param=param.lstrip("-"),
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def window(
    start: str, until: str | None, hint: str = "e.g. --since 30d --until 1d"
) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` as moments; ``--until`` must come after ``--since``."""
    first, end = since(start), since(until, "--until")
    if first is not None and end is not None and end <= first:
        raise UsageError("--until must be after --since", hint=hint)
    return first, end


def csv_value(v: Any) -> Any:
    """A value as a CSV cell."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict | list):
        return orjson.dumps(v).decode()
    return decimal_text(v) if isinstance(v, Decimal) else v


def costs_text(r: dict[str, Any], places: int, *, shown: bool = False) -> str:
    """A row's cost per currency, never added across currencies: ``0.5 USD + 12 RUB``
    (``shown``: a table cell, a cost in one currency with its code; CSV: ``USD=0.5;RUB=12``)."""
    costs = r.get("costs") or {}
    if not shown:
        return ";".join(f"{c}={decimal_text(Decimal(v))}" for c, v in costs.items())
    if len(costs) > 1:
        return " + ".join(f"{Decimal(v):.{places}f} {c}" for c, v in costs.items())
    cur = f" {r['currency']}" if r.get("currency") else ""
    return f"{Decimal(r['cost']):.{places}f}{cur}"


def key_label(row: dict[str, Any]) -> str:
    """A key as a table shows it: its name and prefix."""
    if row["key"] is None:
        return "(no key)"
    if row["key_name"] is None:
        return str(row["key"])[:8]  # the key was deleted
    return f"{row['key_name']} {row['key_prefix']}"


def show_stats(
    rows: list[dict[str, Any]],
    group: str,
    start: datetime | None,
    end: datetime | None,
    *,
    json: bool,
    as_csv: bool,
) -> None:
    """``usage stats`` records (``LocalAdmin.usage_stats``'s) as JSON, CSV or a table."""
    from llmgw.usage.stats_sql import stats_columns

    columns = stats_columns(group)  # type: ignore[arg-type]
    if json:
        emit_json({"since": start, "until": end, "by": group, "rows": rows})
    elif as_csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(
                [csv_value(costs_text(r, 10) if c == "costs" else r.get(c)) for c in columns]
            )
    else:
        labels = _TABLE_LABELS[group]
        shown = [
            {
                **{c: r[c] for c in labels},
                **({"key": key_label(r)} if group == "key" else {}),
                **{short: r[long] for long, short in _TABLE_METRICS.items()},
                "cost": costs_text(r, 6, shown=True),
                "avg_ms": None if r["avg_latency_ms"] is None else round(r["avg_latency_ms"]),
                "p95_ms": None if r["p95_latency_ms"] is None else round(r["p95_latency_ms"]),
            }
            for r in rows
        ]
        title = f"usage since {start:%Y-%m-%d %H:%M} UTC by {group}" if start else "usage"
        if end is not None:
            title = title.replace(" by ", f" until {end:%Y-%m-%d %H:%M} UTC by ")
        print_table(
            shown,
            [*labels, *_TABLE_METRICS.values()],
            title=title,
            optional=("p95_ms", "errors", "avg_ms"),  # narrow terminals drop these
        )
