"""The recorder's driver-level SQLite insert stores exactly what SQLAlchemy's executemany stores."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from llmgw.config import UsageSettings
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from llmgw.usage.inserts import Inserter
from llmgw.usage.recorder import UsageEvent, UsageRecorder, event_to_row


def _events() -> list[UsageEvent]:
    key, user = uuid.uuid4(), uuid.uuid4()
    moscow = timezone(timedelta(hours=3))
    return [
        UsageEvent(request_id="r-plain", created_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
        UsageEvent(
            request_id="r-full",
            created_at=datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=moscow),
            endpoint="embeddings",
            key_id=key,
            user_id=user,
            provider="gigachat",
            model="GigaChat-Pro",
            model_version="1.0.26.20",
            stream=True,
            prompt_tokens=12,
            completion_tokens=34,
            total_tokens=46,
            cost=Decimal("0.0000123456"),
            latency_ms=12.345678,
            ttft_ms=3.5,
            status=499,
            error_type="client_disconnected",
            meta={"alias": "chat-default", "attempts": ["a ok", "b 502"], "партиал": True},
        ),
    ]


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two migrated SQLite databases, ``a.db`` and ``b.db``."""
    engines = (
        make_engine(f"sqlite:///{tmp_path / 'a.db'}"),
        make_engine(f"sqlite:///{tmp_path / 'b.db'}"),
    )
    for eng in engines:
        upgrade(eng)
    yield engines
    for eng in engines:
        eng.dispose()


def _no_reject(row: dict[str, Any], why: str) -> None:
    raise AssertionError(f"unexpected reject: {why}")


def _raw(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        cols = [r[1] for r in db.execute("PRAGMA table_info(usage)") if r[1] != "id"]
        return db.execute(f"SELECT {', '.join(cols)} FROM usage ORDER BY request_id").fetchall()


def test_driver_insert_stores_the_same_values_as_sqlalchemy(
    two: tuple[Engine, Engine], tmp_path: Path
) -> None:
    fast_engine, plain_engine = two
    rows = [event_to_row(e) for e in _events()]
    fast = Inserter(fast_engine, _no_reject)
    plain = Inserter(plain_engine, _no_reject)
    assert fast.driver is not None  # SQLite takes the driver-level path
    plain.driver = None
    fast.insert(rows)
    plain.insert(rows)
    fast.insert(rows)  # ON CONFLICT (request_id) DO NOTHING holds on this path too
    got, want = _raw(tmp_path / "a.db"), _raw(tmp_path / "b.db")
    assert len(want) == 2
    assert got == want


def test_driver_insert_rejects_a_bad_row_and_keeps_the_rest(
    two: tuple[Engine, Engine], tmp_path: Path
) -> None:
    engine = two[0]
    recorder = UsageRecorder(engine, UsageSettings(), tmp_path / "spool")
    good = event_to_row(_events()[0])
    bad = {**event_to_row(_events()[1]), "created_at": datetime(2026, 1, 1)}  # naive
    assert recorder._writer.inserter.insert_rows([good, bad]) == 1  # the rejected one not counted
    assert [r[0] for r in _raw(tmp_path / "a.db")] == ["r-plain"]
    assert recorder.stats()["rejected"] == 1


def test_driver_insert_shortcuts_store_the_same_values(
    two: tuple[Engine, Engine], tmp_path: Path
) -> None:
    """The shortcut processors (UTC timestamps, a precomputed None, memoised UUIDs and bools)
    give the stored values of SQLAlchemy's own processors, row after row."""
    key = uuid.uuid4()
    base = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    events = [
        UsageEvent(
            request_id=f"r-{i:02d}",
            created_at=base + timedelta(microseconds=i * 250_001),
            key_id=key if i % 3 else None,
            user_id=uuid.uuid4() if i % 2 else None,
            stream=bool(i % 2),
            meta=None if i % 4 else {"alias": "x", "n": i},
            cost=Decimal(i) / 7,
        )
        for i in range(20)
    ]
    events.append(UsageEvent(request_id="r-zero-us", created_at=base))
    utc0 = timezone(timedelta(0))
    events.append(UsageEvent(request_id="r-utc0", created_at=base.replace(tzinfo=utc0)))
    fast_engine, plain_engine = two
    rows = [event_to_row(e) for e in events]
    fast = Inserter(fast_engine, _no_reject)
    plain = Inserter(plain_engine, _no_reject)
    plain.driver = None
    fast.insert(rows)
    plain.insert(rows)
    assert _raw(tmp_path / "a.db") == _raw(tmp_path / "b.db")


def test_a_shortcut_that_disagrees_with_its_processor_is_not_used() -> None:
    from llmgw.usage.inserts import _shortcut

    def odd(value: Any) -> Any:
        return "always this"

    assert _shortcut(odd, datetime) is odd  # isoformat would not give "always this"
    assert _shortcut(None, datetime) is None
    memo = _shortcut(odd, uuid.UUID)
    assert memo is not None and memo(uuid.uuid4()) == memo(None) == "always this"
