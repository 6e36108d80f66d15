"""The usage recorder seen from the event loop: events handed over in small batches.

``UsageRecorder.record`` wakes the recorder's writer thread; doing that once per request costs a
GIL hand-off to that thread per request, which shows under load on one core. ``BufferedRecorder``
collects events on the loop and hands them over every 50 ms (or every 256 events), so the writer
wakes a few times a second. Nothing waits on the database either way. ``flush`` hands over the
buffer first, so "everything recorded so far" keeps its meaning for callers in other threads.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmgw.usage.recorder import UsageEvent, UsageRecorder

__all__ = ["BufferedRecorder"]

HANDOVER_SECONDS = 0.05
HANDOVER_MAX = 256


class BufferedRecorder:
    """A ``UsageRecorder`` behind a loop-side buffer; other attributes pass through."""

    def __init__(self, inner: UsageRecorder, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self._loop = loop
        self._events: list[UsageEvent] = []
        self._timer: asyncio.TimerHandle | None = None

    def record(self, event: UsageEvent) -> None:
        """Queue one event (on the event loop); O(1), never waits on the database."""
        self._events.append(event)
        if len(self._events) >= HANDOVER_MAX:
            self.hand_over()
        elif self._timer is None:
            self._timer = self._loop.call_later(HANDOVER_SECONDS, self.hand_over)

    def hand_over(self) -> None:
        """Give the buffered events to the recorder now (on the event loop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        events, self._events = self._events, []
        for event in events:
            self.inner.record(event)

    def _hand_over_from_anywhere(self, timeout: float) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop or not self._loop.is_running():
            self.hand_over()
            return

        async def on_loop() -> None:
            self.hand_over()

        asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Everything recorded so far is in the database or the spool (blocks; not on the loop)."""
        self._hand_over_from_anywhere(timeout)
        return self.inner.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Hand over, flush and stop the recorder (blocks)."""
        self._hand_over_from_anywhere(timeout)
        self.inner.close(timeout)

    def stats(self) -> dict[str, int | float | str | None]:
        """The recorder's counters, with events still in this buffer counted as queued."""
        stats = self.inner.stats()
        queued = stats.get("queued")
        if isinstance(queued, int):
            stats["queued"] = queued + len(self._events)
        return stats

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
