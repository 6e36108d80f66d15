"""``llmgw usage``: usage and cost statistics, and exports of the raw usage rows."""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Annotated, Any, cast

import orjson
import typer

from llmgw.cli.options import JsonOpt
from llmgw.cli.output import (
    confirm,
    emit_json,
    json_default,
    print_table,
    stdout,
    when_text,
)
from llmgw.cli.state import state
from llmgw.cli.usage_view import costs_text as _costs_text
from llmgw.cli.usage_view import csv_value as _csv_value
from llmgw.cli.usage_view import key_label as _key_label
from llmgw.cli.usage_view import show_stats
from llmgw.cli.usage_view import since as _since
from llmgw.cli.usage_view import window as _window
from llmgw.errors import DatabaseError, UsageError

__all__ = ["usage_app"]

usage_app = typer.Typer(
    help="Usage and cost: statistics and exports.", no_args_is_help=True, rich_markup_mode=None
)

_FORMATS = ("csv", "jsonl")


SinceOpt = Annotated[
    str,
    typer.Option("--since", help="Start of the window: 90s, 15m, 12h, 7d, 2w ago, or a date/time."),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        "--until",
        help="End of the window (exclusive): a duration ago or a date/time (default: now).",
        show_default=False,
    ),
]


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise UsageError(f"invalid {option} {value!r}", hint=f"use one of: {', '.join(allowed)}")
    return value


@contextlib.contextmanager
def _db_errors() -> Iterator[None]:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise DatabaseError(
            f"usage query failed: {reason[0][:200] if reason else type(exc).__name__}",
            hint="check that the database is reachable (`llmgw db current`)",
        ) from None


def _readable(row: dict[str, Any]) -> dict[str, Any]:
    """An export row as a person reads it: latencies to the microsecond (3 decimals of ms)."""
    for name in ("latency_ms", "ttft_ms"):
        if row.get(name) is not None:
            row[name] = round(float(row[name]), 3)
    return row


@usage_app.command("stats")
def usage_stats(
    ctx: typer.Context,
    since: SinceOpt = "7d",
    until: UntilOpt = None,
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="Group by day, hour, model (with its :version), version, provider, key, user or status.",
        ),
    ] = "day",
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Only this key (name, id, id prefix or key prefix).", show_default=False
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", help="Only this user (email, id, id prefix or name).", show_default=False
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Only this model: model, provider/model[:version].", show_default=False
        ),
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="Only this provider.", show_default=False)
    ] = None,
    status: Annotated[
        int | None,
        typer.Option("--status", help="Only this HTTP status (200, 429...).", show_default=False),
    ] = None,
    json: JsonOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")] = False,
) -> None:
    """Show requests, errors, tokens, cost and latency over a window, grouped by --by."""
    from llmgw.admin.ops import USAGE_GROUPS
    from llmgw.usage.reports import GroupBy

    group = cast(GroupBy, _choice(by, USAGE_GROUPS, "--by"))
    start, end = _window(since, until, "e.g. --since 2026-12-01 --until 2026-12-02")
    if json and as_csv:
        raise UsageError("--json and --csv cannot be used together", hint="pick one output format")
    rows = (
        state(ctx)
        .admin()
        .usage_stats(
            since=start,
            until=end,
            by=group,
            key=key,
            user=user,
            model=model,
            provider=provider,
            status=status,
        )
    )
    show_stats(rows, group, start, end, json=json, as_csv=as_csv)


@usage_app.command("top")
def usage_top(
    ctx: typer.Context,
    of: Annotated[
        str, typer.Argument(help="What to rank: keys, users or models (with their :version).")
    ] = "keys",
    metric: Annotated[
        str,
        typer.Option("--by", help="Rank by cost (per currency), tokens or requests."),
    ] = "cost",
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many (1-1000).")] = 10,
    since: SinceOpt = "30d",
    until: UntilOpt = None,
    json: JsonOpt = False,
) -> None:
    """The top keys, users or models by cost (ranked per currency, never across), tokens or
    requests over a window."""
    from llmgw.usage.analytics import GROUP_OF, METRICS, TOP_OF, Metric, top

    _choice(of, TOP_OF, "what to rank")
    _choice(metric, METRICS, "--by")
    if not 1 <= limit <= 1000:
        raise UsageError(f"invalid --limit {limit}", hint="use 1 to 1000")
    start, end = _since(since), _since(until, "--until")
    rows = state(ctx).admin().usage_stats(since=start, until=end, by=GROUP_OF[of])
    ranked = top(rows, cast(Metric, metric), limit)
    if json:
        emit_json({"since": start, "until": end, "of": of, "by": metric, "rows": ranked})
        return
    label = {"keys": "key", "users": "email", "models": "model"}[of]
    shown = [
        {
            **r,
            "key": _key_label(r) if of == "keys" else None,
            "email": r.get("email") or r.get("user") if of == "users" else None,
            "tokens": r.get("total_tokens"),
            "cost": _costs_text(r, 6, shown=True),
            "value": f"{Decimal(r['value']):.6f}" if metric == "cost" else r["value"],
        }
        for r in ranked
    ]
    cols = ["rank", *(["currency"] if metric == "cost" else []), label, "value", "requests"]
    cols += ["tokens", "cost"]
    print_table(
        shown,
        cols,
        title=f"top {of} by {metric} since {start:%Y-%m-%d %H:%M} UTC" if start else "top",
        optional=("cost", "tokens", "requests"),
    )


_SHADES = " ░▒▓█"


@usage_app.command("patterns")
def usage_patterns(
    ctx: typer.Context,
    since: SinceOpt = "30d",
    until: UntilOpt = None,
    json: JsonOpt = False,
) -> None:
    """Usage patterns: requests per UTC weekday and hour (a heat map), the share of streamed
    requests, average prompt and completion sizes, and per provider its error share, streaming
    share and average sizes."""
    from llmgw.usage.analytics import patterns

    start, end = _window(since, until)
    if start is None or (end or datetime.now(UTC)) - start > timedelta(days=400):
        raise UsageError(
            "the window is longer than 400 days", hint="give a later --since or an earlier --until"
        )
    ops = state(ctx).admin()
    found = patterns(
        ops.usage_stats(since=start, until=end, by="hour"),
        ops.usage_stats(since=start, until=end, by="provider"),
    )
    if json:
        emit_json({"since": start, "until": end, **found})
        return
    out = stdout()
    peak = max((max(d["hours"]) for d in found["heatmap"]), default=0)
    out.print(f"requests per UTC weekday and hour since {start:%Y-%m-%d %H:%M} UTC (peak {peak})")
    out.print("     " + "".join(f"{h:<3d}" if h % 3 == 0 else "   " for h in range(24)).rstrip())
    for d in found["heatmap"]:
        cells = "".join(
            (_SHADES[min(4, 1 + (n * 4 - 1) // peak)] if n and peak else "·") * 2 + " "
            for n in d["hours"]
        )
        out.print(f"{d['weekday']}  {cells.rstrip()}  {sum(d['hours'])}", highlight=False)
    avg_p, avg_c = found["avg_prompt_tokens"], found["avg_completion_tokens"]
    out.print(
        f"{found['requests']} requests, {found['stream_share']:.1%} streamed; average prompt "
        f"{avg_p if avg_p is not None else '-'} tokens, completion "
        f"{avg_c if avg_c is not None else '-'} tokens",
        highlight=False,
    )
    print_table(
        [
            {
                **e,
                "error_share": f"{e['error_share']:.1%}",
                "streamed": f"{e['stream_share']:.1%}",
                "avg_prompt": e["avg_prompt_tokens"],
                "avg_completion": e["avg_completion_tokens"],
            }
            for e in found["errors_by_provider"]
        ],
        [
            "provider",
            "requests",
            "errors",
            "error_share",
            "streamed",
            "avg_prompt",
            "avg_completion",
        ],
        title="by provider",
        optional=("avg_prompt", "avg_completion"),
    )


@usage_app.command("forecast")
def usage_forecast(
    ctx: typer.Context,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Only this key (name, id, id prefix or key prefix).", show_default=False
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", help="Only this user (email, id, id prefix or name).", show_default=False
        ),
    ] = None,
    history: Annotated[
        int, typer.Option("--history", help="Days of history the model learns from (28-400).")
    ] = 56,
    json: JsonOpt = False,
) -> None:
    """Spend to the end of this month (UTC) per currency, for everything or one key or user,
    with an interval and the model's back-test error against a naive extrapolation."""
    from llmgw.usage.analytics import forecast

    if not 28 <= history <= 400:
        raise UsageError(f"invalid --history {history}", hint="use 28 to 400 days")
    now = datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=history)
    rows = state(ctx).admin().usage_stats(since=start, by="day", key=key, user=user)
    found = forecast(rows, now.date())
    if json:
        emit_json({"since": start, "key": key, "user": user, "rows": found})
        return
    who = f"key {key}" if key else f"user {user}" if user else "everything"
    print_table(
        [
            {
                **f,
                "interval": f"{Decimal(f['low']):.2f} - {Decimal(f['high']):.2f}",
                "backtest": f"{f['backtest_mae']} vs naive {f['naive_backtest_mae']}"
                if f["backtest_mae"] is not None
                else "too little history",
            }
            for f in found
        ],
        ["currency", "month_to_date", "forecast", "interval", "naive_forecast", "backtest"],
        title=f"forecast to the end of {now:%Y-%m} for {who} (learnt from {history} days)",
        wrap=("backtest",),
    )


@usage_app.command("recommend")
def usage_recommend(
    ctx: typer.Context,
    since: SinceOpt = "30d",
    until: UntilOpt = None,
    json: JsonOpt = False,
) -> None:
    """Suggestions to spend less, each with its evidence and its saving over the window per
    currency: a cheaper model of similar usage an alias could move traffic to, deprecated
    versions still in use, error-heavy routes, keys idle for 30 days, answers cut at max_tokens."""
    from rich.markup import escape

    start, end = _window(since, until)
    with _db_errors():
        found = state(ctx).admin().usage_recommend(since=start, until=end)
    if json:
        emit_json({"since": start, "until": end, "rows": found})
        return
    if not found:
        typer.echo("no recommendations: nothing in this window crosses a threshold")
        return
    print_table(
        [
            {
                "kind": r["kind"].replace("_", " "),
                "saving": " + ".join(f"{v} {c}" for c, v in r["saving"].items()) or "-",
                "recommendation": escape(r["recommendation"]),  # "[aliases]" is not markup
            }
            for r in found
        ],
        ["kind", "saving", "recommendation"],
        title=f"recommendations since {start:%Y-%m-%d %H:%M} UTC" if start else "recommendations",
        wrap=("recommendation",),
    )


@usage_app.command("recent")
def usage_recent(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many requests (1-1000).")] = 20,
    json: JsonOpt = False,
) -> None:
    """Show the newest requests, newest first: time, key prefix, model, status, latency, tokens."""
    rows = state(ctx).admin().usage_recent(limit=limit)
    if json:
        emit_json(rows)
        return
    shown = [
        {
            **r,
            "at": when_text(r["at"]),
            "model": f"{r['provider']}/{r['model']}" if r["provider"] else r["model"],
            "ms": None if r["latency_ms"] is None else round(r["latency_ms"]),
            "tokens": r["total_tokens"],
        }
        for r in rows
    ]
    print_table(
        shown,
        ["at", "key_prefix", "model", "status", "ms", "tokens", "request_id"],
        title="recent requests",
        wrap=("model",),
        optional=("request_id", "tokens"),  # narrow terminals drop these
    )


def _write_export(f: IO[str], fmt: str, batches: Iterator[list[dict[str, Any]]]) -> int:
    from llmgw.usage.reports import EXPORT_COLUMNS

    n = 0
    if fmt == "csv":
        w = csv.writer(f, lineterminator="\n")
        w.writerow(EXPORT_COLUMNS)
        for batch in batches:
            w.writerows([_csv_value(_readable(r)[c]) for c in EXPORT_COLUMNS] for r in batch)
            n += len(batch)
    else:
        for batch in batches:
            f.write(
                "".join(
                    orjson.dumps(_readable(r), default=json_default).decode() + "\n" for r in batch
                )
            )
            n += len(batch)
    return n


@usage_app.command("export")
def usage_export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or jsonl.")],
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only the last 90s, 15m, 12h, 7d, 2w... (default: everything)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write to FILE (atomically) instead of stdout."),
    ] = None,
) -> None:
    """Export usage rows, oldest first, as CSV or JSON lines (streamed, never all in memory)."""
    from llmgw.usage.reports import export_batches

    _choice(fmt, _FORMATS, "--format")
    start = _since(since)
    if out is not None and out.is_dir():
        raise UsageError(
            f"cannot write {out}: it is a directory",
            hint=f"give a file name, e.g. --out {out / ('usage.' + fmt)}",
        )
    if out is not None and not out.parent.is_dir():
        raise UsageError(
            f"cannot write {out}: directory {out.parent} does not exist",
            hint="create the directory first or choose another --out",
        )
    state(ctx).local_only("usage export")
    engine = state(ctx).engine()
    if out is None:
        with _db_errors():
            _write_export(sys.stdout, fmt, export_batches(engine, since=start))
        sys.stdout.flush()
        return
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f, _db_errors():
            n = _write_export(f, fmt, export_batches(engine, since=start))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    typer.echo(f"exported {n} usage rows to {out}", err=True)


@usage_app.command("rejected")
def usage_rejected(
    ctx: typer.Context,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay", help="Insert the rejected rows again; rows refused again stay in the file."
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """List usage rows the database refused for good (kept in <spool_dir>/rejected.jsonl).

    A row is rejected when the database refuses its data (a value longer than its column, a
    constraint), not when the database is down. Fix the cause (for example `llmgw db upgrade`),
    then `--replay` inserts them again; already stored rows are skipped (same request id).
    """
    from llmgw.usage.replay import read_rejected, replay_rejected

    state(ctx).local_only("usage rejected")
    directory = state(ctx).settings.spool_dir
    stored = 0
    if replay:
        from llmgw.usage.inserts import Inserter

        inserter = Inserter(state(ctx).engine(), lambda row, why: None)
        with _db_errors():
            stored, entries = replay_rejected(directory, inserter)
    else:
        entries = read_rejected(directory)
    listed = [
        {
            "request_id": e.row.get("request_id"),
            "created_at": e.row.get("created_at"),
            "model": e.row.get("model"),
            "reason": e.reason,
        }
        for e in entries
    ]
    if json:
        emit_json({"replayed": stored, "rejected": listed} if replay else {"rejected": listed})
        return
    if replay:
        stdout().print(f"replayed {stored} row(s); {len(listed)} still rejected", highlight=False)
    print_table(
        [{**r, "created_at": str(r["created_at"] or "")[:19]} for r in listed],
        ["request_id", "created_at", "model", "reason"],
        title="rejected usage rows",
    )


@usage_app.command("rebuild-rollups")
def usage_rebuild_rollups(
    ctx: typer.Context,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; required when stdin is not a terminal.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Recompute the hourly and daily usage rollups from the raw usage rows (online: reports
    stay exact meanwhile, only slower). Hours whose raw rows retention already deleted are lost
    from the rollups: asks first."""
    import time

    from llmgw.usage.rollup import rebuild

    st = state(ctx)
    st.local_only("usage rebuild-rollups")
    confirm(
        "rebuild the usage rollups from the raw usage rows",
        "usage older than usage.retention_days (raw rows deleted) disappears from reports",
        yes=yes,
    )
    t0 = time.perf_counter()
    with _db_errors():
        folded = rebuild(st.engine())
    seconds = round(time.perf_counter() - t0, 3)
    if json:
        emit_json({"folded": folded, "seconds": seconds})
    else:
        typer.echo(f"rebuilt the usage rollups: {folded} usage ids folded in {seconds} s")
