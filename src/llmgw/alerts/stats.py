"""Counters of the alert service, plain numbers the server exports at scrape time."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AlertStats"]


@dataclass(slots=True)
class AlertStats:
    """What the webhook and the worker did since start (one process)."""

    deliveries: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("stored", "duplicate", "unauthorized", "invalid", "too_large", "failed"), 0
        )
    )
    """Webhook deliveries by outcome."""
    alerts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("new", "resolved", "updated", "stale"), 0)
    )
    """Occurrence changes made by deliveries."""
    classifications: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("ok", "invalid_output", "timeout", "error", "skipped", "deferred"), 0
        )
    )
    """Classification attempts by result; ``deferred``: refused by ``alerts.rpm``, no call."""
    cache: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("hit", "miss", "waited"), 0)
    )
    """Classification cache look-ups; ``waited``: another instance held the label set's claim,
    so this one waited for its result instead of calling the LLM too."""
    classify_seconds: list[float] = field(default_factory=list)
    """Latency of the LLM calls (bounded: the newest 1000)."""
    retention_deleted: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("firing", "resolved", "deliveries"), 0)
    )
    """Rows deleted by retention runs."""
    publications: dict[tuple[str, str], int] = field(default_factory=dict)
    """Publishing attempts by (target type, result: sent, retry, failed, disabled, unknown)."""
    worker_errors: int = 0
    """Unexpected failures of the worker loop (it keeps running)."""

    def observe_latency(self, seconds: float) -> None:
        """Keep one classification call's latency (the newest 1000)."""
        self.classify_seconds.append(seconds)
        if len(self.classify_seconds) > 1000:
            del self.classify_seconds[:100]
