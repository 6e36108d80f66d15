"""Several ``llmgw serve`` instances on one PostgreSQL: only the one holding the fold lease
(an advisory lock) folds usage into the rollups; when it stops, another takes over. On SQLite
every pass folds (one process)."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmgw.config import UsageSettings
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from llmgw.usage import rollup
from llmgw.usage.maintenance import UsageMaintenance

from .test_usage_rollup import _rows, _state, _u


def _add(engine: sa.Engine, n: int, start: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(_u), _rows(random.Random(start), n, start, [uuid.uuid4()]))


@pytest.mark.postgres
def test_two_instances_on_one_postgresql_fold_on_one_at_a_time(pg_url: str) -> None:
    first, second = make_engine(pg_url), make_engine(pg_url)  # two gateways' engines
    upgrade(first)
    a = UsageMaintenance(first, UsageSettings(rollup_interval=60))
    b = UsageMaintenance(second, UsageSettings(rollup_interval=60))
    try:
        _add(first, 30, 0)
        a.run_once()  # a takes the lease and folds
        _add(second, 20, 100)
        b.run_once()  # b finds the lease held: folds nothing
        assert (a.folded, b.folded) == (30, 0)
        a.run_once()  # the holder folds what b's instance recorded too
        assert (a.folded, b.folded) == (50, 0)
        with first.connect() as conn:
            assert _state(first) == rollup.tail(conn)[1]  # all 50 rows are in the rollups
        a.stop()  # a shuts down: its lease ends with its connection
        _add(second, 7, 200)
        b.run_once()
        assert b.folded == 7
        _add(first, 3, 300)
        b.run_once()
        assert b.folded == 10
    finally:
        a.stop()
        b.stop()
        first.dispose()
        second.dispose()


@pytest.mark.postgres
def test_a_holder_that_loses_its_connection_gives_the_lease_up(pg_url: str) -> None:
    first, second = make_engine(pg_url), make_engine(pg_url)
    upgrade(first)
    a = UsageMaintenance(first, UsageSettings(rollup_interval=60))
    b = UsageMaintenance(second, UsageSettings(rollup_interval=60))
    try:
        _add(first, 5, 0)
        a.run_once()
        assert a.folded == 5
        with second.connect() as admin:  # the holder's backend is killed (a restart, a network cut)
            admin.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                f" WHERE locktype = 'advisory' AND objid = {rollup.LEASE_KEY & 0xFFFFFFFF}"
            )
        _add(second, 4, 100)
        a.run_once()  # fails (logged), gives the lease up
        b.run_once()  # b takes over
        assert (a.folded, b.folded) == (5, 4)
    finally:
        a.stop()
        b.stop()
        first.dispose()
        second.dispose()


def test_on_sqlite_every_pass_folds(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'u.db'}")
    upgrade(engine)
    a = UsageMaintenance(engine, UsageSettings(rollup_interval=60))
    b = UsageMaintenance(engine, UsageSettings(rollup_interval=60))
    try:
        _add(engine, 6, 0)
        a.run_once()
        _add(engine, 2, 10)
        b.run_once()
        assert (a.folded, b.folded) == (6, 2)
    finally:
        engine.dispose()
