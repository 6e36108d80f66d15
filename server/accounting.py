"""Accounting for one authenticated request: ``Call`` records exactly one usage event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any

from llmgw.errors import Unavailable
from llmgw.providers.base import Usage
from llmgw.routing.outcome import RouteTrace
from llmgw.routing.resolve import Target
from llmgw.server.auth import TokenKey
from llmgw.server.errors import error_code, to_llmgw_error
from llmgw.server.middleware import RequestContext
from llmgw.server.ratelimits import Grant
from llmgw.server.state import Gateway
from llmgw.usage.recorder import UsageEvent

__all__ = ["Call"]


class Call:
    """Accounting for one authenticated request: exactly one usage event, metrics, log fields."""

    __slots__ = ("event", "gateway", "grant", "rc", "recorded", "target", "trace")

    def __init__(self, gateway: Gateway, rc: RequestContext, key: Any, endpoint: str) -> None:
        if gateway.recorder.unrecordable is not None and gateway.refuse_unrecordable:
            gateway.recorder.refused += 1  # ST-4: a request that could not be billed
            raise Unavailable(
                "usage cannot be recorded right now, so billable requests are refused;"
                " try again shortly",
                code="usage_unavailable",
            )
        self.gateway = gateway
        self.rc = rc
        self.target: Target | None = None
        self.trace: RouteTrace[Target] = RouteTrace()
        """What the router tried (pass it to ``Router.call``/``open_stream``)."""
        self.recorded = False
        self.grant: Grant | None = None
        """The key's rate-limit reservation, settled with the usage when the call ends."""
        self.event = UsageEvent(
            request_id=rc.request_id,
            created_at=datetime.now(UTC),
            endpoint=endpoint,
            key_id=key.id,
            user_id=key.user_id,
        )
        if type(key) is TokenKey:  # a token's call: its user and its jti, no key
            self.event.key_id, self.event.token_id = None, key.jti
        if rc.client_request_id is not None:
            self.event.meta = {"client_request_id": rc.client_request_id}

    def routed(self, target: Target) -> None:
        """Name the provider and model this call goes to."""
        self.target = target
        ev = self.event
        ev.provider, ev.model, ev.model_version = target.provider, target.model, target.version
        self.rc.provider, self.rc.model = target.provider, target.model
        if target.alias is not None:
            self.meta()["alias"] = target.alias

    def served(self, target: Target, attempts: Sequence[Any]) -> None:
        """The candidate that served; the attempts go into the metadata after a fallback."""
        if target is not self.target:  # usually the one ``routed`` already named
            self.routed(target)
        if len(attempts) > 1:
            self.meta()["attempts"] = [f"{a.target} {a.outcome}" for a in attempts]

    def meta(self) -> dict[str, Any]:
        """The event's metadata dict, created on first use."""
        if self.event.meta is None:
            self.event.meta = {}
        return self.event.meta

    def fail(self, exc: BaseException, *, partial_usage: Usage | None = None) -> None:
        """Record the failure (status and error type from ``exc``)."""
        if self.recorded:
            return
        candidate = self.trace.candidate
        if candidate is not None:  # the router names the last candidate it tried
            self.served(candidate, self.trace.attempts)
        status = 499 if isinstance(exc, asyncio.CancelledError) else to_llmgw_error(exc).http_status
        self.finish(status, error_code(exc), partial_usage)

    def finish(
        self,
        status: int,
        error_type: str | None,
        usage: Usage | None,
        *,
        upstream_seconds: float | None = None,
        ttft: float | None = None,
        end: float | None = None,
    ) -> Awaitable[None] | None:
        """Record the event once: tokens, cost, latency; metrics for the upstream part.

        The record is journaled before this returns (it survives ``kill -9``); with
        ``usage.durability = "power"`` the result is awaited before the answer is sent."""
        if self.recorded:
            return None
        self.recorded = True
        g, ev = self.gateway, self.event
        ev.status, ev.error_type = status, error_type
        self.rc.error_type = error_type
        end = time.perf_counter() if end is None else end
        ev.latency_ms = (end - self.rc.start) * 1000
        if ttft is not None:
            ev.ttft_ms = ttft * 1000
        if usage is not None:
            ev.prompt_tokens = usage.prompt_tokens
            ev.completion_tokens = usage.completion_tokens
            ev.total_tokens = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
            if ev.provider is not None:
                ev.cost = g.resolver.cost(
                    ev.provider, ev.model, ev.prompt_tokens, ev.completion_tokens, ev.model_version
                )
                g.metrics.observe_cost(ev.provider, ev.model, ev.cost)
                if g.budgets.rules:  # one attribute read when no budget exists
                    g.budgets.charge(ev.key_id, ev.user_id, ev.provider, ev.cost)
        if self.grant is not None:
            self._settle(self.grant, status, ev.total_tokens if usage is not None else None)
        if upstream_seconds is not None:
            g.metrics.observe_upstream(
                ev.provider,
                ev.model,
                upstream_seconds,
                ev.prompt_tokens,
                ev.completion_tokens,
                ttft,
                ev.model_version,
            )
        g.recent.append((ev, self.rc.key_prefix))
        return g.recorder.record(ev)

    def begin_stream(self) -> Awaitable[None] | None:
        """Journal a provisional record before a stream's first byte (kept, as ``interrupted``
        and ``partial``, only if the process dies before ``finish``)."""
        return self.gateway.recorder.begin_stream(self.event)

    @staticmethod
    def _settle(grant: Grant, status: int, total_tokens: int | None) -> None:
        """Tokens used replace the reservation; an upstream failure (nothing generated) frees
        it; a call cut short without usage (a client gone mid-stream) keeps it."""
        if total_tokens is None and (status >= 500 or status in (408, 429)):
            total_tokens = 0
        grant.settle(total_tokens)
