"""Usage reports: statistics grouped by day, hour, model, provider, key, user or status (with
filters), and a streaming export.

Both run unchanged on SQLite and PostgreSQL; where the dialects differ (day buckets, exact cost
sums, the 95th percentile) each gets its own expression.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypedDict, get_args

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from llmgw.storage.tables import ApiKey, UsageRecord, User
from llmgw.usage.rows import COLUMNS

__all__ = [
    "EXPORT_COLUMNS",
    "GROUPS",
    "RECENT_COLUMNS",
    "GroupBy",
    "UsageFilter",
    "export_batches",
    "recent_requests",
    "stats_columns",
    "usage_stats",
]

GroupBy = Literal["day", "hour", "model", "provider", "key", "user", "status"]
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
    "avg_latency_ms",
    "p95_latency_ms",
)
_LABELS: dict[str, tuple[str, ...]] = {
    "day": ("day",),
    "hour": ("hour",),
    "model": ("model",),
    "provider": ("provider",),
    "key": ("key", "key_name", "key_prefix"),
    "user": ("user", "email"),
    "status": ("status",),
}
_NANO = 10_000_000_000  # cost has ten decimal places


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
    if "model" in only:
        name, _, version = only["model"].partition(":")
        provider, _, model = name.rpartition("/")
        cond.append(_u.c.model == model)
        if provider:
            cond.append(_u.c.provider == provider)
        if version:
            cond.append(_u.c.model_version == version)
    return cond


def _hour(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", _u.c.created_at), "YYYY-MM-DD HH24:00")
    return sa.func.substr(sa.cast(_u.c.created_at, sa.String), 1, 13) + ":00"


def _day(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", _u.c.created_at), "YYYY-MM-DD")
    # SQLite keeps naive UTC text 'YYYY-MM-DD HH:MM:SS...'; the first ten characters are the day.
    return sa.func.substr(sa.cast(_u.c.created_at, sa.String), 1, 10)


def _group_columns(by: GroupBy, dialect: str) -> list[ColumnElement[Any]]:
    if by == "day":
        return [_day(dialect).label("g_day")]
    if by == "hour":
        return [_hour(dialect).label("g_hour")]
    if by == "status":
        return [_u.c.status.label("g_status")]
    if by == "model":
        return [_u.c.provider.label("g_provider"), _u.c.model.label("g_model")]
    if by == "provider":
        return [_u.c.provider.label("g_provider")]
    if by == "key":
        return [
            _u.c.key_id.label("g_key"),
            _k.c.name.label("g_name"),
            _k.c.prefix.label("g_prefix"),
        ]
    return [_u.c.user_id.label("g_user"), _usr.c.email.label("g_email")]


def _labels(by: GroupBy, m: Any) -> dict[str, Any]:
    if by == "day":
        return {"day": m["g_day"]}
    if by == "hour":
        return {"hour": m["g_hour"]}
    if by == "status":
        return {"status": int(m["g_status"])}
    if by == "model":
        model = m["g_model"] or "-"
        return {"model": f"{m['g_provider']}/{model}" if m["g_provider"] else model}
    if by == "provider":
        return {"provider": m["g_provider"]}
    if by == "key":
        key = str(m["g_key"]) if m["g_key"] is not None else None
        return {"key": key, "key_name": m["g_name"], "key_prefix": m["g_prefix"]}
    return {"user": str(m["g_user"]) if m["g_user"] is not None else None, "email": m["g_email"]}


def _cost_sum(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.coalesce(sa.func.sum(_u.c.cost), 0)
    # SQLite stores cost as text: sum whole 1e-10 units as integers, which is exact.
    units = sa.cast(sa.func.round(sa.cast(_u.c.cost, sa.Float) * _NANO), sa.Integer)
    return sa.func.coalesce(sa.func.sum(units), 0)


def usage_stats(
    engine: Engine,
    *,
    since: datetime | None,
    until: datetime | None = None,
    by: GroupBy = "day",
    only: UsageFilter | None = None,
) -> list[dict[str, Any]]:
    """Requests, errors, tokens, cost and latency per group over ``[since, until)``, counting
    only the rows that match ``only``."""
    if by not in GROUPS:
        raise ValueError(f"unknown grouping {by!r}")
    dialect = engine.dialect.name
    groups = _group_columns(by, dialect)
    cols: list[ColumnElement[Any]] = [
        *groups,
        sa.func.count().label("requests"),
        sa.func.coalesce(sa.func.sum(sa.case((_u.c.status >= 400, 1), else_=0)), 0).label("errors"),
        sa.func.coalesce(sa.func.sum(_u.c.prompt_tokens), 0).label("prompt_tokens"),
        sa.func.coalesce(sa.func.sum(_u.c.completion_tokens), 0).label("completion_tokens"),
        sa.func.coalesce(sa.func.sum(_u.c.total_tokens), 0).label("total_tokens"),
        _cost_sum(dialect).label("cost"),
        sa.func.avg(_u.c.latency_ms).label("avg_latency_ms"),
    ]
    if dialect == "postgresql":
        cols.append(sa.func.percentile_disc(0.95).within_group(_u.c.latency_ms).label("p95"))
    src: sa.FromClause = _u
    if by == "key":
        src = _u.outerjoin(_k, _k.c.id == _u.c.key_id)
    elif by == "user":
        src = _u.outerjoin(_usr, _usr.c.id == _u.c.user_id)
    where = _window(since, until, only)
    stmt = sa.select(*cols).select_from(src).where(*where).group_by(*groups)
    in_time = by in ("day", "hour")
    stmt = stmt.order_by(groups[0]) if in_time else stmt.order_by(sa.desc("requests"))
    out: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for m in conn.execute(stmt).mappings():
            cost = Decimal(m["cost"] or 0)
            if dialect != "postgresql":
                cost = Decimal(int(m["cost"] or 0)).scaleb(-10)
            p95 = m["p95"] if dialect == "postgresql" else _p95_sqlite(conn, by, m, where)
            out.append(
                {
                    **_labels(by, m),
                    "requests": int(m["requests"]),
                    "errors": int(m["errors"]),
                    "prompt_tokens": int(m["prompt_tokens"]),
                    "completion_tokens": int(m["completion_tokens"]),
                    "total_tokens": int(m["total_tokens"]),
                    "cost": cost.quantize(Decimal(1).scaleb(-10)),
                    "avg_latency_ms": _round(m["avg_latency_ms"]),
                    "p95_latency_ms": _round(p95),
                }
            )
    if not in_time:  # ties in request count: stable, readable order
        out.sort(key=lambda r: (-r["requests"], str(r[_LABELS[by][0]] or "")))
    return out


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 2)


def _p95_sqlite(
    conn: sa.Connection, by: GroupBy, m: Any, where: list[ColumnElement[bool]]
) -> float | None:
    """Nearest-rank 95th percentile of one group (SQLite has no percentile function)."""
    n = int(m["requests"])
    if n == 0:
        return None
    if by == "day":
        cond = [_day("sqlite") == m["g_day"]]
    elif by == "hour":
        cond = [_hour("sqlite") == m["g_hour"]]
    elif by == "status":
        cond = [_u.c.status == m["g_status"]]
    elif by == "model":
        cond = [
            _u.c.provider.is_not_distinct_from(m["g_provider"]),
            _u.c.model.is_not_distinct_from(m["g_model"]),
        ]
    elif by == "provider":
        cond = [_u.c.provider.is_not_distinct_from(m["g_provider"])]
    elif by == "key":
        cond = [_u.c.key_id.is_not_distinct_from(m["g_key"])]
    else:
        cond = [_u.c.user_id.is_not_distinct_from(m["g_user"])]
    offset = max(math.ceil(0.95 * n) - 1, 0)
    stmt = (
        sa.select(_u.c.latency_ms)
        .where(*where, *cond)
        .order_by(_u.c.latency_ms)
        .limit(1)
        .offset(offset)
    )
    return conn.execute(stmt).scalar()


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
