"""Stopping background tasks at shutdown within a bound.

``task.cancel()`` then ``await task`` waits as long as the task's own clean-up takes, and some
clean-ups do not end when cancelled: redis-py's ``PubSub.aclose`` shields its teardown and
swallows further cancels until it is done (a teardown stuck on its connection keeps it there),
and a ``finally`` that awaits a stuck call does the same. One such task held ``llmgw serve``'s
shutdown forever. ``stop_task`` waits a bounded time, then goes on without the task and says so.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["stop_task"]

log = logging.getLogger("llmgw.tasks")


async def stop_task(task: asyncio.Task[Any], within: float, what: str) -> bool:
    """Cancel ``task`` and wait at most ``within`` seconds for it to end; whether it did.

    A task still running then is left behind with a warning naming ``what`` (the event loop's
    close collects it); its exception, if it ended with one, is retrieved and logged at debug
    level, never raised: the caller is shutting down."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=within)
    if not done:
        log.warning(
            "%s did not stop within %.3g s of its cancellation; going on without it", what, within
        )
        return False
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("%s ended with %s", what, type(exc).__name__, exc_info=exc)
    return True
