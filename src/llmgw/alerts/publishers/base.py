"""What every publisher shares: the ``Publisher`` protocol, how an HTTP answer maps to an
``Outcome`` (retry, give up, disable), jittered backoff and the per-target rate limit.

The retry policy (docs/alerts.md#retries): 2xx is sent; 429 and 5xx, timeouts and network
errors are retried (after ``Retry-After`` when given, else a jittered doubling backoff);
400/401/403/422 and any other 4xx are given up at once; 404 and 410 (the endpoint, webhook or
channel is gone) give up and disable the target until its configuration changes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from llmgw.config import PublishTarget

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Action",
    "Outcome",
    "Publisher",
    "TokenBucket",
    "jittered",
    "network_outcome",
    "normal_severity",
    "outcome_of",
    "retry_after",
    "severity_at_least",
    "short_error",
]

Action = Literal["fire", "resolve"]
Kind = Literal["sent", "retry", "failed", "disable", "absent"]
"""``absent``: only from ``find``: the target was asked and has no such publication."""

_SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one request (or one publication's requests) to a target."""

    kind: Kind
    status: int | None = None
    external_id: str | None = None
    """PagerDuty ``dedup_key``, Rootly alert ``id``, Slack ``channel:ts`` (``None``: none)."""
    error: str | None = None
    retry_after: float | None = None
    """Seconds the target asked us to wait (``Retry-After``)."""


class Publisher(Protocol):
    """Sends an occurrence's fire and resolve to one target."""

    target: PublishTarget
    idempotent: frozenset[str]
    """The actions for which re-sending a request whose answer was lost cannot publish twice (the target
    deduplicates by our key); False: ``find`` decides, else the publication is left ``unknown``."""

    async def fire(self, alert: dict[str, Any], view: dict[str, Any], key: str) -> Outcome:
        """Publish a firing occurrence; ``key`` is its deduplication key."""
        ...

    async def resolve(
        self, alert: dict[str, Any], view: dict[str, Any], key: str, fired: str | None
    ) -> Outcome:
        """Publish its resolution; ``fired`` is the fire's external id (``None`` if unknown)."""
        ...

    async def find(self, action: Action, key: str, fired: str | None) -> Outcome | None:
        """After a crash mid-request: the publication if the target already has it, ``absent``
        if the target was asked and has none, ``None`` if it cannot be asked."""
        ...


def retry_after(resp: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta form; an HTTP date is ignored), capped at an hour."""
    raw = resp.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return min(max(float(raw), 0.0), 3600.0)
    except ValueError:
        return None


def short_error(resp: httpx.Response, detail: str | None = None) -> str:
    """``HTTP 400: <first 200 characters of the body>``: what the target said, never our secret."""
    text = detail if detail is not None else resp.text
    text = " ".join(text.split())[:200]
    return f"HTTP {resp.status_code}: {text}" if text else f"HTTP {resp.status_code}"


def outcome_of(resp: httpx.Response, external_id: str | None = None) -> Outcome:
    """The retry policy applied to an HTTP answer (see the module docstring)."""
    code = resp.status_code
    if 200 <= code < 300:
        return Outcome("sent", code, external_id)
    if code == 429 or code >= 500:
        return Outcome("retry", code, error=short_error(resp), retry_after=retry_after(resp))
    if code in (404, 410):
        return Outcome("disable", code, error=short_error(resp))
    return Outcome("failed", code, error=short_error(resp))


def network_outcome(exc: Exception) -> Outcome:
    """A timeout or transport error: retried. Only the error's class is kept (an URL can be a
    credential: Slack webhooks)."""
    import httpx  # loaded already: the exception came from it

    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "network error"
    return Outcome("retry", None, error=f"{kind}: {type(exc).__name__}")


def jittered(
    base: float, cap: float, attempts: int, rng: Callable[[], float] = random.random
) -> float:
    """Full-jitter exponential backoff for attempt ``attempts + 1``: in [d/2, d], d = base*2^(n-1)."""
    d = min(base * 2.0 ** max(0, attempts - 1), cap)
    return d / 2 + rng() * d / 2


def severity_at_least(severity: str | None, minimum: str | None) -> bool:
    """Whether ``severity`` (normalised) reaches ``minimum``; no minimum lets everything through."""
    if minimum is None:
        return True
    return _SEVERITY_RANK.get(normal_severity(severity), 0) >= _SEVERITY_RANK[minimum]


def normal_severity(severity: str | None) -> str:
    """A label's severity as PagerDuty's four: critical, error, warning, info (reference §2)."""
    s = (severity or "").lower()
    if s in ("critical", "fatal", "page", "p1", "sev1"):
        return "critical"
    if s in ("error", "high", "major", "p2", "sev2"):
        return "error"
    if s in ("warning", "warn", "medium", "minor", "p3", "sev3"):
        return "warning"
    return "info"


class TokenBucket:
    """A per-target rate limit in this process: ``rate`` requests per second, ``burst`` at once."""

    def __init__(
        self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self.tokens = self.burst
        self.stamp = clock()
        self.lock = asyncio.Lock()

    def reserve(self) -> float:
        """Take a token; the seconds to wait before using it (0: now)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def give_back(self) -> None:
        """Undo a ``reserve`` whose request was not made."""
        self.tokens = min(self.burst, self.tokens + 1.0)
