"""What every asyncio task is waiting for, so a test that hangs fails with the awaiting stacks.

pytest-timeout's dump shows threads only: a hang on the event loop shows as the main thread in
``select`` and nothing else. ``bounded(seconds, what)`` fails the block after ``seconds`` with
each task's chain of awaits (coroutine by coroutine, down to the future it waits on), printed
to stderr at once too, in case the code that hangs also swallows the cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

__all__ = ["bounded", "tasks_report"]


def _frame_of(obj: Any) -> FrameType | None:
    for attr in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(obj, attr, None)
        if frame is not None:
            return frame  # type: ignore[no-any-return]
    return None


def _awaited(obj: Any, frame: FrameType | None) -> Any:
    for attr in ("cr_await", "gi_yieldfrom", "ag_await"):
        nxt = getattr(obj, attr, None)
        if nxt is not None:
            if _frame_of(nxt) is None and frame is not None:
                # `async with` on an asynccontextmanager: its __aenter__/__aexit__ awaits the
                # generator's asend/athrow, which hides the generator; follow self.gen instead
                gen = getattr(frame.f_locals.get("self"), "gen", None)
                if gen is not None and _frame_of(gen) is not None:
                    return gen
            return nxt
    return None


def _chain(task: asyncio.Task[Any]) -> list[str]:
    lines: list[str] = []
    obj: Any = task.get_coro()
    for _ in range(100):
        frame = _frame_of(obj)
        if frame is None:
            if obj is not None and getattr(task, "_fut_waiter", None) is None:
                lines.append(f"    awaiting {obj!r}")
            break
        code = frame.f_code
        lines.append(f'    File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
        obj = _awaited(obj, frame)
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is not None:
        lines.append(f"    waiting on {waiter!r}")
    return lines


def tasks_report() -> str:
    """Every task of the running loop with its chain of awaits."""
    out = []
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        out.append(f"  task {task.get_name()!r}:")
        out.extend(_chain(task))
    return "\n".join(out)


@contextlib.asynccontextmanager
async def bounded(seconds: float, what: str) -> AsyncIterator[None]:
    """Fail the block with every task's awaits if it takes longer than ``seconds``."""
    task = asyncio.current_task()
    assert task is not None
    report: list[str] = []

    def expire() -> None:
        report.append(tasks_report())
        print(f"\n{what} still running after {seconds} s; asyncio tasks:\n{report[0]}",
              file=sys.stderr, flush=True)  # fmt: skip
        task.cancel()

    handle = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        yield
    except asyncio.CancelledError:
        if report and task.uncancel() == 0:  # our cancel, not the runner's
            raise AssertionError(
                f"{what} did not finish within {seconds} s; asyncio tasks:\n{report[0]}"
            ) from None
        raise
    finally:
        handle.cancel()
