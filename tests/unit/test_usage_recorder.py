"""UsageRecorder on real SQLite and PostgreSQL: batching, idempotency, flush and close."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.config import ProviderConfig, UsageSettings
from llmgw.usage.pricing import cost_of, currency_of
from llmgw.usage.recorder import UsageEvent, UsageRecorder
from llmgw.usage.spool import Spool

pytestmark = pytest.mark.timeout(60)


def _event(rid: str, **kw: Any) -> UsageEvent:
    return UsageEvent(request_id=rid, created_at=datetime.now(UTC), **kw)


def _rows(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.text("SELECT request_id, prompt_tokens FROM usage"))]


def _settings(**kw: Any) -> UsageSettings:
    base: dict[str, Any] = {"batch_size": 50, "flush_interval": 0.05, "retry_interval": 0.1}
    base.update(kw)
    return UsageSettings(**base)


def test_n_records_become_n_rows_in_bounded_batches(engine: Engine, tmp_path: Path) -> None:
    sizes: list[int] = []

    def watch(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO USAGE"):
            sizes.append(len(params) if many else 1)

    sa.event.listen(engine, "before_cursor_execute", watch)
    rec = UsageRecorder(engine, _settings(batch_size=50), tmp_path / "spool")
    rec.start()

    def produce(t: int) -> None:
        for i in range(250):
            rec.record(_event(f"t{t}-{i}", prompt_tokens=i))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert rec.flush(10)
    rows = _rows(engine)
    assert len(rows) == 1000
    assert {r[0] for r in rows} == {f"t{t}-{i}" for t in range(4) for i in range(250)}
    # every insert carried at most batch_size rows, and all rows went through bulk inserts
    assert sum(sizes) == 1000 and max(sizes) <= 50 and len(sizes) >= 20
    stats = rec.stats()
    assert stats["spooled"] == 0 and stats["state"] == "ok"
    rec.close()
    sa.event.remove(engine, "before_cursor_execute", watch)
    assert not list((tmp_path / "spool").glob("usage-*.jsonl"))


def test_same_request_id_twice_is_one_row(engine: Engine, tmp_path: Path) -> None:
    rec = UsageRecorder(engine, _settings(), tmp_path / "spool")
    rec.start()
    rec.record(_event("dup-1", prompt_tokens=5))
    rec.record(_event("dup-1", prompt_tokens=5))  # same batch
    assert rec.flush()
    rec.record(_event("dup-1", prompt_tokens=5))  # a later batch
    rec.close()
    assert _rows(engine) == [("dup-1", 5)]


def test_time_bounded_batch_is_written_without_flush(engine: Engine, tmp_path: Path) -> None:
    rec = UsageRecorder(engine, _settings(batch_size=10_000, flush_interval=0.05), tmp_path / "s")
    rec.start()
    try:
        rec.record(_event("lonely"))
        deadline = datetime.now(UTC).timestamp() + 5
        while not _rows(engine) and datetime.now(UTC).timestamp() < deadline:
            threading.Event().wait(0.02)
        assert [r[0] for r in _rows(engine)] == ["lonely"]
    finally:
        rec.close()


def test_close_writes_everything_and_values_round_trip(engine: Engine, tmp_path: Path) -> None:
    key, user = uuid.uuid4(), uuid.uuid4()
    rec = UsageRecorder(engine, _settings(), tmp_path / "spool")
    rec.start()
    rec.record(
        _event(
            "full",
            key_id=key,
            user_id=user,
            provider="local",
            model="gpt-4o-mini",
            model_version="2024-07-18",
            stream=True,
            prompt_tokens=1000,
            completion_tokens=500,
            total_tokens=1500,
            cost=Decimal("0.0004500000"),
            latency_ms=12.5,
            ttft_ms=3.25,
            status=499,
            error_type="client_disconnected",
            meta={"alias": "chat-default"},
        )
    )
    for i in range(120):
        rec.record(_event(f"bulk-{i}"))
    rec.close(timeout=10)
    with engine.connect() as c:
        row = (
            c.execute(
                sa.select(sa.text("*"))
                .select_from(sa.table("usage"))
                .where(sa.text("request_id='full'"))
            )
            .one()
            ._mapping
        )
        count = c.execute(sa.text("SELECT count(*) FROM usage")).scalar_one()
    assert count == 121
    assert str(row["key_id"]).replace("-", "") == key.hex
    assert row["provider"] == "local" and row["status"] == 499 and bool(row["stream"]) is True
    assert Decimal(str(row["cost"])) == Decimal("0.00045")
    assert rec.stats()["state"] == "stopped"


def test_record_after_close_is_spooled_not_dropped(engine: Engine, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    rec = UsageRecorder(engine, _settings(), spool_dir)
    rec.start()
    rec.close()
    rec.record(_event("late"))
    assert rec.stats()["overflowed"] == 1
    # the next recorder replays it
    rec2 = UsageRecorder(engine, _settings(), spool_dir)
    rec2.start()
    assert rec2.flush()
    rec2.close()
    assert [r[0] for r in _rows(engine)] == ["late"]
    assert not list(spool_dir.glob("usage-*.jsonl"))


def test_queue_bound_sends_records_straight_to_the_spool(engine: Engine, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    rec = UsageRecorder(engine, _settings(queue_max=100), spool_dir)
    # not started: nothing drains the queue, so records 101..150 must go to the spool
    for i in range(150):
        rec.record(_event(f"q-{i}"))
    assert rec.stats()["overflowed"] == 50
    assert Spool(spool_dir).count_records() == 50
    rec.start()
    assert rec.flush()
    assert rec.stats()["spool_records"] == 0
    rec.close()
    assert {r[0] for r in _rows(engine)} == {f"q-{i}" for i in range(150)}
    assert not list(spool_dir.glob("usage-*.jsonl"))


def test_bad_row_is_rejected_to_a_file_and_the_rest_is_written(
    engine: Engine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    rec = UsageRecorder(engine, _settings(), spool_dir)
    rec.start()
    rec.record(_event("ok-1"))
    rec.record(_event("bad", endpoint=None))  # NOT NULL column: refused by both databases
    rec.record(_event("ok-2"))
    rec.close()
    assert sorted(r[0] for r in _rows(engine)) == ["ok-1", "ok-2"]
    assert rec.stats()["rejected"] == 1
    assert b'"request_id":"bad"' in (spool_dir / "rejected.jsonl").read_bytes()


def test_malformed_event_is_rejected_and_the_writer_keeps_going(
    engine: Engine, tmp_path: Path
) -> None:
    rec = UsageRecorder(engine, _settings(), tmp_path / "spool")
    rec.start()
    rec.record(_event("before"))
    rec.record(UsageEvent(request_id="broken", created_at="yesterday"))  # type: ignore[arg-type]
    rec.record(_event("after"))
    assert rec.flush()
    rec.record(_event("later"))
    rec.close()
    assert sorted(r[0] for r in _rows(engine)) == ["after", "before", "later"]
    assert rec.stats()["rejected"] == 1
    assert b"broken" in (tmp_path / "spool" / "rejected.jsonl").read_bytes()


def test_cost_of_uses_configured_prices() -> None:
    p = ProviderConfig(
        name="local",
        kind="openai",
        prices={"gpt-4o-mini": {"input": 0.15, "output": "0.60"}},
    )
    assert cost_of(p, "gpt-4o-mini", 1_000_000, 0) == Decimal("0.15")
    assert cost_of(p, "gpt-4o-mini", 1000, 500) == Decimal("0.00045")
    assert cost_of(p, "gpt-4o-mini:2024-07-18", 1000, 500) == Decimal("0.00045")
    assert cost_of(p, "other", 1000, 500) == Decimal(0)
    assert cost_of(None, "gpt-4o-mini", 1000, 500) == Decimal(0)
    assert p.prices["gpt-4o-mini"].currency is None and currency_of(p) == "USD"


def test_prices_reject_bad_values() -> None:
    from pydantic import ValidationError

    for bad in (
        {"input": -1, "output": 1},
        {"input": 1, "output": 1, "currency": "usd"},
        {"input": 1},
    ):
        with pytest.raises(ValidationError):
            ProviderConfig(name="x", kind="openai", prices={"m": bad})


def test_database_down_and_spool_unwritable_keeps_records_until_db_is_back(tmp_path: Path) -> None:
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    dbdir = tmp_path / "db"
    engine = make_engine(f"sqlite:///{dbdir / 'u.db'}")  # creates dbdir
    dbdir.rmdir()
    dbdir.write_text("not a directory")  # the database cannot be opened
    spool_dir = tmp_path / "spool"
    spool_dir.write_text("not a directory")  # and the spool cannot be written
    rec = UsageRecorder(engine, _settings(), spool_dir)
    rec.start()
    for i in range(10):
        rec.record(_event(f"s-{i}"))  # never raises
    assert rec.flush()
    stats = rec.stats()
    assert stats["state"] == "failing" and stats["stranded"] == 10
    assert "not writable" in str(stats["last_error"])
    dbdir.unlink()
    dbdir.mkdir()
    upgrade(engine)  # the database is back
    deadline = datetime.now(UTC).timestamp() + 20
    while rec.stats()["state"] != "ok" and datetime.now(UTC).timestamp() < deadline:
        threading.Event().wait(0.05)
    rec.close()
    assert sorted(r[0] for r in _rows(engine)) == [f"s-{i}" for i in range(10)]
    engine.dispose()


_WRITER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from llmgw.config import UsageSettings
from llmgw.storage.db import make_engine
from llmgw.usage.recorder import UsageEvent, UsageRecorder

url, spool, tag = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
rec = UsageRecorder(make_engine(url), UsageSettings(batch_size=20, flush_interval=0.01,
                                                     retry_interval=0.1), spool)
rec.start()
for i in range(1000):
    rec.record(UsageEvent(request_id=f"{tag}-{i}", created_at=datetime.now(UTC)))
rec.close(timeout=60)
"""


def test_sqlite_four_writer_processes_lose_nothing(tmp_path: Path) -> None:
    """Four processes with one SQLite file and one spool directory: every row exactly once."""
    import subprocess
    import sys

    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = make_engine(url)
    upgrade(engine)
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, url, str(tmp_path / "spool"), f"p{n}"])
        for n in range(4)
    ]
    assert [p.wait(timeout=90) for p in procs] == [0, 0, 0, 0]
    # anything a process had to spool (database locked) is replayed by the next recorder
    rec = UsageRecorder(engine, _settings(), tmp_path / "spool")
    rec.start()
    assert rec.flush()
    rec.close()
    ids = [r[0] for r in _rows(engine)]
    assert len(ids) == 4000 and len(set(ids)) == 4000
    engine.dispose()
