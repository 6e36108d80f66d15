"""Retention: delete old history in short batches (``[alerts] retention_*``).

Resolved occurrences go ``retention_resolved_days`` after they resolved, occurrences still
firing (Alertmanager stopped reporting them without a resolution) ``retention_firing_days``
after their last delivery, raw deliveries ``retention_deliveries_days`` after they last
arrived, and expired cache rows at once. Events and jobs go with their occurrence (ON DELETE
CASCADE). Each statement deletes at most ``retention_batch`` rows, so no lock is held long; on
PostgreSQL a batch gives up after 10 s waiting for a lock or 60 s in all (the next pass retries),
so a retention thread never outlives a shutdown by waiting on the database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.alerts.cache import CACHE
from llmgw.alerts.stats import AlertStats
from llmgw.alerts.store import ALERTS, DELIVERIES
from llmgw.config import AlertsSettings

__all__ = ["run_retention"]

_PG_BOUND = "SET LOCAL lock_timeout = '10s'; SET LOCAL statement_timeout = '60s'"


def _delete(engine: Engine, table: sa.Table, where: sa.ColumnElement[bool], batch: int) -> int:
    pk = next(iter(table.primary_key.columns))
    total = 0
    while True:
        ids = sa.select(pk).where(where).limit(batch).scalar_subquery()
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # a batch never waits forever on a lock or a
                conn.exec_driver_sql(_PG_BOUND)  # connection gone half-dead: the next pass retries
            n = conn.execute(sa.delete(table).where(pk.in_(ids))).rowcount
        total += n
        if n < batch:
            return total


def run_retention(
    engine: Engine,
    settings: AlertsSettings,
    stats: AlertStats | None = None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, int]:
    """One retention pass; rows deleted per kind."""
    t = now()
    s = settings
    c = ALERTS.c
    out = {"resolved": 0, "firing": 0, "deliveries": 0, "cache": 0}
    if s.retention_resolved_days is not None:
        cutoff = t - timedelta(days=s.retention_resolved_days)
        out["resolved"] = _delete(
            engine, ALERTS, sa.and_(c.status == "resolved", c.ends_at < cutoff), s.retention_batch
        )
    if s.retention_firing_days is not None:
        cutoff = t - timedelta(days=s.retention_firing_days)
        out["firing"] = _delete(
            engine, ALERTS, sa.and_(c.status == "firing", c.last_seen < cutoff), s.retention_batch
        )
    if s.retention_deliveries_days is not None:
        cutoff = t - timedelta(days=s.retention_deliveries_days)
        out["deliveries"] = _delete(
            engine, DELIVERIES, DELIVERIES.c.last_received_at < cutoff, s.retention_batch
        )
    out["cache"] = _delete(engine, CACHE, CACHE.c.expires_at < t, s.retention_batch)
    if stats is not None:
        for kind in ("resolved", "firing", "deliveries"):
            stats.retention_deleted[kind] += out[kind]
    return out
