"""The classifier's LLM calls, through the gateway's own router in this process (no HTTP hop).

``RouterCompleter`` resolves ``alerts.model`` like a client's model name (an alias gets its
fallback list), calls ``Router.call`` (breakers, retries, health), counts the call against
``alerts.rpm`` on the gateway's rate limiter (with Redis, only the count shared there may
allow a call: while the limiter cannot reach it, no call is made), and records one usage row
per call with ``endpoint = "alerts"`` and ``metadata.service = "alerts"``, priced like any
other request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from llmgw.alerts.classifier import RPM_UNSHARED, RPM_USED_UP, Completion
from llmgw.errors import LlmgwError, RateLimited, UpstreamError
from llmgw.providers.base import CallContext, ChatResponse, Provider
from llmgw.ratelimit import Limit, RateLimiter
from llmgw.routing.outcome import RouteTrace
from llmgw.routing.resolve import Resolver, Target
from llmgw.routing.router import Router
from llmgw.schemas import ChatRequest
from llmgw.usage.recorder import UsageEvent, UsageRecorder

__all__ = ["USAGE_ENDPOINT", "RouterCompleter"]

USAGE_ENDPOINT = "alerts"
"""The usage rows of classification calls carry this ``endpoint``."""


class RouterCompleter:
    """``Complete`` on the gateway's router (see the module docstring)."""

    def __init__(
        self,
        router: Router,
        resolver: Resolver,
        recorder: UsageRecorder,
        *,
        model: str,
        limiter: RateLimiter | None = None,
        rpm: int | None = None,
        bucket: str = "alerts:classifier",
    ) -> None:
        self.router = router
        self.resolver = resolver
        self.recorder = recorder
        self.model = model
        self.limiter = limiter
        self.limit = Limit(rpm, 60.0) if rpm else None
        self.bucket = bucket
        """The rate limiter's bucket for ``alerts.rpm`` (shared by the instances that name it)."""
        self._blocked_until = 0.0
        self.refusal = RPM_USED_UP
        """Why the last call was refused (``RPM_USED_UP`` or ``RPM_UNSHARED``): the reason given
        to the occurrences deferred while ``blocked_for`` runs."""

    def blocked_for(self) -> float:
        """Seconds until ``alerts.rpm`` can allow a call again, as the limiter last said (0
        when it has not refused one since; while Redis does not answer, until the limiter's next
        probe of it): the classifier fails fast meanwhile, without the
        round trips of the cache claim and the limiter, for a call that could not be made."""
        return max(0.0, self._blocked_until - time.monotonic())

    async def __call__(
        self,
        messages: list[dict[str, str]],
        *,
        response_format: dict[str, Any] | None,
        max_tokens: int,
        alert_id: int,
    ) -> Completion:
        """One chat call; raises the router's ``LlmgwError`` on failure (after recording it)."""
        if self.limiter is not None and self.limit is not None:
            d = await self.limiter.acquire_shared(self.bucket, self.limit, 1)
            if d is None:  # Redis did not answer: a local count would add up per instance
                wait = self.limiter.retry_interval  # (its next probe of Redis)
                self._blocked_until, self.refusal = time.monotonic() + wait, RPM_UNSHARED
                raise RateLimited(RPM_UNSHARED, retry_after=wait)
            if not d.allowed:
                self._blocked_until, self.refusal = time.monotonic() + d.retry_after, RPM_USED_UP
                raise RateLimited(RPM_USED_UP, retry_after=d.retry_after)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0.2,
            "max_tokens": max_tokens,
        }
        if response_format is not None:
            body["response_format"] = response_format
        req = ChatRequest.model_validate(body)
        event = UsageEvent(
            request_id=f"alerts-{uuid.uuid4().hex}",
            created_at=datetime.now(UTC),
            endpoint=USAGE_ENDPOINT,
            meta={"service": "alerts", "alert_id": alert_id, "alias": self.model},
        )
        trace: RouteTrace[Target] = RouteTrace()
        t0 = time.perf_counter()

        def chat(p: Provider, c: Target) -> Awaitable[ChatResponse]:
            return p.chat(req, CallContext(event.request_id, c.model, c.version))

        try:
            routed = await self.router.call(self.resolver.candidates(self.model), chat, trace)
        except BaseException as exc:
            self._name(event, trace.candidate)
            event.status = exc.http_status if isinstance(exc, LlmgwError) else 499
            event.error_type = type(exc).__name__
            self._finish(event, t0)
            raise
        self._name(event, routed.candidate)
        usage = routed.value.usage
        event.prompt_tokens = usage.prompt_tokens
        event.completion_tokens = usage.completion_tokens
        event.total_tokens = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
        if event.provider is not None:
            event.cost = self.resolver.cost(
                event.provider,
                event.model,
                event.prompt_tokens,
                event.completion_tokens,
                event.model_version,
            )
        self._finish(event, t0)
        try:
            text = routed.value.body["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise UpstreamError("the classifier's answer has no message content") from None
        return Completion(text=str(text), model=routed.candidate.qualified)

    @staticmethod
    def _name(event: UsageEvent, target: Target | None) -> None:
        if target is not None:
            event.provider, event.model = target.provider, target.model
            event.model_version = target.version

    def _finish(self, event: UsageEvent, t0: float) -> None:
        event.latency_ms = (time.perf_counter() - t0) * 1000
        self.recorder.record(event)
