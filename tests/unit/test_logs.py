"""The log handlers of ``llmgw serve`` (server/logs.py): what an operator reads in stdout and in
``[log] file``: batched access lines, JSON messages, secrets redacted, files rotated by size."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import orjson

from llmgw.server.logs import (
    BatchedStreamHandler,
    JsonFormatter,
    RotatingFile,
    SecretFilter,
    access_sink,
    file_handler,
)


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("upstream said: Bearer abcdef123456 refused")
        except RuntimeError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("llmgw.test", logging.WARNING, __file__, 1, msg, args, exc_info)


class _Broken(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError("broken pipe")


def test_access_lines_arrive_in_order_in_one_write_per_batch() -> None:
    out = io.StringIO()
    writes: list[str] = []
    real_write = out.write

    def counting_write(s: str) -> int:
        writes.append(s)
        return real_write(s)

    out.write = counting_write  # type: ignore[method-assign]
    handler = BatchedStreamHandler(out, interval=3600)  # the thread never wakes in this test
    for i in range(5):
        handler.enqueue(f"line {i}")
    assert out.getvalue() == ""  # nothing is written on the caller's thread
    handler.flush()
    assert out.getvalue().splitlines() == [f"line {i}" for i in range(5)]
    assert len(writes) == 1
    handler.flush()  # nothing pending: no empty write
    assert len(writes) == 1
    handler.close()


def test_the_writer_thread_writes_without_an_explicit_flush() -> None:
    out = io.StringIO()
    handler = BatchedStreamHandler(out, interval=0.01)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.emit(_record("hello %s", "world"))
    for _ in range(500):
        if out.getvalue():
            break
        threading.Event().wait(0.01)
    handler.close()
    assert out.getvalue() == "WARNING hello world\n"


def test_lines_beyond_max_pending_are_dropped_and_counted_not_buffered() -> None:
    out = io.StringIO()
    handler = BatchedStreamHandler(out, interval=3600, max_pending=3)
    for i in range(5):
        handler.enqueue(f"a{i}")
    handler.emit(_record("b"))
    assert handler.dropped == 3
    handler.close()  # close writes what was queued
    assert out.getvalue().splitlines() == ["a0", "a1", "a2"]


def test_a_broken_stdout_or_a_bad_format_never_raises_into_the_request() -> None:
    handler = BatchedStreamHandler(_Broken(), interval=3600)
    handler.enqueue("x")
    handler.flush()  # the OSError is swallowed
    errors: list[logging.LogRecord] = []
    handler.handleError = errors.append  # type: ignore[method-assign,assignment]
    handler.emit(_record("%d", "not a number"))
    assert len(errors) == 1
    handler.close()


def test_access_sink_takes_the_fast_path_only_for_a_lone_batched_handler() -> None:
    logger = logging.getLogger("llmgw.test.access_sink")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = BatchedStreamHandler(io.StringIO(), interval=3600)
    logger.addHandler(handler)
    try:
        assert access_sink(logger) == handler.enqueue
        logger.propagate = True  # e.g. pytest's caplog: lines must reach the root logger
        assert access_sink(logger) == logger.info
        logger.propagate = False
        logger.setLevel(logging.WARNING)  # access log switched off: no fast path writing anyway
        assert access_sink(logger) == logger.info
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_json_messages_are_one_object_per_line_with_the_traceback_inside() -> None:
    formatter = JsonFormatter()
    line = formatter.format(_record("provider %s is down", "gigachat", exc=True))
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc["level"] == "warning"
    assert doc["logger"] == "llmgw.test"
    assert doc["message"] == "provider gigachat is down"
    assert doc["ts"].endswith("+00:00")
    assert "RuntimeError" in doc["exc"]
    assert "exc" not in orjson.loads(formatter.format(_record("plain")))


def test_known_secrets_and_tokens_never_reach_a_log_line() -> None:
    """SEC: secrets never appear in logs (messages and tracebacks alike)."""
    known = "s3cr3t-provider-key-value"
    secret_filter = SecretFilter([known, "short"])  # short values are not treated as secrets
    record = _record(
        "calling %s with %s via postgresql://llmgw:hunter22@db/llmgw",
        "https://api",
        known,
        exc=True,
    )
    assert secret_filter.filter(record) is True
    text = JsonFormatter().format(record)
    assert known not in text
    assert "hunter22" not in text
    assert "abcdef123456" not in text  # the bearer token inside the traceback
    assert "[redacted]" in text
    assert "calling https://api with [redacted]" in record.getMessage()


def test_a_bad_format_string_is_kept_raw_and_still_redacted() -> None:
    record = _record("token %d sk-abcdefghijkl", "x")
    SecretFilter().filter(record)
    assert record.getMessage() == "token %d [redacted]"
    rendered = _record("already rendered")
    rendered.exc_text = "Traceback: Bearer zzzzzzzzzzzz"
    SecretFilter().filter(rendered)
    assert rendered.exc_text == "Traceback: Bearer [redacted]"


def test_the_log_file_rotates_by_size_and_keeps_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "llmgw.log"
    log = RotatingFile(path, max_bytes=20, backups=2)
    for i in range(6):
        log.write(f"line-{i:02d}\n")  # 8 bytes each: two lines fit in a file
    log.close()
    assert path.read_text() == "line-04\nline-05\n"
    assert (tmp_path / "logs" / "llmgw.log.1").read_text() == "line-02\nline-03\n"
    assert (tmp_path / "logs" / "llmgw.log.2").read_text() == "line-00\nline-01\n"
    assert not (tmp_path / "logs" / "llmgw.log.3").exists()


def test_a_batch_is_split_between_lines_when_it_crosses_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = RotatingFile(path, max_bytes=20, backups=1)
    log.write("a" * 9 + "\n" + "b" * 9 + "\n" + "c" * 9 + "\n")
    log.close()
    assert path.read_text() == "c" * 9 + "\n"
    assert (tmp_path / "access.log.1").read_text() == "a" * 9 + "\n" + "b" * 9 + "\n"


def test_without_backups_the_file_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "llmgw.log"
    log = RotatingFile(path, max_bytes=10, backups=0)
    log.write("0123456789")
    log.write("abc\n")
    log.close()
    log.flush()  # after close: a no-op, not an error
    assert path.read_text() == "abc\n"
    assert not (tmp_path / "llmgw.log.1").exists()


def test_appending_resumes_at_the_existing_size(tmp_path: Path) -> None:
    path = tmp_path / "llmgw.log"
    path.write_text("x" * 15)
    log = RotatingFile(path, max_bytes=20, backups=1)
    log.write("y" * 10)
    log.close()
    assert (tmp_path / "llmgw.log.1").read_text() == "x" * 15
    assert path.read_text() == "y" * 10


def test_access_log_and_messages_share_one_rotating_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    access = file_handler(str(path), 1_000_000, 1, batched=True)
    messages = file_handler(str(path), 1_000_000, 1)
    assert isinstance(access, BatchedStreamHandler)
    assert isinstance(messages, logging.StreamHandler)
    assert access.stream is messages.stream
    messages.setFormatter(logging.Formatter("%(message)s"))
    messages.emit(_record("started"))
    assert isinstance(access, BatchedStreamHandler)
    access.enqueue("GET /healthz 200")
    access.close()
    messages.flush()
    assert path.read_text().splitlines() == ["started", "GET /healthz 200"]
    assert RotatingFile.shared(path, 1, 1) is access.stream
    access.stream.close()
    reopened = RotatingFile.shared(path, 1_000_000, 1)  # a closed file is opened again
    assert reopened is not access.stream
    reopened.close()
