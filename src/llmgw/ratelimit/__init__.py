"""Rate limiting: GCRA buckets in memory or shared through Redis (see docs/ratelimits.md)."""

from __future__ import annotations

from llmgw.ratelimit.gcra import Decision, Limit, MemoryLimiter

__all__ = ["Decision", "Limit", "MemoryLimiter"]
