"""``usage.retention_days``: raw rows past it are deleted, the rollups keep their totals, and a
row not folded in yet is never deleted (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.config import UsageSettings
from llmgw.usage import rollup
from llmgw.usage.maintenance import UsageMaintenance
from llmgw.usage.reports import usage_stats
from llmgw.usage.retention import prune

from .test_usage_rollup import END, _rows, _u


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(_u)).scalar_one())


def test_retention_deletes_old_raw_rows_and_keeps_their_rollups(engine: Engine) -> None:
    rows = _rows(random.Random(3), 300, 0, [uuid.uuid4(), None])  # spread over 3 days
    with engine.begin() as conn:
        conn.execute(sa.insert(_u), rows)
    whole = END.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=4)
    before = usage_stats(engine, since=whole, until=END, by="day", refresh_at=10**9)
    old = sum(r["created_at"] < END - timedelta(days=1) for r in rows)
    assert 100 < old < 300
    upkeep = UsageMaintenance(engine, UsageSettings(retention_days=1))
    # prune() folds in first, so every row is in the rollups before it goes
    assert prune(engine, days=1, batch=37, now=END) == old
    assert _count(engine) == 300 - old
    after = usage_stats(engine, since=whole, until=END, by="day", refresh_at=10**9)
    # the deleted rows lie in whole hours of the window, which the rollups answer: nothing changes
    assert after == before and sum(r["requests"] for r in after) == 300
    upkeep.run_once()  # the server's pass (now: a few hours later): more raw rows go, no total
    assert _count(engine) < 300 - old
    assert (
        usage_stats(engine, since=whole, until=END, by="day", refresh_at=10**9)[:-1] == after[:-1]
    )


def test_retention_never_deletes_a_row_the_rollups_do_not_hold(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows(random.Random(4), 50, 0, [None])
    with engine.begin() as conn:
        conn.execute(sa.insert(_u), rows)
        first = int(conn.execute(sa.select(sa.func.min(_u.c.id))).scalar_one())
    with engine.begin() as conn:  # fold only the first 10 ids
        assert rollup.refresh_in(conn, chunk=first + 9) == first + 9
    # a refresh that cannot fold (another instance holds the lock): the other 40 rows must stay
    monkeypatch.setattr("llmgw.usage.retention.refresh", lambda engine, **kw: 0)
    assert prune(engine, days=0.0001, now=END + timedelta(days=10)) == first + 9 - (first - 1)
    assert _count(engine) == 40
