"""Health tracking (EWMA latency, error rate, breaker state) and the provider_status writer."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.errors import UpstreamError
from llmgw.routing.breaker import BreakerConfig, BreakerRegistry
from llmgw.routing.health import HISTORY_BUCKETS, HealthTracker, HealthWriter, error_summary


def rows(engine: Engine) -> dict[tuple[str, str], dict[str, object]]:
    with engine.connect() as conn:
        res = conn.execute(
            sa.text(
                "SELECT provider, model, status, latency_ms, error_rate, last_error FROM provider_status"
            )
        )
        return {(r.provider, r.model): dict(r._mapping) for r in res}


def test_ewma_latency_and_error_rate() -> None:
    h = HealthTracker(alpha=0.5)
    h.register("giga", "GigaChat")
    assert h.snapshot()[0]["status"] == "unknown"
    h.record_success("giga", "GigaChat", 0.100)
    h.record_success("giga", "GigaChat", 0.300)
    snap = h.snapshot()[0]
    assert snap["latency_ms"] == pytest.approx(200.0)
    assert snap["status"] == "healthy" and snap["error_rate"] == 0
    h.record_failure("giga", "GigaChat", UpstreamError("upstream answered 500", provider="giga"))
    snap = h.snapshot()[0]
    assert snap["error_rate"] == pytest.approx(0.5)
    assert snap["status"] == "failing"
    assert snap["last_error"] == "UpstreamError: upstream answered 500"
    h.record_success("giga", "GigaChat", 0.2)
    assert h.snapshot()[0]["status"] == "degraded"  # 0.25


def test_breaker_state_shows_in_the_snapshot() -> None:
    reg = BreakerRegistry(BreakerConfig(failure_threshold=1))
    h = HealthTracker(breakers=reg)
    reg.get("y", "lite").acquire()
    reg.get("y", "lite").record_failure()
    h.record_failure("y", "lite", "boom")
    snap = h.snapshot()[0]
    assert snap["status"] == "open" and snap["breaker"] == "open" and snap["retry_after"] > 0


def test_error_summary_never_quotes_foreign_exceptions() -> None:
    exc = RuntimeError("https://api.example/v1?key=sk-secret")
    assert error_summary(exc) == "RuntimeError"


def test_writer_upserts_only_changed_rows(engine: Engine) -> None:
    h = HealthTracker()
    h.register("giga", "GigaChat")
    h.record_success("y", "lite", 0.05)
    w = HealthWriter(engine, h, interval=60)
    assert w.write_once() == 2
    got = rows(engine)
    assert got[("giga", "GigaChat")]["status"] == "unknown"
    assert got[("y", "lite")]["status"] == "healthy"
    assert got[("y", "lite")]["latency_ms"] == pytest.approx(50.0)
    assert w.write_once() == 0  # nothing changed
    h.record_failure("y", "lite", UpstreamError("timeout", provider="y"))
    assert w.write_once() == 1
    assert rows(engine)[("y", "lite")]["last_error"] == "UpstreamError: timeout"
    assert len(rows(engine)) == 2


def test_writer_thread_writes_periodically_and_on_stop(engine: Engine) -> None:
    h = HealthTracker()
    w = HealthWriter(engine, h, interval=0.05)
    w.start()
    h.record_success("a", "m", 0.01)
    for _ in range(100):
        if rows(engine):
            break
        time.sleep(0.02)
    assert ("a", "m") in rows(engine)
    h.record_failure("a", "m", "x")
    w.stop()
    assert rows(engine)[("a", "m")]["last_error"] == "x"


def test_writer_survives_a_broken_database() -> None:
    eng = sa.create_engine("sqlite:///:memory:")  # no provider_status table: every write fails
    h = HealthTracker()
    h.record_success("a", "m", 0.01)
    w = HealthWriter(eng, h, interval=60)
    w.stop()  # the final write fails quietly
    assert w.last_error == "OperationalError"


def test_history_buckets_requests_failures_and_latency_on_the_injected_clock(
    fake_clock: Any,
) -> None:
    """Five-second buckets, oldest first, the current one last; requests per minute counts the
    last twelve; buckets the clock has left behind read as empty, and the series stays bounded."""
    h = HealthTracker(clock=fake_clock)
    h.register("openai", "gpt")
    empty = h.snapshot(history=True)[0]
    assert len(empty["history"]) == HISTORY_BUCKETS and empty["history_seconds"] == 5.0
    assert empty["requests_per_min"] == 0 and empty["in_flight"] == 0
    h.record_success("openai", "gpt", 0.100)
    h.record_success("openai", "gpt", 0.300)
    fake_clock.advance(5)
    h.record_failure("openai", "gpt", "boom")
    row = h.snapshot(history=True)[0]
    assert row["history"][-2:] == [
        {"requests": 2, "failures": 0, "latency_ms": 200.0, "error_rate": 0.0},
        {"requests": 1, "failures": 1, "latency_ms": None, "error_rate": 1.0},
    ]
    assert row["requests_per_min"] == 3
    assert "history" not in h.snapshot()[0]  # /api/providers and the writer stay as they were
    fake_clock.advance(55)  # the first bucket is now more than a minute old
    assert h.snapshot(history=True)[0]["requests_per_min"] == 1
    fake_clock.advance(HISTORY_BUCKETS * 5)  # ten minutes later everything has scrolled out
    assert h.snapshot(history=True)[0]["requests_per_min"] == 0
    for _ in range(1000):  # 1000 s at one request a second: the ring wraps round and round
        h.record_success("openai", "gpt", 0.05)
        fake_clock.advance(1)
    row = h.snapshot(history=True)[0]
    # The current bucket has just begun (empty); the 119 before it hold 5 requests each.
    assert len(row["history"]) == HISTORY_BUCKETS and row["history"][-1]["requests"] == 0
    assert [b["requests"] for b in row["history"][:-1]] == [5] * (HISTORY_BUCKETS - 1)
    assert row["requests_per_min"] == 55


def test_in_flight_counts_attempts_waiting_for_the_upstream() -> None:
    reg = BreakerRegistry()
    h = HealthTracker(breakers=reg)
    h.register("a", "m")
    reg.get("a", "m").in_flight = 2
    assert h.snapshot(history=True)[0]["in_flight"] == 2
