"""A circuit breaker per (provider, model): closed, open (fail fast), half-open (bounded probes).

State machine::

    closed --K consecutive failures, or error rate >= R over the window--> open
    open --cooldown elapsed--> half_open          (checked lazily on the next ``acquire``)
    half_open --a probe succeeds--> closed
    half_open --a probe fails--> open, with the cooldown doubled (capped at ``max_cooldown``)

Callers ask ``acquire()`` before an attempt and then report exactly one of ``record_success()``,
``record_failure()`` or ``release()`` (no verdict: client gone, the client's own 4xx). In half-open
at most ``half_open_probes`` attempts are in flight; everything else fails fast. The clock is
injectable (a monotonic ``() -> float`` in seconds) so tests drive time by hand.

All methods run on one event loop; ``snapshot`` may be read from another thread (plain reads of
immutable values under the GIL, good enough for a status page).

A listener (``BreakerRegistry.listen``) hears two transitions: ``"open"`` when a closed circuit
opens and ``"closed"`` when a probe closes it again (a failed probe re-opening a half-open
circuit is the same outage, not a new one). It is called on the event loop inside
``record_failure``/``record_success`` and must only hand the fact on (the alert history queues
it and stores it off the request path); a listener that raises is ignored.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from llmgw.errors import Unavailable

__all__ = [
    "BreakerConfig",
    "BreakerListener",
    "BreakerRegistry",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "Clock",
]

BreakerState = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]
BreakerListener = Callable[["CircuitBreaker", Literal["open", "closed"]], None]


class CircuitOpen(Unavailable):
    """Every candidate's circuit is open; ``retry_after`` says when a probe will be let through."""

    code = "circuit_open"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds and timings of every breaker (``[routing]`` in the config)."""

    failure_threshold: int = 5
    """Consecutive failures that open the circuit."""
    error_rate_threshold: float = 0.5
    """Failure ratio over ``window`` that opens the circuit (with at least ``min_requests``)."""
    window: float = 30.0
    """Seconds of outcomes the error rate looks at."""
    min_requests: int = 20
    """Outcomes needed in the window before the error rate can open the circuit."""
    cooldown: float = 30.0
    """Seconds the circuit stays open before the first half-open probe."""
    max_cooldown: float = 300.0
    """Upper bound of the cooldown, which doubles each time a probe fails."""
    half_open_probes: int = 1
    """Attempts let through at once while half-open."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_probes < 1 or self.min_requests < 1:
            raise ValueError("failure_threshold, half_open_probes and min_requests must be >= 1")
        if not 0 < self.error_rate_threshold <= 1:
            raise ValueError("error_rate_threshold must be in (0, 1]")
        if self.window <= 0 or self.cooldown < 0 or self.max_cooldown < self.cooldown:
            raise ValueError("window must be > 0 and 0 <= cooldown <= max_cooldown")


_BUCKETS = 10


class _Window:
    """Successes and failures over the last ``span`` seconds, in ``_BUCKETS`` time buckets."""

    __slots__ = ("_ok", "_bad", "_stamp", "_width")

    def __init__(self, span: float) -> None:
        self._width = span / _BUCKETS
        self._ok = [0] * _BUCKETS
        self._bad = [0] * _BUCKETS
        self._stamp = [-1] * _BUCKETS

    def _slot(self, now: float) -> int:
        tick = int(now / self._width)
        i = tick % _BUCKETS
        if self._stamp[i] != tick:
            self._stamp[i], self._ok[i], self._bad[i] = tick, 0, 0
        return i

    def add(self, now: float, ok: bool) -> None:
        i = self._slot(now)
        if ok:
            self._ok[i] += 1
        else:
            self._bad[i] += 1

    def counts(self, now: float) -> tuple[int, int]:
        """(total, failures) in the window ending at ``now``."""
        oldest = int(now / self._width) - _BUCKETS + 1
        total = bad = 0
        for i in range(_BUCKETS):
            if self._stamp[i] >= oldest:
                total += self._ok[i] + self._bad[i]
                bad += self._bad[i]
        return total, bad

    def clear(self) -> None:
        self._stamp = [-1] * _BUCKETS


class CircuitBreaker:
    """The breaker of one (provider, model)."""

    def __init__(
        self, key: tuple[str, str], config: BreakerConfig, clock: Clock = time.monotonic
    ) -> None:
        self.key = key
        self.config = config
        self._clock = clock
        self._state: BreakerState = "closed"
        self._consecutive = 0
        self._window = _Window(config.window)
        self._opened_at = 0.0
        self._cooldown = config.cooldown
        self._probes = 0
        self.opened_count = 0
        """How many times this circuit has opened (for metrics and status)."""
        self.in_flight = 0
        """Attempts out to this upstream now, waiting for its answer (a stream: its first chunk);
        kept by the router around each attempt, read by status pages."""
        self.listener: BreakerListener | None = None
        """Told when the circuit opens from closed and when a probe closes it (module docstring)."""

    @property
    def state(self) -> BreakerState:
        """The current state; an open circuit whose cooldown has passed reads as half-open.

        A pure read (safe from the health writer's thread); ``acquire`` makes the transition.
        """
        if self._state == "open" and self._clock() - self._opened_at >= self._cooldown:
            return "half_open"
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def acquire(self) -> bool:
        """May an attempt go out now? In half-open this takes one of the probe slots."""
        state = self.state
        if state == "half_open" and self._state == "open":
            self._state = "half_open"
            self._probes = 0
        if state == "closed":
            return True
        if state == "half_open" and self._probes < self.config.half_open_probes:
            self._probes += 1
            return True
        return False

    def record_success(self) -> None:
        """The attempt succeeded: reset the failure run; a successful probe closes the circuit."""
        now = self._clock()
        if self._state == "half_open":
            self._state = "closed"
            self._probes = 0
            self._cooldown = self.config.cooldown
            self._window.clear()
            if self.listener is not None:
                self._tell("closed")
        self._consecutive = 0
        self._window.add(now, True)

    def record_failure(self) -> None:
        """The attempt failed in a way that is the upstream's fault (5xx, timeout, 429, refused)."""
        now = self._clock()
        if self._state == "half_open":
            self._cooldown = min(self._cooldown * 2, self.config.max_cooldown)
            self._open(now)
            return
        if self._state == "open":  # a straggler that started before the circuit opened
            return
        self._consecutive += 1
        self._window.add(now, False)
        if self._consecutive >= self.config.failure_threshold:
            self._open(now)
        else:
            total, bad = self._window.counts(now)
            if total < self.config.min_requests or bad / total < self.config.error_rate_threshold:
                return
            self._open(now)
        if self.listener is not None:
            self._tell("open")

    def _tell(self, change: Literal["open", "closed"]) -> None:
        listener = self.listener
        if listener is not None:
            with contextlib.suppress(Exception):  # a listener must never break routing
                listener(self, change)

    def release(self) -> None:
        """The attempt ended without a verdict on the upstream: give back a probe slot."""
        if self._state == "half_open" and self._probes > 0:
            self._probes -= 1

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._probes = 0
        self._consecutive = 0
        self._window.clear()
        self.opened_count += 1

    def snapshot(self) -> dict[str, object]:
        """State, failure run and time until the next probe, for status pages."""
        return {
            "state": self.state,
            "consecutive_failures": self._consecutive,
            "retry_after": round(self.retry_after(), 3),
            "opened_count": self.opened_count,
        }


class BreakerRegistry:
    """One breaker per (provider, model), created on first use with the shared config."""

    def __init__(self, config: BreakerConfig | None = None, clock: Clock = time.monotonic) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._listener: BreakerListener | None = None

    def listen(self, listener: BreakerListener | None) -> None:
        """Tell ``listener`` the open/close transitions of every breaker, present and future."""
        self._listener = listener
        for b in self._breakers.values():
            b.listener = listener

    def get(self, provider: str, model: str) -> CircuitBreaker:
        """The breaker of ``provider``/``model``."""
        key = (provider, model)
        b = self._breakers.get(key)
        if b is None:
            b = self._breakers[key] = CircuitBreaker(key, self.config, self._clock)
            b.listener = self._listener
        return b

    def forget(self, provider: str, model: str) -> None:
        """Drop the breaker of ``provider``/``model`` (a name no longer tracked)."""
        self._breakers.pop((provider, model), None)

    def __len__(self) -> int:
        return len(self._breakers)

    def find(self, provider: str, model: str) -> CircuitBreaker | None:
        """The breaker if one exists (no creation), e.g. for a status page."""
        return self._breakers.get((provider, model))

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))
