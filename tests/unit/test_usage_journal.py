"""The usage journal (ST-3): written before the answer, settled and truncated once stored,
replayed after a crash, a stream's provisional record replaced by its final one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.config import UsageSettings
from llmgw.usage.recorder import UsageEvent, UsageRecorder


def _rows(engine: Engine) -> dict[str, tuple[int, str | None]]:
    with engine.connect() as c:
        q = sa.text("SELECT request_id, status, error_type FROM usage")
        return {r: (s, e) for r, s, e in c.execute(q)}


def _journal_lines(spool: Path) -> list[bytes]:
    return [line for p in spool.glob("journal-*.jsonl") for line in p.read_bytes().splitlines()]


def test_record_is_in_the_journal_before_the_database_and_truncated_after(
    engine: Engine, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    rec = UsageRecorder(engine, UsageSettings(flush_interval=0.05), spool)
    rec.record(UsageEvent(request_id="j-1", created_at=datetime.now(UTC)))  # writer not started
    lines = _journal_lines(spool)
    assert len(lines) == 2 and b'"j-1"' in lines[1]  # the header, then the record
    rec.start()
    assert rec.flush()
    assert _journal_lines(spool) == lines[:1]  # settled: truncated to its header
    rec.close()
    assert not list(spool.glob("journal-*.jsonl"))
    assert _rows(engine) == {"j-1": (200, None)}


def test_a_dead_process_journal_is_replayed_and_a_final_record_replaces_the_provisional(
    engine: Engine, tmp_path: Path
) -> None:
    """A stream cut by a crash is stored as interrupted/partial; one whose final record was
    journaled (in a later segment, rotated) is stored as final."""
    spool = tmp_path / "spool"
    dead = UsageRecorder(engine, UsageSettings(), spool)  # never started: nothing reaches the DB
    dead._journal.rotate_bytes = 1  # every record in a segment of its own
    now = datetime.now(UTC)
    cut = UsageEvent(request_id="cut", created_at=now, stream=True)
    done = UsageEvent(request_id="done", created_at=now, stream=True)
    dead.begin_stream(cut)
    dead.begin_stream(done)
    done.prompt_tokens, done.completion_tokens, done.total_tokens = 3, 4, 7
    dead.record(done)
    dead._journal.close()  # the process dies: its locks go, unsettled segments stay
    assert len(list(spool.glob("journal-*.jsonl"))) == 2  # done's provisional went with its final
    rec = UsageRecorder(engine, UsageSettings(), spool)
    rec.start()
    assert rec.flush()
    rec.close()
    assert _rows(engine) == {"cut": (200, "interrupted"), "done": (200, None)}
    assert not list(spool.glob("journal-*.jsonl"))


async def test_power_durability_answers_after_a_grouped_fsync(
    engine: Engine, tmp_path: Path
) -> None:
    rec = UsageRecorder(engine, UsageSettings(durability="power"), tmp_path / "spool")
    rec.start()
    waits = [
        rec.record(UsageEvent(request_id=f"p-{i}", created_at=datetime.now(UTC))) for i in range(50)
    ]
    assert all(w is not None for w in waits)
    await asyncio.wait_for(asyncio.gather(*[w for w in waits if w is not None]), 10)
    assert await asyncio.to_thread(rec.flush)
    await asyncio.to_thread(rec.close)
    assert len(_rows(engine)) == 50


@pytest.mark.parametrize("durability", ["memory"])
def test_memory_durability_writes_no_journal(
    durability: str, engine: Engine, tmp_path: Path
) -> None:
    rec = UsageRecorder(engine, UsageSettings(durability=durability), tmp_path / "spool")
    assert rec.record(UsageEvent(request_id="m-1", created_at=datetime.now(UTC))) is None
    assert not _journal_lines(tmp_path / "spool")
    rec.start()
    assert rec.flush()
    rec.close()
