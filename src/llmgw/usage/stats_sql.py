"""``usage_stats``'s statement in plain SQL, run through the DB-API driver (``sqlite3``,
``psycopg``) without SQLAlchemy or the SQLModel tables, and what turns its rows into the answer.

``llmgw usage stats`` over 10M rows must answer in 1 s on PostgreSQL (issue 13); importing
SQLAlchemy and the tables was most of that second, the query a tenth of it. ``llmgw.cli.fast``
calls ``read_stats`` for the unfiltered groupings; ``llmgw.usage.reports`` builds the same
statement with SQLAlchemy for every other caller and shares the rest of this module (the split
of the window, adding up the rows, the labels, the percentile): one answer whichever path ran.
``tests/unit/test_usage_stats_sql.py`` pins the two statements to the same rows on both
databases.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args

__all__ = [
    "ALL",
    "BOUNDS",
    "FAILED_FROM",
    "GROUPS",
    "GROUP_DIMS",
    "LABELS",
    "LATENCY_BUCKETS",
    "NO_CURRENCY",
    "NO_ID",
    "REFRESH_AT",
    "GroupBy",
    "Range",
    "combine",
    "model_label",
    "money",
    "p95",
    "plan",
    "read_stats",
    "stats_columns",
    "statement",
]

LATENCY_BUCKETS = 32
"""Latency histogram buckets of the usage rollups: ``lat_0`` counts latencies under 1 ms,
``lat_k`` those in [1.5^(k-1), 1.5^k) ms, ``lat_31`` those from 1.5^30 ms (3.2 minutes) up."""
BOUNDS: tuple[float, ...] = tuple(1.5**k for k in range(LATENCY_BUCKETS - 1))
"""Upper bounds (exclusive, ms) of the histogram buckets 0..30; bucket 31 is open."""
NO_ID = uuid.UUID(int=0)
"""A usage row's NULL key or user, in the rollups (their dimensions are NOT NULL)."""
REFRESH_AT = 20_000
"""A report folds the tail into the rollups first when it is longer than this many rows."""
FAILED_FROM = 400
"""A request with this status or higher failed (``UsageFilter.failed``)."""
NO_CURRENCY = "XXX"
"""ISO 4217's code for "no currency": the cost of a provider missing from the configuration is
under ``XXX:<provider>``, one entry per such provider (their currencies may differ)."""

GroupBy = Literal["day", "hour", "model", "version", "provider", "key", "user", "status"]
GROUPS: tuple[str, ...] = get_args(GroupBy)

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
LABELS: dict[str, tuple[str, ...]] = {
    "day": ("day",),
    "hour": ("hour",),
    "model": ("model",),
    "version": ("version",),
    "provider": ("provider",),
    "key": ("key", "key_name", "key_prefix"),
    "user": ("user", "email"),
    "status": ("status",),
}
ALL = "*"
"""The internal grouping by every dimension (``usage_stats_many``)."""
GROUP_DIMS: dict[str, tuple[str, ...]] = {
    "model": ("provider", "model", "model_version"),
    "version": ("model_version",),
    "provider": ("provider",),
    "key": ("key_id",),
    "user": ("user_id",),
    "status": ("status",),
    ALL: ("provider", "model", "model_version", "key_id", "user_id", "status"),
}


def stats_columns(by: GroupBy) -> tuple[str, ...]:
    """The columns of a ``usage_stats`` row for grouping ``by``, in display order."""
    return (*LABELS[by], *_METRICS)


def p95(hist: list[int], lo: float | None, hi: float | None) -> float | None:
    """The 95th percentile (nearest rank) estimated from a latency histogram: linear inside
    the bucket that holds it, clamped to the group's smallest and largest latency (so a
    group of one, or a rank at the top, is exact)."""
    n = sum(hist)
    if n == 0 or lo is None or hi is None:
        return None
    rank = -(-95 * n // 100)  # ceil(0.95 n)
    below = 0
    for k, count in enumerate(hist):
        if below + count >= rank:
            start = BOUNDS[k - 1] if k > 0 else 0.0
            end = BOUNDS[k] if k < len(BOUNDS) else hi
            value = start + (end - start) * (rank - below) / count
            return min(max(value, lo), hi)
        below += count
    return hi  # pragma: no cover - the ranks add up to n


# -- the window: whole days and hours from the rollups, the edges from the raw rows ----------

Range = tuple[datetime | None, datetime | None]


def _floor(t: datetime, span: str) -> datetime:
    t = t.astimezone(UTC)
    t = t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0) if span == "day" else t


def _ceil(t: datetime, span: str) -> datetime:
    f = _floor(t, span)
    return f if f == t else f + (timedelta(days=1) if span == "day" else timedelta(hours=1))


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


# -- the statement in plain SQL ------------------------------------------------------------

_ROLLUP_SUMS = (
    "prompt_tokens", "completion_tokens", "total_tokens", "cost_units", "latency_sum",
)  # fmt: skip
_OUTER_SUMS = (
    "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost_units",
    "latency_sum", *(f"lat_{k}" for k in range(LATENCY_BUCKETS)), "streamed", "truncated",
)  # fmt: skip


class _Params:
    """Bound values of one statement, named in the driver's style (``:p0`` for ``sqlite3``,
    ``%(p0)s::type`` for ``psycopg``, typed as SQLAlchemy types them)."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any, pg_type: str) -> str:
        name = f"p{len(self.values)}"
        if isinstance(value, datetime):
            value = value.astimezone(UTC)
            if not self.pg:  # SQLAlchemy's SQLite DATETIME text: naive UTC, microseconds
                value = value.strftime("%Y-%m-%d %H:%M:%S.%f")
        elif isinstance(value, uuid.UUID) and not self.pg:
            value = value.hex  # SQLAlchemy's Uuid on SQLite: CHAR(32)
        self.values[name] = value
        return f"%({name})s::{pg_type}" if self.pg else f":{name}"


def _time_label(by: str, pg: bool, time: str) -> str:
    if pg:
        fmt = "YYYY-MM-DD" if by == "day" else "YYYY-MM-DD HH24:00"
        return f"to_char(timezone('UTC', {time}), '{fmt}')"
    if by == "day":
        return f"substr(CAST({time} AS VARCHAR), 1, 10)"
    return f"substr(CAST({time} AS VARCHAR), 1, 13) || ':00'"


def _groups(by: str, pg: bool, table: str, p: _Params, split: bool) -> list[tuple[str, str]]:
    """(expression, label) of the grouping columns of one source (``usage`` or a rollup)."""
    dims = GROUP_DIMS.get(by, ())
    if split and "provider" not in dims:
        dims = (*dims, "provider")
    time = "created_at" if table == "usage" else "bucket"
    out: list[tuple[str, str]] = []
    if by in ("day", "hour"):
        out.append((_time_label(by, pg, f"{table}.{time}"), f"g_{by}"))
    for d in dims:
        col = f"{table}.{d}"
        if table == "usage" and d != "status":
            if d in ("key_id", "user_id"):
                col = f"coalesce({col}, {p(NO_ID, 'UUID')})"
            else:
                col = f"coalesce({col}, {p('', 'VARCHAR')})"
        out.append((col, f"g_{d}"))
    return out


def _range(col: str, r: Range, p: _Params) -> str:
    cond = []
    if r[0] is not None:
        cond.append(f"{col} >= {p(r[0], 'TIMESTAMP WITH TIME ZONE')}")
    if r[1] is not None:
        cond.append(f"{col} < {p(r[1], 'TIMESTAMP WITH TIME ZONE')}")
    return " AND ".join(cond) if cond else ("true" if p.pg else "1")


def _any(conds: list[str]) -> str:
    return conds[0] if len(conds) == 1 else " OR ".join(f"({c})" for c in conds)


def _rollup_metrics(t: str) -> list[str]:
    return [
        f"sum({t}.requests) AS requests",
        f"sum(CASE WHEN ({t}.status >= {FAILED_FROM}) THEN {t}.requests ELSE 0 END) AS errors",
        *(f"sum({t}.{c}) AS {c}" for c in _ROLLUP_SUMS),
        f"min({t}.latency_min) AS latency_min",
        f"max({t}.latency_max) AS latency_max",
        *(f"sum({t}.lat_{k}) AS lat_{k}" for k in range(LATENCY_BUCKETS)),
        f"sum({t}.streamed) AS streamed",
        f"sum({t}.truncated) AS truncated",
    ]


def _raw_metrics(pg: bool) -> list[str]:
    lat = "usage.latency_ms"
    hist = []
    for k in range(LATENCY_BUCKETS):
        if k == 0:
            cond = f"{lat} < {BOUNDS[0]!r}"
        elif k == LATENCY_BUCKETS - 1:
            cond = f"{lat} >= {BOUNDS[-1]!r}"
        else:
            cond = f"{lat} >= {BOUNDS[k - 1]!r} AND {lat} < {BOUNDS[k]!r}"
        hist.append(f"sum(CASE WHEN ({cond}) THEN 1 ELSE 0 END) AS lat_{k}")
    cost = (
        "CAST(usage.cost * 10000000000 AS BIGINT)"
        if pg
        else "CAST(round(CAST(usage.cost AS FLOAT) * 10000000000) AS INTEGER)"
    )
    return [
        "count(*) AS requests",
        f"sum(CASE WHEN (usage.status >= {FAILED_FROM}) THEN 1 ELSE 0 END) AS errors",
        "sum(usage.prompt_tokens) AS prompt_tokens",
        "sum(usage.completion_tokens) AS completion_tokens",
        "sum(usage.total_tokens) AS total_tokens",
        f"sum({cost}) AS cost_units",
        f"sum({lat}) AS latency_sum",
        f"min({lat}) AS latency_min",
        f"max({lat}) AS latency_max",
        *hist,
        f"sum(CASE WHEN (usage.stream = {'true' if pg else '1'}) THEN 1 ELSE 0 END) AS streamed",
        "sum(CASE WHEN (usage.finish_reason = 'length') THEN 1 ELSE 0 END) AS truncated",
    ]


def _part(groups: list[tuple[str, str]], metrics: list[str], table: str, where: str) -> str:
    cols = ", ".join([*(f"{e} AS {label}" for e, label in groups), *metrics])
    keys = ", ".join(e for e, _ in groups)
    # only this module's names and placeholders: every value is a bound parameter
    sql = f"SELECT {cols} FROM {table} WHERE {where}"  # noqa: S608
    return sql + (f" GROUP BY {keys}" if keys else "")


def statement(
    by: str,
    dialect: str,
    since: datetime | None,
    until: datetime | None,
    last_id: int,
    split: bool = True,
) -> tuple[str, dict[str, Any]]:
    """``reports._statement`` without filters, as (SQL, parameters) for the DB-API driver:
    the rollups for whole days and hours, the raw rows for the window's edges (as far as the
    rollups hold them, ``id <= last_id``) and for the rows not folded in yet (``id >
    last_id``), added up per group; a key's name and prefix, a user's email joined on."""
    pg = dialect == "postgresql"
    p = _Params(dialect)
    days, hours, raw = plan(since, until, by)
    parts: list[str] = []
    hourly = "usage_hourly" if by in ("key", "user", ALL) else "usage_hourly_models"
    for table, ranges in (("usage_daily", [days] if days else []), (hourly, hours)):
        if ranges:
            where = _any([_range(f"{table}.bucket", r, p) for r in ranges])
            parts.append(
                _part(_groups(by, pg, table, p, split), _rollup_metrics(table), table, where)
            )
    groups = _groups(by, pg, "usage", p, split)
    plus = "" if pg else "+"  # SQLite: not this column's index (reports._unindexed)
    if raw:
        where = f"({_any([_range('usage.created_at', r, p) for r in raw])})"
        where += f" AND {plus}usage.id <= {p(last_id, 'BIGINT')}"
        parts.append(_part(groups, _raw_metrics(pg), "usage", where))
    where = f"usage.id > {p(last_id, 'BIGINT')} AND " + _range(
        f"{plus}usage.created_at", (since, until), p
    )
    parts.append(_part(groups, _raw_metrics(pg), "usage", where))
    labels = [label for _, label in groups]
    outer = [
        *(f"parts.{g}" for g in labels),
        *(f"sum(parts.{n}) AS {n}" for n in _OUTER_SUMS),
        "min(parts.latency_min) AS latency_min",
        "max(parts.latency_max) AS latency_max",
    ]
    sql = f"SELECT {', '.join(outer)} FROM ({' UNION ALL '.join(parts)}) AS parts"  # noqa: S608
    if labels:
        sql += " GROUP BY " + ", ".join(f"parts.{g}" for g in labels)
    if by in ("key", "user", ALL):
        names, src = [], f"({sql}) AS totals"
        if by in ("key", ALL):
            names += ["api_keys.name AS g_name", "api_keys.prefix AS g_prefix"]
            src += " LEFT OUTER JOIN api_keys ON api_keys.id = totals.g_key_id"
        if by in ("user", ALL):
            names += ["users.email AS g_email"]
            src += " LEFT OUTER JOIN users ON users.id = totals.g_user_id"
        sql = f"SELECT totals.*, {', '.join(names)} FROM {src}"  # noqa: S608
    return sql, p.values


_TAIL = "SELECT (SELECT last_id FROM usage_rollup_state WHERE id = 1), (SELECT max(id) FROM usage)"


def _tail(cur: Any) -> tuple[int, int]:
    cur.execute(_TAIL)
    row = cur.fetchone()
    return int(row[0] or 0), int(row[1] or 0)


def read_stats(
    conn: Any,
    dialect: str,
    by: GroupBy,
    since: datetime | None,
    until: datetime | None,
    currencies: Mapping[str, str],
) -> list[dict[str, Any]] | None:
    """``usage_stats(by=by, currencies=currencies)`` (no filter) read through a DB-API
    connection, or ``None`` when more than ``REFRESH_AT`` rows wait to be folded in (this
    path does not write: the caller takes the one that folds them first). Consistent with
    one state of the rollups, as ``reports._read``."""
    cur = conn.cursor()
    last, newest = _tail(cur)
    if newest - last > REFRESH_AT:
        return None
    if dialect == "postgresql":
        cur.execute("SET LOCAL jit = off")
    for _attempt in range(3):
        sql, params = statement(by, dialect, since, until, last)
        cur.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        now_last, _ = _tail(cur)
        if now_last == last:
            return combine(rows, by, currencies)
        last = now_last
    return None  # refreshes keep landing: the ordinary path reads the watermark in-statement


# -- the statement's rows as the answer ----------------------------------------------------


def _none(value: Any) -> Any:
    return None if value in ("", NO_ID) else value


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


def _labels(by: GroupBy, m: Mapping[Any, Any]) -> dict[str, Any]:
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


_LAT = tuple(f"lat_{k}" for k in range(LATENCY_BUCKETS))
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


def combine(
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
        hist = g["hist"]
        for k, name in enumerate(_LAT):
            if n := m[name]:
                hist[k] += int(n)
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
        per = {c: money(u) for c, u in sorted(g["units"].items()) if c and u}
        row = {
            **g["labels"],
            "requests": requests,
            "errors": int(g["errors"]),
            "prompt_tokens": int(g["prompt_tokens"]),
            "completion_tokens": int(g["completion_tokens"]),
            "total_tokens": int(g["total_tokens"]),
            "cost": money(sum(g["units"].values())) if len(per) <= 1 else None,
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
        out.sort(key=lambda r: (-r["requests"], str(r[LABELS[by][0]] or "")))
    return out


def money(units: int) -> Decimal:
    """An amount in 1e-10 units as a decimal with ten places."""
    return Decimal(int(units)).scaleb(-10).quantize(_TEN)


_TEN = Decimal(1).scaleb(-10)


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 2)
