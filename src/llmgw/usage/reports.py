"""Usage reports: statistics grouped by day, hour, model (``provider/model:version``), version,
provider, key, user or status (with filters), and a streaming export.

Both run unchanged on SQLite and PostgreSQL; where the dialects differ (day buckets, exact cost
sums) each gets its own expression. Statistics read the rollups of ``llmgw.usage.rollup`` for
whole hours and days, and the raw rows for the window's edges and the rows not folded in yet:
exact, in one statement, in tens of milliseconds over a million rows.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypedDict, get_args

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from llmgw.storage.tables import (
    LATENCY_BUCKETS,
    ApiKey,
    UsageRecord,
    User,
    usage_daily,
    usage_hourly,
    usage_hourly_models,
    usage_rollup_state,
)
from llmgw.usage.rollup import (
    NO_ID,
    REFRESH_AT,
    cost_units,
    count_columns,
    histogram_columns,
    p95,
    refresh,
    tail,
)
from llmgw.usage.rows import COLUMNS

__all__ = [
    "EXPORT_COLUMNS",
    "GROUPS",
    "RECENT_COLUMNS",
    "NO_CURRENCY",
    "GroupBy",
    "UsageFilter",
    "export_batches",
    "model_label",
    "plan",
    "recent_requests",
    "stats_columns",
    "usage_by_day_and_model",
    "usage_stats",
    "usage_stats_many",
]

FAILED_FROM = 400
"""A request with this status or higher failed (``UsageFilter.failed``)."""
GroupBy = Literal["day", "hour", "model", "version", "provider", "key", "user", "status"]
GROUPS: tuple[str, ...] = get_args(GroupBy)

_u: sa.Table = UsageRecord.__table__  # type: ignore[attr-defined]
_k: sa.Table = ApiKey.__table__  # type: ignore[attr-defined]
_usr: sa.Table = User.__table__  # type: ignore[attr-defined]

EXPORT_COLUMNS: tuple[str, ...] = COLUMNS
"""Export columns: every column of the ``usage`` table but its surrogate ``id``."""
_METRICS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "currency",
    "costs",
    "avg_latency_ms",
    "p95_latency_ms",
)
_LABELS: dict[str, tuple[str, ...]] = {
    "day": ("day",),
    "hour": ("hour",),
    "model": ("model",),
    "version": ("version",),
    "provider": ("provider",),
    "key": ("key", "key_name", "key_prefix"),
    "user": ("user", "email"),
    "status": ("status",),
}


def stats_columns(by: GroupBy) -> tuple[str, ...]:
    """The columns of a ``usage_stats`` row for grouping ``by``, in display order."""
    return (*_LABELS[by], *_METRICS)


class UsageFilter(TypedDict, total=False):
    """Which rows ``usage_stats`` counts; every field given must match."""

    key_id: uuid.UUID
    user_id: uuid.UUID
    provider: str
    model: str
    """``model`` or ``provider/model``; a ``:version`` suffix also matches the version."""
    status: int
    failed: bool
    """Only failed requests (status 400 and up) when true."""


def _window(
    since: datetime | None, until: datetime | None, only: UsageFilter | None = None
) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    if since is not None:
        cond.append(_u.c.created_at >= since)
    if until is not None:
        cond.append(_u.c.created_at < until)
    only = only or {}
    if "key_id" in only:
        cond.append(_u.c.key_id == only["key_id"])
    if "user_id" in only:
        cond.append(_u.c.user_id == only["user_id"])
    if "provider" in only:
        cond.append(_u.c.provider == only["provider"])
    if "status" in only:
        cond.append(_u.c.status == only["status"])
    if only.get("failed"):
        cond.append(_u.c.status >= FAILED_FROM)
    if "model" in only:
        name, _, version = only["model"].partition(":")
        provider, _, model = name.rpartition("/")
        cond.append(_u.c.model == model)
        if provider:
            cond.append(_u.c.provider == provider)
        if version:
            cond.append(_u.c.model_version == version)
    return cond


def _hour(dialect: str, created: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
    created = _u.c.created_at if created is None else created
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", created), "YYYY-MM-DD HH24:00")
    return sa.func.substr(sa.cast(created, sa.String), 1, 13) + ":00"


def _day(dialect: str, created: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
    created = _u.c.created_at if created is None else created
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", created), "YYYY-MM-DD")
    # SQLite keeps naive UTC text 'YYYY-MM-DD HH:MM:SS...'; the first ten characters are the day.
    return sa.func.substr(sa.cast(created, sa.String), 1, 10)


_ALL = "*"
"""The internal grouping by every dimension (``usage_stats_many``)."""
_GROUP_DIMS: dict[str, tuple[str, ...]] = {
    "model": ("provider", "model", "model_version"),
    "version": ("model_version",),
    "provider": ("provider",),
    "key": ("key_id",),
    "user": ("user_id",),
    "status": ("status",),
    _ALL: ("provider", "model", "model_version", "key_id", "user_id", "status"),
}


def _source_groups(
    by: str,
    dialect: str,
    src: sa.Table | sa.FromClause,
    time: ColumnElement[Any],
    split: bool = False,
) -> list[ColumnElement[Any]]:
    """The grouping columns of one source (a rollup, with NOT NULL dimensions, or ``usage``);
    ``split`` adds the provider where the grouping lacks it (costs per currency)."""
    dims = _GROUP_DIMS.get(by, ())
    if split and "provider" not in dims:
        dims = (*dims, "provider")
    out: list[ColumnElement[Any]] = []
    if by == "day":
        out.append(_day(dialect, time).label("g_day"))
    elif by == "hour":
        out.append(_hour(dialect, time).label("g_hour"))
    for d in dims:
        col: ColumnElement[Any] = src.c[d]
        if src is _u and d != "status":
            col = sa.func.coalesce(col, NO_ID if d in ("key_id", "user_id") else "")
        out.append(col.label(f"g_{d}"))
    return out


def _filters(src: sa.Table, only: UsageFilter) -> list[ColumnElement[bool]]:
    """``only`` on a rollup table (whose dimensions are never NULL)."""
    cond: list[ColumnElement[bool]] = []
    if "key_id" in only:
        cond.append(src.c.key_id == only["key_id"])
    if "user_id" in only:
        cond.append(src.c.user_id == only["user_id"])
    if "provider" in only:
        cond.append(src.c.provider == only["provider"])
    if "status" in only:
        cond.append(src.c.status == only["status"])
    if only.get("failed"):
        cond.append(src.c.status >= FAILED_FROM)
    if "model" in only:
        name, _, version = only["model"].partition(":")
        provider, _, model = name.rpartition("/")
        cond.append(src.c.model == model)
        if provider:
            cond.append(src.c.provider == provider)
        if version:
            cond.append(src.c.model_version == version)
    return cond


def _floor(t: datetime, span: str) -> datetime:
    t = t.astimezone(UTC)
    t = t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0) if span == "day" else t


def _ceil(t: datetime, span: str) -> datetime:
    f = _floor(t, span)
    return f if f == t else f + (timedelta(days=1) if span == "day" else timedelta(hours=1))


Range = tuple[datetime | None, datetime | None]


def plan(
    since: datetime | None, until: datetime | None, by: str
) -> tuple[Range | None, list[Range], list[Range]]:
    """How ``[since, until)`` splits: (days from ``usage_daily``, ranges from ``usage_hourly[_models]``,
    ranges read from ``usage`` itself). Whole buckets come from the rollups; the edges of the
    window that cut through an hour come from the raw rows. ``None`` is an open end."""
    spans = ("hour",) if by == "hour" else ("day", "hour")
    lo = _ceil(since, spans[0]) if since is not None else None
    hi = _floor(until, spans[0]) if until is not None else None
    if lo is not None and hi is not None and lo >= hi:  # no whole bucket of the coarser span
        if len(spans) == 1:
            return None, [], [(since, until)]
        assert since is not None and until is not None  # lo and hi come from them
        first, last = _ceil(since, "hour"), _floor(until, "hour")
        if first >= last:
            return None, [], [(since, until)]
        return None, [(first, last)], _edges(since, first, last, until)
    coarse: Range = (lo, hi)
    hours: list[Range] = []
    raw: list[Range] = []
    if len(spans) == 1:
        return None, [coarse], _edges(since, lo, hi, until)
    # by day and the groupings without time: days, then the hours around them, then raw edges
    h_lo: datetime | None = _ceil(since, "hour") if since is not None else None
    h_hi: datetime | None = _floor(until, "hour") if until is not None else None
    if lo is not None and h_lo is not None and h_lo < lo:
        hours.append((h_lo, lo))
    if hi is not None and h_hi is not None and hi < h_hi:
        hours.append((hi, h_hi))
    raw = _edges(since, h_lo, h_hi, until)
    return coarse, hours, raw


def _edges(
    since: datetime | None, lo: datetime | None, hi: datetime | None, until: datetime | None
) -> list[Range]:
    out: list[Range] = []
    if since is not None and lo is not None and since < lo:
        out.append((since, lo))
    if until is not None and hi is not None and hi < until:
        out.append((hi, until))
    return out


def _unindexed(col: sa.Column[Any], dialect: str) -> ColumnElement[Any]:
    """``col`` as SQLite's planner may not range over with an index (``+usage.col``: the same
    value); the column itself elsewhere."""
    if dialect != "sqlite":
        return col
    return sa.literal_column(f"+{col.table.name}.{col.name}", type_=col.type)


def _in(col: ColumnElement[Any], r: Range) -> ColumnElement[bool]:
    cond: list[ColumnElement[bool]] = []
    if r[0] is not None:
        cond.append(col >= r[0])
    if r[1] is not None:
        cond.append(col < r[1])
    return sa.and_(sa.true(), *cond)


@functools.cache
def _metrics(src: sa.Table) -> list[ColumnElement[Any]]:
    """A rollup's sums for one group."""
    return [
        sa.func.sum(src.c.requests).label("requests"),
        sa.func.sum(sa.case((src.c.status >= 400, src.c.requests), else_=0)).label("errors"),
        sa.func.sum(src.c.prompt_tokens).label("prompt_tokens"),
        sa.func.sum(src.c.completion_tokens).label("completion_tokens"),
        sa.func.sum(src.c.total_tokens).label("total_tokens"),
        sa.func.sum(src.c.cost_units).label("cost_units"),
        sa.func.sum(src.c.latency_sum).label("latency_sum"),
        sa.func.min(src.c.latency_min).label("latency_min"),
        sa.func.max(src.c.latency_max).label("latency_max"),
        *(sa.func.sum(src.c[f"lat_{k}"]).label(f"lat_{k}") for k in range(LATENCY_BUCKETS)),
        sa.func.sum(src.c.streamed).label("streamed"),
        sa.func.sum(src.c.truncated).label("truncated"),
    ]


@functools.cache
def _raw_metrics(dialect: str) -> list[ColumnElement[Any]]:
    """The same sums straight from ``usage`` rows."""
    return [
        sa.func.count().label("requests"),
        sa.func.sum(sa.case((_u.c.status >= 400, 1), else_=0)).label("errors"),
        sa.func.sum(_u.c.prompt_tokens).label("prompt_tokens"),
        sa.func.sum(_u.c.completion_tokens).label("completion_tokens"),
        sa.func.sum(_u.c.total_tokens).label("total_tokens"),
        sa.func.sum(cost_units(dialect)).label("cost_units"),
        sa.func.sum(_u.c.latency_ms).label("latency_sum"),
        sa.func.min(_u.c.latency_ms).label("latency_min"),
        sa.func.max(_u.c.latency_ms).label("latency_max"),
        *histogram_columns(_u.c.latency_ms),
        *count_columns(),
    ]


def _statement(
    by: str,
    dialect: str,
    since: datetime | None,
    until: datetime | None,
    only: UsageFilter,
    last_id: int | None = None,
    split: bool = False,
) -> sa.Select[Any]:
    """One statement for the whole answer. With ``last_id`` (read just before) the planner
    sees the tail's size (an index range on ``id``); the caller checks it did not move while
    the statement ran. Without it, a subquery reads it in the statement's own snapshot."""
    days, hours, raw = plan(since, until, by)
    watermark: Any = last_id
    if last_id is None:
        watermark = (
            sa.select(usage_rollup_state.c.last_id)
            .where(usage_rollup_state.c.id == 1)
            .scalar_subquery()
        )
    parts: list[sa.Select[Any]] = []
    who = by in ("key", "user", _ALL) or "key_id" in only or "user_id" in only
    hourly = usage_hourly if who else usage_hourly_models  # 20 rows an hour, not 200
    for table, ranges in ((usage_daily, [days] if days else []), (hourly, hours)):
        if not ranges:
            continue
        groups = _source_groups(by, dialect, table, table.c.bucket, split)
        parts.append(
            sa.select(*groups, *_metrics(table))
            .where(sa.or_(*(_in(table.c.bucket, r) for r in ranges)), *_filters(table, only))
            .group_by(*groups)
        )
    # raw rows, in two parts that never share a row: the window's edges as far as the rollups
    # hold them (an index range on created_at, under an hour each), and the rows the rollups do
    # not hold yet (an index range on id). Each part names only its own index: SQLite, given
    # both, ranged over created_at for the whole window and read every raw row in it.
    groups = _source_groups(by, dialect, _u, _u.c.created_at, split)
    if raw:
        parts.append(
            sa.select(*groups, *_raw_metrics(dialect))
            .where(
                sa.or_(*(_in(_u.c.created_at, r) for r in raw)),
                _unindexed(_u.c.id, dialect) <= watermark,
                *_window(None, None, only),
            )
            .group_by(*groups)
        )
    parts.append(
        sa.select(*groups, *_raw_metrics(dialect))
        .where(
            _u.c.id > watermark,
            _in(_unindexed(_u.c.created_at, dialect), (since, until)),
            *_window(None, None, only),
        )
        .group_by(*groups)
    )
    union = sa.union_all(*parts).subquery("parts")
    keys = [union.c[c.name] for c in groups]
    agg = [
        sa.func.sum(union.c[name]).label(name)
        for name in (
            "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens",
            "cost_units", "latency_sum", *(f"lat_{k}" for k in range(LATENCY_BUCKETS)),
            "streamed", "truncated",
        )
    ]  # fmt: skip
    agg += [
        sa.func.min(union.c.latency_min).label("latency_min"),
        sa.func.max(union.c.latency_max).label("latency_max"),
    ]
    stmt = sa.select(*keys, *agg).group_by(*keys)
    if by in ("key", "user", _ALL):
        inner = stmt.subquery("totals")
        names: list[ColumnElement[Any]] = []
        src: sa.FromClause = inner
        if by in ("key", _ALL):
            names += [_k.c.name.label("g_name"), _k.c.prefix.label("g_prefix")]
            src = src.outerjoin(_k, _k.c.id == inner.c.g_key_id)
        if by in ("user", _ALL):
            names += [_usr.c.email.label("g_email")]
            src = src.outerjoin(_usr, _usr.c.id == inner.c.g_user_id)
        stmt = sa.select(inner, *names).select_from(src)
    return stmt


def _none(value: Any) -> Any:
    return None if value in ("", NO_ID) else value


def _labels(by: GroupBy, m: Any) -> dict[str, Any]:
    if by == "day":
        return {"day": m["g_day"]}
    if by == "hour":
        return {"hour": m["g_hour"]}
    if by == "status":
        return {"status": int(m["g_status"])}
    if by == "model":
        return {"model": model_label(m["g_provider"], m["g_model"], m["g_model_version"])}
    if by == "version":
        return {"version": _none(m["g_model_version"])}
    if by == "provider":
        return {"provider": _none(m["g_provider"])}
    if by == "key":
        key = _none(_uuid(m["g_key_id"]))
        return {
            "key": str(key) if key is not None else None,
            "key_name": m["g_name"],
            "key_prefix": m["g_prefix"],
        }
    user = _none(_uuid(m["g_user_id"]))
    return {"user": str(user) if user is not None else None, "email": m["g_email"]}


def _uuid(value: Any) -> Any:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


def model_label(provider: str | None, model: str | None, version: str | None) -> str:
    """``provider/model:version`` as a request names it (``-`` for a request never routed)."""
    name = _none(model) or "-"
    if _none(provider):
        name = f"{provider}/{name}"
    return f"{name}:{version}" if _none(version) else name


NO_CURRENCY = "XXX"
"""ISO 4217's code for "no currency": the cost of a provider missing from the configuration is
under ``XXX:<provider>``, one entry per such provider (their currencies may differ)."""

_SUMS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "latency_sum",
    "streamed",
    "truncated",
)


def usage_stats(
    engine: Engine,
    *,
    since: datetime | None,
    until: datetime | None = None,
    by: GroupBy = "day",
    only: UsageFilter | None = None,
    refresh_at: int = REFRESH_AT,
    currencies: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Requests, errors, tokens, cost and latency per group over ``[since, until)``, counting
    only the rows that match ``only``.

    Exact: whole hours and days come from the rollups (``llmgw.usage.rollup``), the window's
    edges and the rows not folded in yet from ``usage``, in one statement. When more than
    ``refresh_at`` rows wait, they are folded in first. ``p95_latency_ms`` is estimated from
    the latency histogram (see ``rollup.p95``); everything else is exact. ``streamed`` and
    ``truncated`` count the requests streamed and those that stopped at ``max_tokens``.

    With ``currencies`` (provider -> ISO 4217 code) each row also has ``costs``, its cost per
    currency (a provider missing from the mapping: ``XXX:<provider>``), and ``currency``; ``cost``
    is then the row's cost only when it is in one currency, ``None`` when it mixes several:
    costs are never added across currencies.
    """
    if by not in GROUPS:
        raise ValueError(f"unknown grouping {by!r}")
    rows = _read(engine, by, since, until, only or {}, refresh_at, currencies is not None)
    return _combine((r._mapping for r in rows), by, currencies)


def usage_stats_many(
    engine: Engine,
    *,
    since: datetime | None,
    until: datetime | None = None,
    groups: Sequence[tuple[GroupBy, UsageFilter]],
    refresh_at: int = REFRESH_AT,
    currencies: Mapping[str, str] | None = None,
) -> list[list[dict[str, Any]]]:
    """``usage_stats`` for several groupings of one window (model, version, provider, key, user
    or status; the only filter: ``failed``) from one statement: the window's rows grouped by
    every dimension at once (a few hundred groups from the rollups), then added up per grouping
    here. The same numbers as one ``usage_stats`` call per grouping (the latency sum, a float,
    may differ in its last bits before rounding)."""
    for by, only in groups:
        if by not in _GROUP_DIMS or set(only) - {"failed"}:
            raise ValueError(f"not a grouping of usage_stats_many: {by!r} {only!r}")
    rows = [
        r._mapping
        for r in _read(engine, _ALL, since, until, {}, refresh_at, currencies is not None)
    ]
    return [
        _combine(
            (m for m in rows if not only.get("failed") or int(m["g_status"]) >= FAILED_FROM),
            by,
            currencies,
        )
        for by, only in groups
    ]


def _read(
    engine: Engine,
    by: str,
    since: datetime | None,
    until: datetime | None,
    only: UsageFilter,
    refresh_at: int,
    split: bool,
) -> Sequence[sa.Row[Any]]:
    """The statement's rows, consistent with one state of the rollups."""
    dialect = engine.dialect.name
    with engine.connect() as conn:
        last, newest = tail(conn)
        if newest - last > refresh_at:
            conn.rollback()
            refresh(engine)
            last, _ = tail(conn)
        if dialect == "postgresql":  # its compile time, not the query, dominates these queries
            conn.exec_driver_sql("SET LOCAL jit = off")
        for _attempt in range(3):
            rows = conn.execute(_statement(by, dialect, since, until, only, last, split)).all()
            now_last, _ = tail(conn)
            if now_last == last:  # no refresh committed meanwhile: the rollups as of ``last``
                return rows
            last = now_last
        # refreshes keep landing: read the watermark inside the statement itself
        return conn.execute(_statement(by, dialect, since, until, only, None, split)).all()


def _combine(
    rows: Iterable[Mapping[Any, Any]], by: GroupBy, currencies: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    """The statement's rows added up per group of ``by``: ``usage_stats``'s answer."""
    split = currencies is not None
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for m in rows:
        requests = int(m["requests"] or 0)
        if requests == 0:
            continue
        labels = _labels(by, m)
        g = groups.get(key := tuple(labels.values()))
        if g is None:
            g = groups[key] = {
                "labels": labels,
                **dict.fromkeys(_SUMS, 0),
                "hist": [0] * LATENCY_BUCKETS,
                "min": None,
                "max": None,
                "units": {},
            }
        for name in _SUMS:
            g[name] += m[name] or 0
        g["hist"] = [a + int(m[f"lat_{k}"] or 0) for k, a in enumerate(g["hist"])]
        lo, hi = m["latency_min"], m["latency_max"]
        g["min"] = lo if g["min"] is None or (lo is not None and lo < g["min"]) else g["min"]
        g["max"] = hi if g["max"] is None or (hi is not None and hi > g["max"]) else g["max"]
        units = int(m["cost_units"] or 0)
        if currencies is None:
            cur = ""
        else:
            provider = _none(m["g_provider"])
            cur = (
                ""  # never routed: no cost, no currency
                if provider is None
                else currencies.get(provider) or f"{NO_CURRENCY}:{provider}"
            )
        g["units"][cur] = g["units"].get(cur, 0) + units
    out: list[dict[str, Any]] = []
    for g in groups.values():
        requests = int(g["requests"])
        per = {c: _money(u) for c, u in sorted(g["units"].items()) if c and u}
        row = {
            **g["labels"],
            "requests": requests,
            "errors": int(g["errors"]),
            "prompt_tokens": int(g["prompt_tokens"]),
            "completion_tokens": int(g["completion_tokens"]),
            "total_tokens": int(g["total_tokens"]),
            "cost": _money(sum(g["units"].values())) if len(per) <= 1 else None,
            "avg_latency_ms": _round(float(g["latency_sum"]) / requests),
            "p95_latency_ms": _round(p95(g["hist"], g["min"], g["max"])),
            "streamed": int(g["streamed"]),
            "truncated": int(g["truncated"]),
        }
        if split:  # the one currency of the row's cost (of its traffic when it cost nothing)
            named = sorted(c for c in g["units"] if c)
            only_one = list(per) if per else named
            row["currency"] = only_one[0] if len(only_one) == 1 else None
            row["costs"] = per
        out.append(row)
    if by in ("day", "hour"):
        out.sort(key=lambda r: r[by])
    else:  # most requests first; ties in a stable, readable order
        out.sort(key=lambda r: (-r["requests"], str(r[_LABELS[by][0]] or "")))
    return out


def _money(units: int) -> Decimal:
    return Decimal(int(units)).scaleb(-10).quantize(_TEN)


_TEN = Decimal(1).scaleb(-10)


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 2)


def export_batches(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_size: int = 1000,
) -> Iterator[list[dict[str, Any]]]:
    """Usage rows oldest first, ``batch_size`` at a time (a server-side cursor on PostgreSQL)."""
    stmt = (
        sa.select(*(_u.c[c] for c in EXPORT_COLUMNS))
        .where(*_window(since, until))
        .order_by(_u.c.created_at, _u.c.id)
    )
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=batch_size).execute(stmt)
        for part in result.mappings().partitions(batch_size):
            # plain str keys ("metadata" comes back as a quoted_name, which orjson refuses)
            yield [{c: r[c] for c in EXPORT_COLUMNS} for r in part]


RECENT_COLUMNS: tuple[str, ...] = (
    "created_at",
    "request_id",
    "key_id",
    "user_id",
    "token_id",
    "endpoint",
    "provider",
    "model",
    "model_version",
    "stream",
    "status",
    "error_type",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
)
"""The usage columns of a recent request (plus ``key_prefix`` from its key)."""


def recent_requests(engine: Engine, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` usage rows, newest first, each with its key's prefix."""
    stmt = (
        sa.select(*(_u.c[c] for c in RECENT_COLUMNS), _k.c.prefix.label("key_prefix"))
        .select_from(_u.outerjoin(_k, _k.c.id == _u.c.key_id))
        .order_by(_u.c.created_at.desc(), _u.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def usage_by_day_and_model(
    engine: Engine,
    *,
    since: datetime | None,
    only: UsageFilter | None = None,
    currencies: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Requests, errors, tokens and cost per (UTC day, provider/model:version), newest day
    first, the busiest model first within a day (the self-service usage page). Reads the raw
    rows (a user's rows through ``ix_usage_user_created``), exact to the last row. Each row's
    ``currency`` is its provider's in ``currencies`` (``XXX:<provider>`` when missing, ``None``
    for a request never routed)."""
    currencies = currencies or {}
    dialect = engine.dialect.name
    day = _day(dialect).label("g_day")
    dims = (_u.c.provider, _u.c.model, _u.c.model_version)
    stmt = (
        sa.select(
            day,
            *dims,
            sa.func.count().label("requests"),
            sa.func.sum(sa.case((_u.c.status >= 400, 1), else_=0)).label("errors"),
            sa.func.sum(_u.c.total_tokens).label("total_tokens"),
            sa.func.sum(cost_units(dialect)).label("cost_units"),
        )
        .where(*_window(since, None, only))
        .group_by(day, *dims)
        .order_by(day.desc(), sa.desc("requests"), *dims)
    )
    with engine.connect() as conn:
        return [
            {
                "day": m["g_day"],
                "model": model_label(m["provider"], m["model"], m["model_version"]),
                "requests": int(m["requests"]),
                "errors": int(m["errors"] or 0),
                "total_tokens": int(m["total_tokens"] or 0),
                "cost": Decimal(int(m["cost_units"] or 0)).scaleb(-10).quantize(_TEN),
                "currency": None
                if not m["provider"]
                else currencies.get(m["provider"]) or f"{NO_CURRENCY}:{m['provider']}",
            }
            for m in conn.execute(stmt).mappings()
        ]
