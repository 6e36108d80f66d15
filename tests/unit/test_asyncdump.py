"""``tests.asyncdump.bounded``: a hung block fails with the awaits of every task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.asyncdump import bounded


@contextlib.asynccontextmanager
async def _lifespan(never: asyncio.Event) -> AsyncIterator[None]:
    helper = asyncio.get_running_loop().create_task(never.wait(), name="stuck-helper")
    try:
        yield
    finally:
        await helper  # a shutdown waiting for a task that waits for nothing that comes


async def test_a_hung_shutdown_fails_with_the_awaiting_stacks() -> None:
    never = asyncio.Event()
    with pytest.raises(AssertionError) as caught:
        async with bounded(0.2, "the app"), _lifespan(never):
            await asyncio.sleep(0)
    text = str(caught.value)
    assert "the app did not finish within 0.2 s" in text
    assert "in _lifespan" in text  # followed into the asynccontextmanager's generator
    assert "task 'stuck-helper'" in text and "in wait" in text
    never.set()
    await asyncio.sleep(0)


async def test_a_block_that_finishes_in_time_is_left_alone() -> None:
    async with bounded(5, "quick"):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)
