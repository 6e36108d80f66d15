"""Health per (provider, model): EWMA latency and error rate, the breaker state, a short history
of requests, failures and latency, and a DB writer.

The router feeds ``HealthTracker`` on the hot path (a few float operations under an uncontended
lock, no I/O). Besides the EWMAs each (provider, model) keeps ``HISTORY_BUCKETS`` buckets of
``HISTORY_SECONDS`` each (requests, failures, summed latency of successes) in preallocated
arrays: counting a request is O(1) (one clock read, an index, two or three array additions, a
bucket reset when the clock has moved on), nothing is appended, and memory per (provider, model)
is fixed (about 3 KB). ``snapshot(history=True)`` turns them into the admin API's sparkline data
and its requests per minute. ``HealthWriter`` runs in its own thread: every ``interval`` seconds
it upserts the rows that changed into ``provider_status``, so ``llmgw providers status`` and
other instances see them; a database outage only makes it log and try again next time.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.errors import LlmgwError
from llmgw.routing.breaker import BreakerRegistry
from llmgw.storage.tables import ProviderStatus, utcnow

__all__ = ["HISTORY_BUCKETS", "HISTORY_SECONDS", "HealthTracker", "HealthWriter", "error_summary"]

HISTORY_BUCKETS = 120
"""Buckets of history kept per (provider, model): ten minutes of five-second buckets."""
HISTORY_SECONDS = 5.0
"""Width of one history bucket, in seconds."""
_PER_MINUTE = int(60 / HISTORY_SECONDS)

log = logging.getLogger("llmgw.routing.health")


def error_summary(error: BaseException | str) -> str:
    """A short, secret-free description of a failure for status pages.

    ``LlmgwError`` messages are written never to hold secrets; anything else (a raw library
    exception might quote a URL) is reduced to its class name.
    """
    if isinstance(error, str):
        return error[:500]
    if isinstance(error, LlmgwError):
        return f"{type(error).__name__}: {error.message}"[:500]
    return type(error).__name__


class _History:
    """``HISTORY_BUCKETS`` time buckets in preallocated arrays; ``stamp[i]`` is the bucket
    number (seconds // ``HISTORY_SECONDS``) slot ``i`` holds, so a stale slot is reset on use."""

    __slots__ = ("failures", "latency", "requests", "stamp")

    def __init__(self) -> None:
        self.stamp = array("q", [-1]) * HISTORY_BUCKETS
        self.requests = array("q", [0]) * HISTORY_BUCKETS
        self.failures = array("q", [0]) * HISTORY_BUCKETS
        self.latency = array("d", [0.0]) * HISTORY_BUCKETS
        """Summed latency (ms) of the bucket's successes."""

    def slot(self, tick: int) -> int:
        """The index of bucket ``tick``, emptied first if it held an older bucket."""
        i = tick % HISTORY_BUCKETS
        if self.stamp[i] != tick:
            self.stamp[i] = tick
            self.requests[i] = self.failures[i] = 0
            self.latency[i] = 0.0
        return i

    def series(self, tick: int) -> list[dict[str, Any]]:
        """The buckets up to ``tick`` (the current one, still filling), oldest first."""
        out: list[dict[str, Any]] = []
        for t in range(tick - HISTORY_BUCKETS + 1, tick + 1):
            i = t % HISTORY_BUCKETS
            if self.stamp[i] != t:
                out.append({"requests": 0, "failures": 0, "latency_ms": None, "error_rate": None})
                continue
            n, bad = self.requests[i], self.failures[i]
            ok = n - bad
            out.append(
                {
                    "requests": n,
                    "failures": bad,
                    "latency_ms": round(self.latency[i] / ok, 2) if ok else None,
                    "error_rate": round(bad / n, 4) if n else None,
                }
            )
        return out

    def recent(self, tick: int, buckets: int) -> int:
        """Requests in the last ``buckets`` buckets up to ``tick``."""
        total = 0
        for t in range(tick - buckets + 1, tick + 1):
            i = t % HISTORY_BUCKETS
            if self.stamp[i] == t:
                total += self.requests[i]
        return total


@dataclass(slots=True)
class _Entry:
    latency_ms: float | None = None
    error_rate: float = 0.0
    requests: int = 0
    failures: int = 0
    last_error: str | None = None
    last_error_at: datetime | float | None = None
    last_ok_at: datetime | float | None = None
    """Times as ``time.time()`` floats on the hot path (a ``datetime`` per request costs more
    than the rest of ``record_success``), or what an injected ``now`` returned; ``snapshot``
    gives datetimes."""
    history: _History = field(default_factory=_History)


def _as_datetime(value: datetime | float | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value, UTC)


class HealthTracker:
    """In-memory health of every (provider, model) the router has seen or was told about."""

    def __init__(
        self,
        *,
        alpha: float = 0.2,
        breakers: BreakerRegistry | None = None,
        now: Callable[[], datetime] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``now`` (default: the wall clock) stamps the last success and failure; ``clock``
        (monotonic seconds; the router's) places requests in history buckets."""
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.breakers = breakers
        self._now: Callable[[], datetime | float] = time.time if now is None else now
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}

    def register(self, provider: str, model: str) -> None:
        """Make a configured (provider, model) show up as ``unknown`` before its first request."""
        with self._lock:
            self._entries.setdefault((provider, model), _Entry())

    def forget(self, provider: str, model: str) -> None:
        """Drop the entry of a (provider, model) no longer tracked."""
        with self._lock:
            self._entries.pop((provider, model), None)

    def forget_provider(self, provider: str) -> None:
        """Drop every entry of ``provider`` (a runtime-managed provider removed or disabled)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == provider]:
                del self._entries[key]

    def record_success(self, provider: str, model: str, latency: float) -> None:
        """An attempt succeeded after ``latency`` seconds (time to first chunk for streams)."""
        ms = latency * 1000.0
        alpha = self.alpha
        now = self._now()
        tick = int(self._clock() // HISTORY_SECONDS)
        with self._lock:
            e = self._entries.get((provider, model))
            if e is None:
                e = self._entries[(provider, model)] = _Entry()
            last = e.latency_ms
            e.latency_ms = ms if last is None else last + alpha * (ms - last)
            e.error_rate -= alpha * e.error_rate
            e.requests += 1
            e.last_ok_at = now
            h = e.history
            i = tick % HISTORY_BUCKETS
            if h.stamp[i] != tick:
                h.slot(tick)
            h.requests[i] += 1
            h.latency[i] += ms

    def record_failure(self, provider: str, model: str, error: BaseException | str) -> None:
        """An attempt failed in a way that is the upstream's fault."""
        summary = error_summary(error)
        tick = int(self._clock() // HISTORY_SECONDS)
        with self._lock:
            e = self._entries.get((provider, model))
            if e is None:
                e = self._entries[(provider, model)] = _Entry()
            e.error_rate += self.alpha * (1.0 - e.error_rate)
            e.requests += 1
            e.failures += 1
            e.last_error = summary
            e.last_error_at = self._now()
            h = e.history
            i = tick % HISTORY_BUCKETS
            if h.stamp[i] != tick:
                h.slot(tick)
            h.requests[i] += 1
            h.failures[i] += 1

    def _status(self, e: _Entry, state: str) -> str:
        if state in ("open", "half_open"):
            return state
        if e.requests == 0:
            return "unknown"
        if e.error_rate >= 0.5:
            return "failing"
        if e.error_rate >= 0.1:
            return "degraded"
        return "healthy"

    def snapshot(self, *, history: bool = False) -> list[dict[str, Any]]:
        """One dict per (provider, model), sorted, for ``GET /api/providers`` and the writer.

        With ``history`` (the admin API) each row also has ``in_flight`` (attempts waiting for
        the upstream's answer), ``requests_per_min`` (the last 12 buckets, the current one
        included), ``history_seconds`` and ``history``: ``HISTORY_BUCKETS`` dicts oldest first
        (``requests``, ``failures``, ``latency_ms`` mean of successes, ``error_rate``)."""
        tick = int(self._clock() // HISTORY_SECONDS)
        with self._lock:
            items = [
                (
                    k,
                    replace(e),
                    (e.history.series(tick), e.history.recent(tick, _PER_MINUTE))
                    if history
                    else None,
                )
                for k, e in self._entries.items()
            ]
        rows: list[dict[str, Any]] = []
        for (provider, model), e, hist in sorted(items, key=lambda item: item[0]):
            br = self.breakers.find(provider, model) if self.breakers is not None else None
            state = br.state if br is not None else "closed"
            row: dict[str, Any] = {
                "provider": provider,
                "model": model,
                "status": self._status(e, state),
                "breaker": state,
                "retry_after": round(br.retry_after(), 3) if br is not None else 0.0,
                "latency_ms": None if e.latency_ms is None else round(e.latency_ms, 2),
                "error_rate": round(e.error_rate, 4),
                "requests": e.requests,
                "failures": e.failures,
                "last_error": e.last_error,
                "last_error_at": _as_datetime(e.last_error_at),
                "last_ok_at": _as_datetime(e.last_ok_at),
            }
            if hist is not None:
                row["in_flight"] = br.in_flight if br is not None else 0
                row["requests_per_min"] = hist[1]
                row["history_seconds"] = HISTORY_SECONDS
                row["history"] = hist[0]
            rows.append(row)
        return rows


def _upsert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    table = ProviderStatus.__table__  # type: ignore[attr-defined]
    dialect = engine.dialect.name
    # Both dialects spell the upsert the same way (ON CONFLICT ... DO UPDATE); only the one in
    # use is imported (the PostgreSQL dialect is 30 ms of imports a SQLite gateway never uses).
    stmt: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.provider, table.c.model],
        set_={
            c: stmt.excluded[c]
            for c in ("status", "latency_ms", "error_rate", "last_error", "updated_at")
        },
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)


class HealthWriter:
    """A daemon thread that upserts changed health rows into ``provider_status`` periodically."""

    def __init__(
        self,
        engine: Engine,
        tracker: HealthTracker,
        *,
        interval: float = 5.0,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.tracker = tracker
        self.interval = interval
        self._now = now
        self._written: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.writes = 0

    def write_once(self) -> int:
        """Upsert the rows that changed since the last successful write; returns how many."""
        changed: list[dict[str, Any]] = []
        for r in self.tracker.snapshot():
            key = (r["provider"], r["model"])
            sig = (r["status"], r["latency_ms"], r["error_rate"], r["last_error"])
            if self._written.get(key) != sig:
                changed.append(
                    {
                        "provider": r["provider"][:64],
                        "model": r["model"][:200],
                        "status": r["status"],
                        "latency_ms": r["latency_ms"],
                        "error_rate": r["error_rate"],
                        "last_error": r["last_error"],
                        "updated_at": self._now(),
                        "_sig": sig,
                    }
                )
        if not changed:
            return 0
        _upsert(self.engine, [{k: v for k, v in c.items() if k != "_sig"} for c in changed])
        for c in changed:
            self._written[(c["provider"], c["model"])] = c["_sig"]
        self.writes += 1
        return len(changed)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._safe_write()

    def _safe_write(self) -> None:
        try:
            self.write_once()
            self.last_error = None
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            reason = type(getattr(exc, "orig", None) or exc).__name__
            if self.last_error != reason:
                log.warning("provider_status write failed (%s); will retry", reason)
            self.last_error = reason

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="llmgw-health-writer", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and make one last write."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._safe_write()
