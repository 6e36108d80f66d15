"""Wake-ups of the alert worker from PostgreSQL (``LISTEN llmgw_alert_jobs``).

Migration 0018's trigger on ``alert_jobs`` sends a notification when jobs are queued, by any
instance or command; this listener, one connection per ``llmgw serve``, wakes the worker of its
process, so an occurrence stored by another instance is classified at once rather than at the
worker's next poll (``alerts.poll_interval``). The poll stays: it is the fallback while the
listening connection is down (it reconnects every ``retry`` seconds, and wakes the worker after
each connect, for what was queued meanwhile) and what SQLite deployments use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

__all__ = ["CHANNEL", "JobNotifications"]

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
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
