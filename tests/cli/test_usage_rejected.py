"""Rows the database refuses: counted apart from written, logged, listed and replayed by
`llmgw usage rejected [--replay]` (issue 8 item 3, on real PostgreSQL)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llmgw.config import UsageSettings
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from llmgw.usage.recorder import UsageEvent, UsageRecorder

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def test_rejected_rows_are_counted_logged_listed_and_replayed(
    pg_url: str, home: Path, cli: Any, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    spool = home / "spool"
    rec = UsageRecorder(engine, UsageSettings(flush_interval=0.05), spool)
    caplog.set_level(logging.ERROR, logger="llmgw.usage")
    rec.start()
    now = datetime.now(UTC)
    long_version = "v" * 100  # model_version is varchar(64) on PostgreSQL
    rec.record(UsageEvent(request_id="ok-1", created_at=now, model="gpt-4o-mini"))
    rec.record(UsageEvent(request_id="too-long", created_at=now, model_version=long_version))
    assert rec.flush()
    stats = rec.stats()
    rec.close()
    assert stats["written"] == 1 and stats["rejected"] == 1  # not counted as written
    assert "the database refused row too-long" in caplog.text
    assert "llmgw usage rejected" in caplog.text

    env = {"LLMGW_DATABASE_URL": pg_url}
    r = cli("usage", "rejected", "--json", env=env)
    assert r.exit_code == 0, r.stderr
    listed = json.loads(r.stdout)["rejected"]
    assert [x["request_id"] for x in listed] == ["too-long"]
    assert "value too long" in listed[0]["reason"]

    r = cli("usage", "rejected", "--replay", env=env)  # still too long: stays rejected
    assert r.exit_code == 0, r.stderr
    assert "replayed 0 row(s); 1 still rejected" in r.stdout

    with engine.begin() as conn:  # the operator widens the column (a migration would)
        conn.execute(sa.text("ALTER TABLE usage ALTER COLUMN model_version TYPE varchar(128)"))
    r = cli("usage", "rejected", "--replay", env=env)
    assert r.exit_code == 0, r.stderr
    assert "replayed 1 row(s); 0 still rejected" in r.stdout
    with engine.connect() as conn:
        got: dict[str, str | None] = dict(
            conn.execute(sa.text("SELECT request_id, model_version FROM usage")).all()
        )
    engine.dispose()
    assert got == {"ok-1": None, "too-long": long_version}
    assert cli("usage", "rejected", env=env).stdout.strip() == "no rejected usage rows"


def test_usage_rejected_without_a_file_lists_nothing(cli: Any, home: Path) -> None:
    r = cli("usage", "rejected")
    assert r.exit_code == 0 and "no rejected usage rows" in r.stdout
