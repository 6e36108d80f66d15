"""Scheduled usage reports (``[reports]``): due periods, one sender across instances.

``ReportJob`` runs on every pass of the server's upkeep thread (``llmgw.usage.maintenance``).
A report is due once its period is over and the day's ``at`` (UTC) has passed: the daily report of
yesterday, the weekly one of last ISO week (from Monday), the monthly one of last month (from the
1st). Before it sends, an instance **claims** the period by inserting its row into
``report_deliveries`` (the primary key is the lock: one insert wins, on SQLite and PostgreSQL
alike); it marks the row ``sent`` when every channel took the report, and deletes it when one did
not (the next pass, on any instance, tries again). A claim left ``sending`` by an instance that
died is taken over after ``STALE``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.config import ReportsSettings
from llmgw.notify.channels import Notification, Notifier
from llmgw.storage.tables import report_deliveries
from llmgw.usage.report_data import Period

__all__ = ["STALE", "ReportJob", "due"]

log = logging.getLogger("llmgw.usage")

STALE = timedelta(minutes=15)
"""A claim still ``sending`` after this is taken to belong to an instance that died."""

_t = report_deliveries


def due(period: Period, now: datetime, at: str) -> tuple[str, date] | None:
    """(period key, a day in it) of the report due at ``now``, or ``None`` before ``at``."""
    hh, mm = (int(x) for x in at.split(":"))
    today = now.astimezone(UTC).date()
    if now.astimezone(UTC) < datetime(today.year, today.month, today.day, hh, mm, tzinfo=UTC):
        today -= timedelta(days=1)  # before today's time: the one due since yesterday's
    if period == "daily":
        day = today - timedelta(days=1)
        return f"daily:{day.isoformat()}", day
    if period == "weekly":
        day = today - timedelta(days=today.weekday() + 7)
        iso = day.isocalendar()
        return f"weekly:{iso.year}-W{iso.week:02d}", day
    day = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    return f"monthly:{day:%Y-%m}", day


class ReportJob:
    """Send the due reports of ``settings.periods`` to ``settings.notify``: call it once a
    minute; ``build(period, day)`` makes the report (``report_data.build``)."""

    def __init__(
        self,
        engine: Engine,
        settings: ReportsSettings,
        notifier: Notifier,
        build: Callable[[Period, date], dict[str, Any]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        instance: str | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.notifier = notifier
        self.build = build
        self.clock = clock
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"[:64]
        self.sent = 0

    def __call__(self) -> None:
        for period in self.settings.periods:
            found = due(period, self.clock(), self.settings.at)
            if found is not None:
                self.run(period, *found)

    def _claim(self, key: str) -> bool:
        now = self.clock()
        with self.engine.begin() as conn:
            # a claim left by an instance that died mid-send is released first
            conn.execute(
                sa.delete(_t).where(
                    _t.c.period == key, _t.c.status == "sending", _t.c.claimed_at < now - STALE
                )
            )
            if conn.execute(sa.select(_t.c.period).where(_t.c.period == key)).first():
                return False
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(_t).values(
                        period=key, status="sending", instance=self.instance, claimed_at=now
                    )
                )
        except sa.exc.IntegrityError:  # another instance claimed it first
            return False
        return True

    def run(self, period: Period, key: str, day: date) -> bool:
        """Claim ``key`` and send its report; whether this instance sent it."""
        if not self._claim(key):
            return False
        ok = False
        try:
            from llmgw.usage.report_render import html, markdown

            rep = self.build(period, day)
            note = Notification(
                event=f"report.{period}",
                title=rep["title"],
                text=markdown(rep),
                data={k: rep[k] for k in ("period", "start", "end", "totals", "previous", "trend")},
                html=html(rep),
            )
            results = asyncio.run(self.notifier.notify(list(self.settings.notify), note))
            ok = bool(results) and all(results.values())
        finally:
            with self.engine.begin() as conn:
                if ok:
                    conn.execute(
                        sa.update(_t)
                        .where(_t.c.period == key)
                        .values(status="sent", sent_at=self.clock())
                    )
                else:  # not delivered everywhere: the next pass (any instance) tries again
                    conn.execute(
                        sa.delete(_t).where(_t.c.period == key, _t.c.instance == self.instance)
                    )
        if ok:
            self.sent += 1
            log.info("sent the %s report %s", period, key)
        return ok
