"""``stats()`` of the alert history from the hourly counts (migration 0018), not a scan.

``alert_stats_hourly`` counts the occurrences per hour they were last seen and hour they
started, by status, severity, category and classification; triggers keep it in the writers'
transactions. The period asked for ("last seen since ``since``") is the whole hours after
``since``, read from those counts, plus the part of ``since``'s own hour after it, counted from
the occurrences (at most an hour of them, on ``ix_alerts_last_seen``): the answer is exact, and
its cost grows with the hours of the period, not with its occurrences.

On PostgreSQL the triggers append their changes to ``alert_stats_delta`` (migration 0019:
concurrent writers share no row, so none waits for another's commit), ``fold`` moves them into
the hourly counts (the worker, every ``FOLD_INTERVAL`` seconds) and the counts read here are
the two together, exact whether or not the fold ran.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmgw.alerts.store import ALERTS
from llmgw.storage.alert_tables import AlertStatsDelta, AlertStatsHour
from llmgw.storage.types import UTCDateTime

__all__ = ["DELTA", "FOLD_INTERVAL", "HOURLY", "fold", "summarize"]

HOURLY: sa.Table = AlertStatsHour.__table__  # type: ignore[attr-defined]
DELTA: sa.Table = AlertStatsDelta.__table__  # type: ignore[attr-defined]

FOLD_INTERVAL = 5.0
"""Seconds between the worker's folds of ``alert_stats_delta`` (a few thousand rows at most
at 2,000 new alerts/s: one grouped row per statement that changed counts)."""

_FOLD_SQL = (
    "WITH moved AS (DELETE FROM alert_stats_delta"
    " RETURNING seen_hour, start_hour, status, severity, category, cls_status, n)"
    " INSERT INTO alert_stats_hourly AS h"
    " (seen_hour, start_hour, status, severity, category, cls_status, n)"
    " SELECT seen_hour, start_hour, status, severity, category, cls_status, sum(n) FROM moved"
    " GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4, 5, 6"
    " ON CONFLICT (seen_hour, start_hour, status, severity, category, cls_status)"
    " DO UPDATE SET n = h.n + EXCLUDED.n"
)
"""Every change appended so far, deleted and added to the hourly counts in key order."""
_FOLD_LOCK = 0x6C6C6D6777_0019
"""The advisory lock of the fold: one folder at a time (another instance's fold is skipped)."""


def fold(engine: Engine) -> int:
    """Move the changes in ``alert_stats_delta`` into ``alert_stats_hourly`` (PostgreSQL; a no-op
    elsewhere or while another process folds); the hourly rows written. Its transaction touches
    no row a webhook delivery or a worker's settlement writes."""
    if engine.dialect.name != "postgresql":
        return 0
    with engine.begin() as conn:
        if not conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({_FOLD_LOCK})").scalar():
            return 0
        return int(conn.exec_driver_sql(_FOLD_SQL).rowcount or 0)


Key = tuple[str, str | None, str | None, str, datetime]
"""(status, severity, category, classification status, hour started)"""


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _from_rollup(conn: Connection, start: datetime, counts: Counter[Key]) -> None:
    parts = [
        sa.select(t.c.status, t.c.severity, t.c.category, t.c.cls_status, t.c.start_hour,
                  t.c.n).where(t.c.seen_hour >= start)
        for t in (HOURLY, DELTA)
    ]  # fmt: skip
    both = sa.union_all(*parts).subquery()
    h = both.c
    rows = conn.execute(
        sa.select(h.status, h.severity, h.category, h.cls_status, h.start_hour,
                  sa.func.sum(h.n))
        .group_by(h.status, h.severity, h.category, h.cls_status, h.start_hour)
    ).all()  # fmt: skip
    for status, severity, category, cls_status, started, n in rows:
        counts[(status, severity or None, category or None, cls_status, started)] += int(n)


def _from_rows(conn: Connection, since: datetime, until: datetime, counts: Counter[Key]) -> None:
    c = ALERTS.c
    if conn.dialect.name == "postgresql":
        hour: Any = sa.func.date_trunc("hour", c.starts_at, "UTC", type_=UTCDateTime())
    else:  # SQLite keeps UTC text: the hour's own text, read back as a time
        hour = sa.func.strftime("%Y-%m-%d %H:00:00.000000", c.starts_at, type_=UTCDateTime())
    keys = (c.status, c.severity, c.category, c.cls_status, hour)
    rows = conn.execute(
        sa.select(*keys, sa.func.count())
        .where(c.last_seen >= since, c.last_seen < until)
        .group_by(*keys)
    ).all()
    for status, severity, category, cls_status, started, n in rows:
        counts[(status, severity or None, category or None, cls_status, started)] += int(n)


def _top(conn: Connection, since: datetime) -> list[dict[str, Any]]:
    """The label sets with most occurrences seen since ``since`` (more than one). Only one
    that fired before (``fire_count > 1``, partial index ``ix_alerts_refired``) can be one."""
    c = ALERTS.c
    refired = sa.select(c.fingerprint).where(c.last_seen >= since, c.fire_count > 1)
    top = conn.execute(
        sa.select(c.fingerprint, sa.func.max(c.alertname), sa.func.count(),
                  sa.func.max(sa.case((c.flapping, 1), else_=0)))
        .where(c.last_seen >= since, c.fingerprint.in_(refired))
        .group_by(c.fingerprint)
        .having(sa.func.count() > 1)
        .order_by(sa.func.count().desc(), c.fingerprint)
        .limit(10)
    ).all()  # fmt: skip
    return [
        {"fingerprint": fp, "alertname": name, "fires": int(n), "flapping": bool(flap)}
        for fp, name, n, flap in top
    ]


def summarize(conn: Connection, since: datetime, by: str, out: dict[str, Any]) -> None:
    """Fill ``out`` with ``stats()``'s counts over the occurrences last seen since ``since``:
    ``by_status``, ``by_severity``, ``by_category``, ``by_classification``, ``over_time`` (per
    ``hour`` or ``day`` started, by severity), ``top_flapping`` and ``total``."""
    counts: Counter[Key] = Counter()
    start = _hour(since)
    if start < since:  # since's own hour: the rows after since, from the table
        start += timedelta(hours=1)
        _from_rows(conn, since, start, counts)
    _from_rollup(conn, start, counts)
    by_name: dict[str, Counter[str]] = {
        k: Counter() for k in ("status", "severity", "category", "classification")
    }
    series: dict[datetime, Counter[str]] = {}
    for (status, severity, category, cls_status, started), n in counts.items():
        if n == 0:
            continue
        by_name["status"][status] += n
        by_name["severity"][severity or "none"] += n
        by_name["category"][category or "none"] += n
        by_name["classification"][cls_status] += n
        t = started if by == "hour" else started.replace(hour=0)
        series.setdefault(t, Counter())[severity or "none"] += n
    for name, counter in by_name.items():
        out[f"by_{name}"] = dict(counter)
    fmt = "%Y-%m-%dT%H:00:00Z" if by == "hour" else "%Y-%m-%d"
    out["over_time"] = [{"t": t.strftime(fmt), **series[t]} for t in sorted(series)]
    out["top_flapping"] = _top(conn, since)
    out["total"] = sum(by_name["status"].values())
