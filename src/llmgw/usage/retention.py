"""Retention of raw usage rows (``usage.retention_days``): delete old rows, keep the rollups.

Only rows already folded into the rollups (``id <= usage_rollup_state.last_id``) are deleted,
after a refresh, so no request ever disappears from the hourly and daily totals. Deletes run in
batches of ``batch`` rows, one short transaction each.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.storage.tables import UsageRecord, usage_rollup_state
from llmgw.usage.rollup import refresh

__all__ = ["prune"]

_u: sa.Table = UsageRecord.__table__  # type: ignore[attr-defined]


def prune(engine: Engine, *, days: float, batch: int = 5000, now: datetime | None = None) -> int:
    """Delete the raw usage rows older than ``days`` that the rollups hold; how many went."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    refresh(engine)
    folded = (
        sa.select(usage_rollup_state.c.last_id)
        .where(usage_rollup_state.c.id == 1)
        .scalar_subquery()
    )
    ids = (
        sa.select(_u.c.id)
        .where(_u.c.created_at < cutoff, _u.c.id <= folded)
        .limit(batch)
        .scalar_subquery()
    )
    total = 0
    while True:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            n = conn.execute(sa.delete(_u).where(_u.c.id.in_(ids))).rowcount
        total += n
        if n < batch:
            return total
