"""Replaying spool and journal segments: read as it goes (memory bounded whatever the segment's
size), every row stored exactly once, a stream's final record replacing its provisional one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.usage.inserts import Inserter
from llmgw.usage.journal import encode
from llmgw.usage.replay import replay_segments
from llmgw.usage.rows import COLUMNS, UsageEvent, event_to_row
from llmgw.usage.spool import Spool

pytestmark = pytest.mark.timeout(180)

_BIG = textwrap.dedent(
    """
    import json, resource, sys, uuid
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal
    from pathlib import Path

    import sqlalchemy as sa

    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade
    from llmgw.usage.inserts import Inserter
    from llmgw.usage.replay import replay_segments
    from llmgw.usage.rows import COLUMNS, USAGE_TABLE
    from llmgw.usage.spool import Spool, row_from_json, row_to_json

    root, n = Path(sys.argv[1]), int(sys.argv[2])
    t0 = datetime(2026, 3, 1, tzinfo=UTC)

    def row(i, prefix="big"):
        return {
            "request_id": f"{prefix}-{i:07d}", "created_at": t0 + timedelta(milliseconds=i),
            "endpoint": "chat", "key_id": uuid.UUID(int=i), "user_id": None,
            "provider": "openai", "model": f"gpt-{i % 7}", "model_version": None,
            "stream": i % 3 == 0, "prompt_tokens": i % 1000, "completion_tokens": i % 777,
            "total_tokens": i % 1000 + i % 777, "cost": Decimal(i) / Decimal(10**9),
            "latency_ms": i / 8, "ttft_ms": None, "status": 200, "error_type": None,
            "metadata": {"i": i, "pad": "x" * 300}, "token_id": None, "finish_reason": "stop",
        }

    assert set(row(0)) == set(COLUMNS), set(COLUMNS) ^ set(row(0))
    engine = make_engine(f"sqlite:///{root}/usage.db")
    upgrade(engine)
    spool = Spool(root / "spool")
    inserter = Inserter(engine, lambda r, why: sys.exit(f"rejected {r['request_id']}: {why}"))
    spool.append([row(i, "warm") for i in range(1000)])  # warm up: a small replay first
    replay_segments(spool, inserter, 500)
    big = root / "spool" / "usage-00000000000000000001-1-0000beef.jsonl"
    with open(big, "wb") as f:  # one segment, written row by row
        for i in range(n):
            f.write(row_to_json(row(i)))
    size = big.stat().st_size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = replay_segments(spool, inserter, 500)
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    mismatch, seen = None, 0
    with engine.connect() as c:
        q = sa.select(*(USAGE_TABLE.c[k] for k in COLUMNS)).where(
            USAGE_TABLE.c.request_id.like("big-%")).order_by(USAGE_TABLE.c.request_id)
        for i, got in enumerate(c.execution_options(yield_per=2000).execute(q)):
            want = row_from_json(row_to_json(row(i)))  # the row as spooled and read back
            if dict(zip(COLUMNS, got)) != want and mismatch is None:
                mismatch = repr((dict(zip(COLUMNS, got)), want))
            seen += 1
    print(json.dumps({
        "size_mb": size / 2**20, "growth_mb": growth / 1024, "rows": seen,
        "replayed": result.replayed, "records": result.records, "mismatch": mismatch,
        "left": sorted(p.name for p in (root / "spool").iterdir()),
    }))
    """
)


def test_a_large_segment_is_replayed_in_bounded_memory_every_row_exactly(tmp_path: Path) -> None:
    """A 40+ MiB spool segment (an outage's worth, more than one segment's cap) is replayed
    with the process's peak memory growing by a few MiB, not by the segment's rows (it grew by
    hundreds of MiB when the segment was parsed whole); every row arrives with its values."""
    n = 60_000
    proc = subprocess.run(
        [sys.executable, "-c", _BIG, str(tmp_path), str(n)],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["size_mb"] > 40
    assert out["mismatch"] is None
    assert (out["rows"], out["replayed"], out["records"]) == (n, n, n)
    assert out["left"] == []  # the segment is deleted once every row is committed
    assert out["growth_mb"] < 24, out  # bounded by the batch, not the segment (ru_maxrss)


def _rows(engine: Engine) -> dict[str, tuple[int, str | None, int]]:
    with engine.connect() as c:
        q = sa.text("SELECT request_id, status, error_type, total_tokens FROM usage")
        return {r: (s, e, t) for r, s, e, t in c.execute(q)}


def _values(e: UsageEvent) -> tuple[Any, ...]:
    return tuple(event_to_row(e)[c] for c in COLUMNS)


def test_journal_final_record_replaces_its_provisional_across_batches(
    engine: Engine, tmp_path: Path
) -> None:
    """A journal segment read a few rows at a time: a stream's provisional record and its final
    one many batches apart still make one final row; a stream cut by the crash is stored as
    its provisional record; a record written twice is one row; a torn line is counted."""
    now = datetime.now(UTC)
    header = json.dumps({"journal": 1, "columns": list(COLUMNS)}).encode() + b"\n"

    def ev(rid: str, **kw: Any) -> UsageEvent:
        return UsageEvent(request_id=rid, created_at=now, cost=Decimal("0.5"), **kw)

    cut = ev("cut", stream=True, status=200, error_type="interrupted", meta={"partial": True})
    lines = [
        header,
        encode(_values(ev("s1", stream=True, error_type="interrupted")), partial=True),
        encode(_values(cut), partial=True),
        *(encode(_values(ev(f"r{i}", total_tokens=i))) for i in range(10)),
        encode(_values(ev("r3", total_tokens=3))),  # written twice: one row
        encode(_values(ev("s1", stream=True, total_tokens=42))),  # the final, batches later
        b'["torn',
    ]
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "journal-00000000000000000001-1-0000beef.jsonl").write_bytes(b"".join(lines))
    rejected: list[str] = []
    result = replay_segments(
        Spool(spool_dir), Inserter(engine, lambda r, why: rejected.append(why)), 3
    )
    rows = _rows(engine)
    assert rows["s1"] == (200, None, 42)
    assert rows["cut"] == (200, "interrupted", 0)
    assert {rid: t for rid, (_, _, t) in rows.items() if rid.startswith("r")} == {
        f"r{i}": i for i in range(10)
    }
    assert len(rows) == 12 and not rejected
    assert (result.replayed, result.bad_lines) == (13, 1)  # r3 twice, batches apart
    assert not list(spool_dir.iterdir())
