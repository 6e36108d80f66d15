"""Numbers in usage output read as a person expects (issue 8 item 10): costs are plain fixed
decimals (``0.0000000000``, never ``0E-10``) in every format, and exported latencies have 3 decimals."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from llmgw.config import UsageSettings
from llmgw.usage.recorder import UsageEvent, UsageRecorder

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def free_calls(engine: Engine, db_url: str, tmp_path: Path) -> dict[str, str]:
    """Two free requests (cost 0) with latencies of many decimals."""
    rec = UsageRecorder(engine, UsageSettings(flush_interval=0.05), tmp_path / "spool")
    rec.start()
    for i, lat in enumerate([12.3456789, 0.1000004]):
        rec.record(
            UsageEvent(
                request_id=f"free-{i}",
                created_at=datetime.now(UTC),
                provider="local",
                model="gpt-4o-mini",
                cost=Decimal("0E-10"),
                latency_ms=lat,
            )
        )
    rec.close()
    return {"LLMGW_DATABASE_URL": db_url}


def _no_exponent(text: str) -> None:
    assert not re.search(r"\d[eE][-+]?\d", text), text


def test_stats_json_and_csv_print_zero_cost_as_a_plain_decimal(
    cli: Any, free_calls: dict[str, str]
) -> None:
    r = cli("usage", "stats", "--by", "model", "--json", env=free_calls)
    assert r.exit_code == 0, r.stderr
    _no_exponent(r.stdout)
    row = json.loads(r.stdout)["rows"][0]
    assert row["cost"] == "0.0000000000"

    r = cli("usage", "stats", "--by", "model", "--csv", env=free_calls)
    assert r.exit_code == 0, r.stderr
    _no_exponent(r.stdout)
    assert next(csv.DictReader(io.StringIO(r.stdout)))["cost"] == "0.0000000000"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_has_plain_costs_and_millisecond_latencies_to_3_decimals(
    cli: Any, free_calls: dict[str, str], fmt: str
) -> None:
    r = cli("usage", "export", "--format", fmt, env=free_calls)
    assert r.exit_code == 0, r.stderr
    _no_exponent(r.stdout)
    if fmt == "csv":
        rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(r.stdout)))
    else:
        rows = [json.loads(line) for line in r.stdout.splitlines()]
    by_id = {x["request_id"]: x for x in rows}
    assert {str(x["cost"]) for x in rows} <= {"0", "0.0000000000"}
    assert str(by_id["free-0"]["latency_ms"]) == "12.346"
    assert str(by_id["free-1"]["latency_ms"]) == "0.1"
