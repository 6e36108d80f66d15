"""``stop_task``: shutdown waits a bounded time for a background task, then goes on."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from llmgw.tasks import stop_task


async def test_a_task_whose_clean_up_ignores_cancels_is_left_behind_within_the_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The shape of redis-py's ``PubSub.aclose``: a clean-up that swallows every cancel until
    it is done. Before ``stop_task`` such a task held ``llmgw serve``'s shutdown forever."""
    release = asyncio.Event()

    async def feed() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            while not release.is_set():  # a teardown that outlives every cancel
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue

    task = asyncio.get_running_loop().create_task(feed())
    await asyncio.sleep(0)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="llmgw.tasks"):
        assert await stop_task(task, 0.3, "the key change feed") is False
    assert time.monotonic() - started < 2.0
    assert not task.done()
    assert "the key change feed did not stop within 0.3 s" in caplog.text
    release.set()
    await asyncio.wait({task}, timeout=2)
    assert task.cancelled() or task.done()


async def test_a_task_that_stops_is_awaited_and_its_error_not_raised() -> None:
    async def failing_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("closing failed") from None

    task = asyncio.get_running_loop().create_task(failing_on_cancel())
    await asyncio.sleep(0)
    assert await stop_task(task, 5.0, "a feed") is True
    assert task.done() and isinstance(task.exception(), RuntimeError)

    plain = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    assert await stop_task(plain, 5.0, "a sleeper") is True
    assert plain.cancelled()
