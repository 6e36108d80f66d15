"""Cancelling an upstream call when its client hangs up: ``until_disconnect`` and its sweeper."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.types import Receive

from llmgw.errors import ClientDisconnected

__all__ = ["until_disconnect"]

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
        self.interval = interval  # no reference to the loop: it keys the registry below
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


# Sweepers per loop, keyed by id(loop) next to a weak reference that tells a live loop from a
# dead one with a recycled id (a WeakKeyDictionary look-up makes a weakref per call: 0.3 µs).
_sweepers: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], dict[float, _Sweeper]]] = {}


def _sweeper(loop: asyncio.AbstractEventLoop, after: float) -> _Sweeper:
    entry = _sweepers.get(id(loop))
    if entry is None or entry[0]() is not loop:
        key = id(loop)

        def forget(ref: weakref.ref[asyncio.AbstractEventLoop]) -> None:
            if _sweepers.get(key, (None,))[0] is ref:
                del _sweepers[key]

        entry = _sweepers[key] = (weakref.ref(loop, forget), {})
    per_loop = entry[1]
    sweeper = per_loop.get(after)
    if sweeper is None:
        sweeper = per_loop[after] = _Sweeper(after / 2)
    return sweeper


async def until_disconnect(receive: Receive, aw: Awaitable[T], *, after: float = 0.0) -> T:
    """Await ``aw``, cancelling it if the client disconnects (``ClientDisconnected``).

    The disconnect watcher is a task of its own; with ``after`` > 0 it starts only once ``aw``
    has run that long (checked every ``after / 2`` seconds by one timer per loop), so calls that
    finish sooner (most non-streaming answers) never create one, and a client that hangs up is
    noticed at most ``1.5 * after`` seconds late.
    """
    current = asyncio.current_task()
    assert current is not None
    loop = current.get_loop()
    sweeper: _Sweeper | None = None
    if after > 0:
        watch = _Watch(receive, current, loop.time() + after)
        sweeper = _sweeper(loop, after)
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
