"""Scheduled reports (``[reports]``): due only after ``at``, sent exactly once per period by three
instances racing on one database to a real local webhook receiver, retried after a failure
(SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.config import NotifySettings, ReportsSettings
from llmgw.notify.channels import Notifier
from llmgw.storage.tables import report_deliveries
from llmgw.usage.report_data import Period, build
from llmgw.usage.report_schedule import ReportJob, due
from tests import usage_month
from tests.webhook_receiver import WebhookReceiver


def test_due_periods() -> None:
    t = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)  # a Monday
    assert due("daily", t, "08:00") == ("daily:2026-12-06", date(2026, 12, 6))
    assert due("daily", t, "09:00") == ("daily:2026-12-05", date(2026, 12, 5))  # not yet today's
    assert due("weekly", t, "08:00") == ("weekly:2026-W49", date(2026, 11, 30))
    assert due("monthly", t, "08:00") == ("monthly:2026-11", date(2026, 11, 1))


def test_three_instances_send_the_daily_report_once(engine: Engine) -> None:
    usage_month.seed(engine, rows=800)
    admin = LocalAdmin(engine, Actor.local(), "server")
    now = datetime(2026, 11, 20, 8, 1, tzinfo=UTC)

    def make(period: Period, day: date) -> dict[str, Any]:
        return build(admin, period, day, now=now)

    with WebhookReceiver() as hook:
        notify = NotifySettings.model_validate(
            {"channels": {"ops": {"kind": "webhook", "url": hook.url + "/r", "retries": 0}}}
        )
        settings = ReportsSettings(enabled=True, at="08:00", notify=["ops"])
        jobs = [
            ReportJob(engine, settings, Notifier(notify), make, clock=lambda: now, instance=f"i{n}")
            for n in range(3)
        ]
        hook.statuses.append(500)  # the first attempt fails: released, sent on a later pass
        barrier = threading.Barrier(3)

        def race(job: ReportJob) -> None:
            barrier.wait()
            job()

        for _round in range(3):  # three passes of three instances racing
            threads = [threading.Thread(target=race, args=(j,)) for j in jobs]
            for th in threads:
                th.start()
            for th in threads:
                th.join(60)
        assert len(hook.received) == 1, [r[2]["title"] for r in hook.received]
        _path, _headers, body = hook.received[0]
    assert body["event"] == "report.daily" and body["title"] == "llmgw daily report 2026-11-19"
    assert "<svg" in body["html"] and body["data"]["totals"]["requests"] > 0
    assert sum(j.sent for j in jobs) == 1
    with engine.connect() as conn:
        rows = conn.execute(sa.select(report_deliveries)).mappings().all()
    assert [(r["period"], r["status"]) for r in rows] == [("daily:2026-11-19", "sent")]
