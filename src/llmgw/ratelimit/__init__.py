"""Rate limiting: GCRA buckets in memory or shared through Redis (see docs/ratelimits.md)."""

from __future__ import annotations

from llmgw.ratelimit.gcra import BudgetAsk, BudgetVerdict, Decision, Limit, MemoryLimiter
from llmgw.ratelimit.limiter import RateLimiter

__all__ = ["BudgetAsk", "BudgetVerdict", "Decision", "Limit", "MemoryLimiter", "RateLimiter"]
