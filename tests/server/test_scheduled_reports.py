"""Scheduled reports from ``llmgw serve`` itself (issue 13 item 4): three real gateways on one
database with ``[reports]`` enabled send yesterday's daily report to a local webhook receiver
exactly once, the period claimed in ``report_deliveries``. The race between the instances' upkeep
passes in detail (a failed delivery retried, PostgreSQL too) is ``tests/unit/test_report_schedule.py``."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.config import NotifySettings, ReportsSettings, Settings, UsageSettings
from llmgw.storage.tables import report_deliveries
from llmgw.usage.recorder import UsageEvent, UsageRecorder
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.timeout(120)


def test_three_gateways_send_yesterdays_report_once(
    make_settings: Callable[..., Settings],
    emulator: Any,
    test_engine: Engine,
    tmp_path: Path,
) -> None:
    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0)
    rec = UsageRecorder(test_engine, UsageSettings(flush_interval=0.05), tmp_path / "spool")
    rec.start()
    for i in range(3):
        rec.record(
            UsageEvent(
                request_id=f"y-{i}", created_at=yesterday + timedelta(minutes=i),
                provider="openai", model="gpt-4o-mini", prompt_tokens=10, completion_tokens=5,
                total_tokens=15, cost=Decimal("0.001"), latency_ms=12.0,
            )
        )  # fmt: skip
    rec.close()
    with WebhookReceiver() as hook:
        settings = make_settings(emulator.url).model_copy(
            update={
                "notify": NotifySettings.model_validate(
                    {"channels": {"ops": {"kind": "webhook", "url": hook.url + "/reports"}}}
                ),
                "reports": ReportsSettings(enabled=True, at="00:00", notify=["ops"]),
                "usage": UsageSettings(flush_interval=0.05, rollup_interval=0.2),
            }
        )
        servers = [serve_in_thread(create_app(settings)) for _ in range(3)]
        try:
            deadline = time.monotonic() + 30
            while not hook.bodies("/reports"):
                assert time.monotonic() < deadline, "no report arrived"
                time.sleep(0.1)
            time.sleep(2.0)  # ten more passes of each instance: nothing more may arrive
            bodies = hook.bodies("/reports")
        finally:
            for s in servers:
                s.stop()
    assert len(bodies) == 1, [b.get("title") for b in bodies]
    body = bodies[0]
    assert body["event"] == "report.daily"
    assert body["title"] == f"llmgw daily report {yesterday:%Y-%m-%d}"
    assert body["data"]["totals"]["requests"] == 3 and "<svg" in body["html"]
    with test_engine.connect() as conn:
        rows = conn.execute(sa.select(report_deliveries)).mappings().all()
    assert [(r["period"], r["status"]) for r in rows] == [(f"daily:{yesterday:%Y-%m-%d}", "sent")]
