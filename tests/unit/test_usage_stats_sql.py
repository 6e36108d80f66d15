"""``usage_stats``'s statement in plain SQL (``usage/stats_sql.py``, what ``llmgw usage stats``'s
fast path runs through ``sqlite3`` or ``psycopg``) gives the very answer of the SQLAlchemy one
(``usage_stats``): every grouping, windows cutting through hours and days, rows in the rollups,
in the unfolded tail and late (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from llmgw.usage import rollup, stats_sql
from llmgw.usage.reports import GROUPS, usage_stats
from tests.unit.test_usage_rollup import END, _insert, _rows

WINDOWS = [
    (END - timedelta(days=2, minutes=17), None),  # cuts an hour and a day
    (END - timedelta(hours=30, seconds=5), END - timedelta(hours=2, minutes=3)),
    (END - timedelta(minutes=50), END - timedelta(minutes=10)),  # inside one hour
    (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)),  # one whole day
    (datetime(2026, 11, 30, 22, tzinfo=UTC), datetime(2026, 12, 2, 3, tzinfo=UTC)),  # hours
    (END - timedelta(days=30), None),
]


@pytest.fixture
def dbapi(engine: Engine) -> Iterator[Any]:
    """A DB-API connection (``sqlite3`` or ``psycopg``) to the test database."""
    raw = engine.raw_connection()
    try:
        yield raw.dbapi_connection
    finally:
        raw.close()


def _same(engine: Engine, dbapi: Any, since: datetime, until: datetime | None) -> None:
    for by in GROUPS:
        want = usage_stats(
            engine,
            since=since,
            until=until,
            by=by,  # type: ignore[arg-type]
            currencies={},
            refresh_at=10**9,
        )
        got = stats_sql.read_stats(dbapi, engine.dialect.name, by, since, until, {})  # type: ignore[arg-type]
        dbapi.rollback()
        assert got == want, (by, since, until)


def test_the_plain_statement_answers_as_usage_stats(engine: Engine, dbapi: Any) -> None:
    rnd = random.Random(11)
    keys: list[uuid.UUID | None] = [uuid.uuid4(), uuid.uuid4(), None]
    _insert(engine, _rows(rnd, 250, 0, keys))
    for since, until in WINDOWS:  # nothing folded: all from the raw rows
        _same(engine, dbapi, since, until)
    rollup.refresh(engine)
    _insert(engine, _rows(rnd, 90, 250, keys))  # late and new rows in the tail
    for since, until in WINDOWS:
        _same(engine, dbapi, since, until)
    # the rows come from the rollups, not only the raw ones
    sql, params = stats_sql.statement("model", engine.dialect.name, WINDOWS[0][0], None, 250)
    assert "usage_daily" in sql and "usage_hourly_models" in sql
    assert {str(v) for v in params.values()} >= {"250"}


def test_a_long_tail_is_left_to_the_path_that_folds_it(
    engine: Engine, dbapi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _insert(engine, _rows(random.Random(3), 30, 0, [None]))
    monkeypatch.setattr(stats_sql, "REFRESH_AT", 10)
    assert stats_sql.read_stats(dbapi, engine.dialect.name, "day", WINDOWS[0][0], None, {}) is None


def test_a_fold_landing_during_every_read_gives_up(
    engine: Engine, dbapi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollups moved under each of three reads: no answer from a mix of two states."""
    _insert(engine, _rows(random.Random(5), 30, 0, [None]))
    marks = iter(range(0, 100, 2))
    monkeypatch.setattr(stats_sql, "_tail", lambda _cur: (next(marks), 30))
    assert stats_sql.read_stats(dbapi, engine.dialect.name, "day", WINDOWS[0][0], None, {}) is None
