"""Cancelling an upstream call when its client hangs up: ``Disconnects.until`` and its sweepers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.types import Receive

from llmgw.errors import ClientDisconnected

__all__ = ["Disconnects"]

T = TypeVar("T")


class _Watch:
    """One call's disconnect watcher: the task it would cancel and, once started, the watcher
    task reading ``receive``. Delayed watchers wait in a ``_Sweeper`` until ``due``."""

    __slots__ = ("current", "due", "gone", "receive", "watcher")

    def __init__(self, receive: Receive, current: asyncio.Task[Any], due: float) -> None:
        self.receive = receive
        self.current = current
        self.due = due
        self.gone = False
        self.watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching (unless the call is already over)."""
        if not self.current.done():
            self.watcher = self.current.get_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                self.current.cancel()
                return


class _Sweeper:
    """One loop timer for every delayed watcher: a call costs a set insert and removal, not a
    timer of its own (``call_later`` + ``cancel`` cost about as much as the watcher task)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.calls: set[_Watch] = set()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, call: _Watch) -> None:
        self.calls.add(call)
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.interval, self.sweep)

    def sweep(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for call in [c for c in self.calls if c.due <= now]:
            self.calls.discard(call)
            call.start()
        if self.calls:
            self.timer = loop.call_later(self.interval, self.sweep)


class Disconnects:
    """The app's disconnect watching: ``until`` and one sweeper per delay, on the app's loop.

    The sweepers belong to the loop that runs the app; should the app move to another loop (a
    test running one app in two loops), they are dropped and made anew, as their timers died
    with the old one.
    """

    __slots__ = ("_loop", "_sweepers")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweepers: dict[float, _Sweeper] = {}

    def _sweeper(self, loop: asyncio.AbstractEventLoop, after: float) -> _Sweeper:
        if loop is not self._loop:
            self._loop, self._sweepers = loop, {}
        sweeper = self._sweepers.get(after)
        if sweeper is None:
            sweeper = self._sweepers[after] = _Sweeper(after / 2)
        return sweeper

    async def until(self, receive: Receive, aw: Awaitable[T], *, after: float = 0.0) -> T:
        """Await ``aw``, cancelling it if the client disconnects (``ClientDisconnected``).

        The disconnect watcher is a task of its own; with ``after`` > 0 it starts only once
        ``aw`` has run that long (checked every ``after / 2`` seconds by one timer per loop), so
        calls that finish sooner (most non-streaming answers) never create one, and a client that
        hangs up is noticed at most ``1.5 * after`` seconds late.
        """
        current = asyncio.current_task()
        assert current is not None
        loop = current.get_loop()
        sweeper: _Sweeper | None = None
        if after > 0:
            watch = _Watch(receive, current, loop.time() + after)
            sweeper = self._sweeper(loop, after)
            sweeper.add(watch)
        else:
            watch = _Watch(receive, current, 0.0)
            watch.start()
        try:
            return await aw
        except asyncio.CancelledError:
            if watch.gone:
                current.uncancel()
                raise ClientDisconnected("the client closed the connection") from None
            raise
        finally:
            if sweeper is not None:
                sweeper.calls.discard(watch)
            if watch.watcher is not None:
                watch.watcher.cancel()
