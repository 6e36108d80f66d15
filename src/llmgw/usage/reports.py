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
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

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
from llmgw.usage.rollup import cost_units, count_columns, histogram_columns, refresh, tail
from llmgw.usage.rows import COLUMNS
from llmgw.usage.stats_sql import ALL as _ALL
from llmgw.usage.stats_sql import (
    FAILED_FROM,
    GROUPS,
    NO_CURRENCY,
    NO_ID,
    REFRESH_AT,
    GroupBy,
    Range,
    combine,
    model_label,
    money,
    plan,
    stats_columns,
)
from llmgw.usage.stats_sql import GROUP_DIMS as _GROUP_DIMS

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

_u: sa.Table = UsageRecord.__table__  # type: ignore[attr-defined]
_k: sa.Table = ApiKey.__table__  # type: ignore[attr-defined]
_usr: sa.Table = User.__table__  # type: ignore[attr-defined]

EXPORT_COLUMNS: tuple[str, ...] = COLUMNS
"""Export columns: every column of the ``usage`` table but its surrogate ``id``."""


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
    return combine((r._mapping for r in rows), by, currencies)


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
        combine(
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
                "cost": money(int(m["cost_units"] or 0)),
                "currency": None
                if not m["provider"]
                else currencies.get(m["provider"]) or f"{NO_CURRENCY}:{m['provider']}",
            }
            for m in conn.execute(stmt).mappings()
        ]
