"""The access-log handler: the event loop only appends a line; a thread writes them in batches.

Writing to stdout from the event loop is synchronous I/O: if whatever reads the pipe stalls, the
whole server stalls. ``BatchedStreamHandler`` keeps the loop to a list append and lets a daemon
thread write what accumulated every ``interval`` seconds (one write per batch, not per request,
and no thread wake-up per request). ``close`` (called by ``logging.shutdown`` at exit) writes the
rest. If more than ``max_pending`` lines wait, new ones are dropped and counted, rather than
growing memory without bound.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import TextIO

__all__ = ["BatchedStreamHandler", "access_sink"]


class BatchedStreamHandler(logging.Handler):
    """A stream handler that formats on the caller's thread and writes from its own thread."""

    def __init__(
        self,
        stream: TextIO | None = None,
        interval: float = 0.1,
        max_pending: int = 100_000,
    ) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stdout
        self.interval = interval
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: deque[str] = deque()  # append/popleft are atomic: no lock on the loop
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="llmgw-access-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue one formatted line (no I/O here)."""
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging must never break a request
            self.handleError(record)
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append(line)

    def enqueue(self, line: str) -> None:
        """Queue an already formatted line (the access log's fast path: no ``LogRecord``)."""
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append(line)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def _write(self) -> None:
        with self._write_lock:
            pending = self._pending
            lines = [pending.popleft() for _ in range(len(pending))]
            if not lines:
                return
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # closed or broken stdout: nothing sensible to do
                pass

    def flush(self) -> None:
        """Write everything queued so far."""
        self._write()

    def close(self) -> None:
        """Stop the writer thread and write the rest."""
        self._stop.set()
        self._write()
        super().close()


def access_sink(logger: logging.Logger) -> Callable[[str], None]:
    """Where access-log lines go: straight into a lone ``BatchedStreamHandler`` when that is the
    logger's only destination (``llmgw serve``), else ``logger.info`` (tests, custom logging)."""
    handlers = logger.handlers
    if (
        not logger.propagate
        and len(handlers) == 1
        and isinstance(handlers[0], BatchedStreamHandler)
        and logger.isEnabledFor(logging.INFO)
        and not logger.filters
    ):
        return handlers[0].enqueue
    return logger.info
