"""The access-log handler: the event loop only appends a line; a thread writes them in batches.

Writing to stdout from the event loop is synchronous I/O: if whatever reads the pipe stalls, the
whole server stalls. ``BatchedStreamHandler`` keeps the loop to a list append and lets a daemon
thread write what accumulated every ``interval`` seconds (one write per batch, not per request,
and no thread wake-up per request). ``close`` (called by ``logging.shutdown`` at exit) writes the
rest. If more than ``max_pending`` lines wait, new ones are dropped and counted, rather than
growing memory without bound.

Also here: ``JsonFormatter`` (``[log] format = "json"``), ``SecretFilter`` (every message and
traceback through ``redact_secrets``) and ``RotatingFile`` (``[log] file``, rotated by size,
shared by the access log's handler and the messages' handler).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from llmgw.providers.transport import redact_secrets

__all__ = [
    "BatchedStreamHandler",
    "JsonFormatter",
    "RotatingFile",
    "SecretFilter",
    "access_sink",
    "file_handler",
]


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


class JsonFormatter(logging.Formatter):
    """One JSON object per message: ``ts``, ``level``, ``logger``, ``message`` (and ``exc``)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (a traceback stays inside ``exc``)."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        return orjson.dumps(line).decode()


class SecretFilter(logging.Filter):
    """Redacts known secrets, bearer tokens, key-shaped strings and URL passwords from a record.

    The message is formatted here (``msg % args``) and the traceback rendered, so neither
    formatter sees the raw values. Known secrets: the provider keys, database and Redis URLs and
    metrics token of the running settings (``log_config`` passes them).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 8)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drop it."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep the raw template
            message = str(record.msg)
        record.msg, record.args = redact_secrets(message, self.secrets), None
        if record.exc_info:
            record.exc_text = redact_secrets(
                logging.Formatter().formatException(record.exc_info), self.secrets
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_secrets(record.exc_text, self.secrets)
        return True


class RotatingFile:
    """A text file that rotates by size: before a write would pass ``max_bytes``, ``path`` becomes
    ``path.1`` (``path.1`` -> ``path.2`` ... up to ``backups``) and a new ``path`` starts. Thread-safe;
    one per path in a process, so the access log and the messages share it."""

    _open: dict[Path, RotatingFile] = {}  # noqa: RUF012 - a per-process registry, on purpose
    _open_lock = threading.Lock()

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8", errors="surrogateescape")
        self._size = self._file.tell()

    @classmethod
    def shared(cls, path: Path, max_bytes: int, backups: int) -> RotatingFile:
        """The process's one ``RotatingFile`` for ``path``."""
        key = path.resolve()
        with cls._open_lock:
            found = cls._open.get(key)
            if found is None or found._file.closed:
                found = cls._open[key] = cls(path, max_bytes, backups)
            return found

    def write(self, text: str) -> int:
        """Append ``text``, rotating between lines so no file passes ``max_bytes`` (a batch of
        access lines is split; a single line longer than that gets a file of its own)."""
        with self._lock:
            size = len(text.encode("utf-8", "surrogateescape"))
            if self._size + size <= self.max_bytes:
                self._file.write(text)
                self._size += size
                return len(text)
            for line in text.splitlines(keepends=True):
                n = len(line.encode("utf-8", "surrogateescape"))
                if self._size and self._size + n > self.max_bytes:
                    self._rotate()
                self._file.write(line)
                self._size += n
            return len(text)

    def flush(self) -> None:
        """Flush to the operating system."""
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        """Flush and close the file (``shared`` opens a new one for the path afterwards)."""
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            self._file = self.path.open("a", encoding="utf-8", errors="surrogateescape")
        else:
            self._file = self.path.open("w", encoding="utf-8", errors="surrogateescape")
        self._size = 0


def file_handler(path: str, max_bytes: int, backups: int, batched: bool = False) -> logging.Handler:
    """A handler writing to the shared ``RotatingFile`` of ``path`` (``dictConfig`` factory):
    batched for the access log, a plain stream handler for messages."""
    stream: Any = RotatingFile.shared(Path(path), max_bytes, backups)
    if batched:
        return BatchedStreamHandler(stream)
    return logging.StreamHandler(stream)
