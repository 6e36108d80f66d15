"""Retries: exponential backoff with full jitter, inside a retry budget per provider.

The budget follows Envoy's retry budget: over a sliding window, retries to one provider may be at
most ``ratio`` (20 %) of the requests sent to it, but never fewer than ``min_per_second`` per
second, so a provider that is down sees at most about ``requests x 1.2`` attempts instead of
``requests x (1 + max_retries)``. Moving on to the next candidate of an alias is a fallback, not a
retry: it goes to another upstream and is bounded by the candidate list.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RetryBudget", "RetryPolicy", "full_jitter"]


def full_jitter(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): uniform in [0, min(cap, base*2^(n-1))]."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(0.0, ceiling)


class RetryBudget:
    """Requests and retries over a sliding window, in one-second buckets."""

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 0.5,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= ratio <= 10 or min_per_second < 0 or window < 1:
            raise ValueError("ratio in [0, 10], min_per_second >= 0, window >= 1 s")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self._n = int(window)
        self._clock = clock
        self._stamp = [-1] * self._n
        self._requests = [0] * self._n
        self._retries = [0] * self._n

    def _slot(self) -> int:
        tick = int(self._clock())
        i = tick % self._n
        if self._stamp[i] != tick:
            self._stamp[i], self._requests[i], self._retries[i] = tick, 0, 0
        return i

    def _sums(self) -> tuple[int, int]:
        oldest = int(self._clock()) - self._n + 1
        req = ret = 0
        for i in range(self._n):
            if self._stamp[i] >= oldest:
                req += self._requests[i]
                ret += self._retries[i]
        return req, ret

    def record_request(self) -> None:
        """A first attempt went to the provider."""
        self._requests[self._slot()] += 1

    def allowed(self) -> int:
        """Retries the window allows in total right now."""
        req, _ = self._sums()
        return max(int(self.ratio * req), int(self.min_per_second * self._n))

    def try_spend(self) -> bool:
        """Take one retry from the budget; ``False`` when it is used up."""
        i = self._slot()
        _, ret = self._sums()
        if ret + 1 > self.allowed():
            return False
        self._retries[i] += 1
        return True

    def stats(self) -> dict[str, int]:
        """Requests and retries in the window, and the current allowance."""
        req, ret = self._sums()
        return {"requests": req, "retries": ret, "allowed": self.allowed()}


@dataclass
class RetryPolicy:
    """How many retries a request may make, how long to wait, and the budgets that bound them."""

    max_retries: int = 2
    """Retries per request after every candidate has been tried once (0 disables retries)."""
    backoff_base: float = 0.1
    """Seconds: the ceiling of the first backoff; it doubles each retry."""
    backoff_max: float = 2.0
    """Seconds: the largest backoff ceiling, and the longest ``Retry-After`` that is waited out."""
    budget_ratio: float = 0.2
    budget_min_per_second: float = 0.5
    budget_window: float = 10.0
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    _budgets: dict[str, RetryBudget] = field(default_factory=dict, init=False, repr=False)

    def budget(self, provider: str) -> RetryBudget:
        """The retry budget of ``provider`` (created on first use)."""
        b = self._budgets.get(provider)
        if b is None:
            b = self._budgets[provider] = RetryBudget(
                ratio=self.budget_ratio,
                min_per_second=self.budget_min_per_second,
                window=self.budget_window,
                clock=self.clock,
            )
        return b

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry``; ``None`` if the upstream asks for longer
        than ``backoff_max`` (then retrying now would only add load)."""
        if retry_after is not None and retry_after > 0:
            return retry_after if retry_after <= self.backoff_max else None
        return full_jitter(retry, base=self.backoff_base, cap=self.backoff_max, rng=self.rng)
