"""Wake-ups of the alert worker from PostgreSQL (``LISTEN llmgw_alert_jobs``).

Migration 0018's trigger on ``alert_jobs`` sends a notification when jobs are queued, by any
instance or command; this listener, one connection per ``llmgw serve``, wakes the worker of its
process, so an occurrence stored by another instance is classified at once rather than at the
worker's next poll (``alerts.poll_interval``). The poll stays: it is the fallback while the
listening connection is down (it reconnects every ``retry`` seconds, and wakes the worker after
each connect, for what was queued meanwhile) and what SQLite deployments use.

``JobAnnouncer`` is the sending side for the webhook of ``llmgw serve``: its deliveries are
stored without the trigger's notification (``AlertStore.notify``), because a transaction that
notifies takes a cluster-wide lock from just before its commit until the commit is flushed, and
at hundreds of deliveries a second they waited for each other there. After a delivery has
committed, the announcer sends one ``NOTIFY`` on its own connection; deliveries that commit
while one is being sent are covered by one more after it, so every committed delivery is
followed by a notification, and the webhook never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from llmgw.tasks import stop_task

__all__ = ["CHANNEL", "JobAnnouncer", "JobNotifications"]

log = logging.getLogger("llmgw.alerts")

CHANNEL = "llmgw_alert_jobs"
"""The channel migration 0018's trigger notifies."""


class JobNotifications:
    """Calls ``wake`` on every notification of ``CHANNEL`` (see the module docstring)."""

    def __init__(self, conninfo: str, wake: Callable[[], None], *, retry: float = 5.0) -> None:
        self.conninfo = conninfo
        self.wake = wake
        self.retry = retry
        self.listening = asyncio.Event()
        """Set while the connection listens (tests and readiness can wait for it)."""
        self.received = 0
        """Notifications received since start."""
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Listen until cancelled; reconnect after a failure."""
        import psycopg

        failed = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=5
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if failed:
                        log.info("alert worker wake-ups: listening again")
                    failed = False
                    self.wake()  # what was queued while this connection was not listening
                    async for _ in conn.notifies():
                        self.received += 1
                        self.wake()
            except psycopg.Error as exc:
                self.listening.clear()
                if not failed:
                    log.warning("alert worker wake-ups: %s (polling meanwhile)",
                                type(exc).__name__)  # fmt: skip
                failed = True
            await asyncio.sleep(self.retry)

    def start(self) -> None:
        """Run the listener as a task on the current event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name="llmgw-alert-wakeups"
            )

    async def aclose(self) -> None:
        """Stop listening (the connection closes)."""
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task, 10.0, "the alert queue's LISTEN connection")


class JobAnnouncer:
    """Sends ``NOTIFY`` on ``CHANNEL`` after deliveries committed (see the module docstring)."""

    def __init__(self, conninfo: str, *, min_interval: float = 0.005) -> None:
        self.conninfo = conninfo
        self.min_interval = min_interval
        """Seconds at least between two notifications (they are only wake-ups)."""
        self.sent = 0
        """Notifications sent since start."""
        self._conn: object | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._failed = False

    def announce(self) -> None:
        """Jobs were committed just now: a notification follows (no wait here)."""
        if self._task is not None and not self._task.done():
            self._again = True  # the one being sent may have started before this commit
            return
        self._task = asyncio.get_running_loop().create_task(
            self._send(), name="llmgw-alert-announce"
        )

    async def _send(self) -> None:
        import psycopg

        while True:
            self._again = False
            try:
                conn: Any = self._conn
                if conn is None or conn.closed:
                    conn = self._conn = await psycopg.AsyncConnection.connect(
                        self.conninfo, autocommit=True, connect_timeout=5
                    )
                await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            except (psycopg.Error, OSError) as exc:  # the other instances' workers poll meanwhile
                if not self._failed:
                    log.warning("alert job announcements: %s (polling elsewhere meanwhile)",
                                type(exc).__name__)  # fmt: skip
                self._failed = True
                await self._drop()
                return
            self._failed = False
            self.sent += 1
            if not self._again:
                return
            await asyncio.sleep(self.min_interval)

    async def _drop(self) -> None:
        conn: Any = self._conn
        self._conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def aclose(self) -> None:
        """Send what is pending (briefly), then close the connection."""
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
        await self._drop()
