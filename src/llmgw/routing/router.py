"""The router: tries a request's candidates in order with breakers, fallback, retries and health.

``Router.call`` runs a non-streamed operation (chat, embeddings); ``Router.open_stream`` opens a
stream and returns only once the first chunk is in hand, so the server commits its response
(status line and headers) only after the upstream has really started. Fallback and retries happen
only before that point: once a chunk has been given to the caller, a failure ends the stream.

What counts as an upstream failure (fall back to the next candidate, count against the breaker,
retryable within the budget): ``UpstreamError`` and ``UpstreamTimeout`` (connection refused, TLS,
timeouts, 5xx, unusable bodies), ``RateLimited`` (429), ``Unavailable`` (503, a provider's own
queue full), ``TimeoutError`` and ``OSError`` that escaped an adapter, and a stream that ends
before its first chunk. An upstream 404 (``UpstreamModelNotFound``: this provider lacks the
model) falls back too but charges neither breaker nor health and is not retried; the client gets
it only when no other candidate failed for another reason or was skipped. An error with a true ``local`` attribute (the gateway's own per-upstream
concurrency queue timed out) falls back too but does not count against the breaker or health.
Anything else (the client's 400, 404 model, a permission error) is
returned to the client at once and leaves the breaker untouched.

Order: an alias whose candidates all have the same weight (the default) is a plain fallback
list, tried in the order given. When the weights differ, each request draws its order at random
by weight (weighted sampling without replacement): with weights 3 and 1 the first candidate goes
first for 75 % of requests, and the other is its fallback. Candidates that carry a ``priority``
attribute are grouped by it instead (lower first) and shuffled by weight inside each group.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from llmgw.config import RoutingSettings
from llmgw.errors import (
    ConfigError,
    LlmgwError,
    ModelNotFound,
    Unavailable,
    UpstreamError,
    UpstreamModelNotFound,
)
from llmgw.providers.base import Provider
from llmgw.routing.breaker import (
    BreakerConfig,
    BreakerRegistry,
    CircuitOpen,
    Clock,
)
from llmgw.routing.health import HealthTracker, error_summary
from llmgw.routing.outcome import (
    Attempt,
    CandidatesResolver,
    OpenedStream,
    RouteCandidate,
    Routed,
    RouteTrace,
    StreamTail,
    aclose_quietly,
    is_upstream_failure,
    may_retry,
    retry_after_of,
    served_by,
)
from llmgw.routing.retry import RetryPolicy
from llmgw.routing.tracked import TrackedModels

__all__ = [
    "Attempt",
    "OpenedStream",
    "RouteCandidate",
    "RouteTrace",
    "Routed",
    "Router",
    "build_router",
    "is_upstream_failure",
    "served_by",
]


C = TypeVar("C", bound=RouteCandidate)
T = TypeVar("T")
X = TypeVar("X")


class Router:
    """Tries candidates in order; see the module docstring for the rules."""

    def __init__(
        self,
        candidates_resolver: CandidatesResolver | None,
        providers: Mapping[str, Provider],
        breakers: BreakerRegistry,
        health: HealthTracker,
        retry_policy: RetryPolicy,
        clock: Clock = time.monotonic,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        tracked: TrackedModels | None = None,
    ) -> None:
        self.resolver = candidates_resolver
        self.tracked = tracked
        """Which model names get state of their own (None: every name does)."""
        self.providers = providers
        self.breakers = breakers
        self.health = health
        self.retry = retry_policy
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security

    def _model(self, c: RouteCandidate) -> str:
        """The model name ``c``'s breaker and health are kept under (``tracked``)."""
        return c.model if self.tracked is None else self.tracked.key(c.provider, c.model)

    def resolve(self, name: str) -> list[Any]:
        """Candidates for a client's model name, through the configured resolver."""
        if self.resolver is None:
            raise ModelNotFound(f"model {name!r} is not configured")
        return list(self.resolver(name))

    def order(self, candidates: Sequence[C]) -> list[C]:
        """This request's order of ``candidates`` (see the module docstring)."""
        if len(candidates) < 2:
            return list(candidates)
        prios = [getattr(c, "priority", None) for c in candidates]
        weights = [float(getattr(c, "weight", 1.0) or 1.0) for c in candidates]
        if all(p is None for p in prios):
            if len(set(weights)) == 1:
                return list(candidates)  # a plain ordered fallback list
            prios = [0] * len(candidates)  # weighted alias: one group
        keyed: list[tuple[float, float, int, C]] = []
        for i, c in enumerate(candidates):
            prio = prios[i]
            # Efraimidis-Spirakis: sorting by u**(1/w) descending is a weighted shuffle.
            key = -(self._rng.random() ** (1.0 / weights[i]))
            keyed.append((float(i if prio is None else prio), key, i, c))
        keyed.sort(key=lambda t: (t[0], t[1], t[2]))
        return [t[3] for t in keyed]

    # -- the attempt loop and the public entry points ---------------------------------------

    async def call(
        self,
        candidates: Sequence[C] | str,
        op: Callable[[Provider, C], Awaitable[T]],
        trace: RouteTrace[C] | None = None,
    ) -> Routed[C, T]:
        """Run ``op(provider, candidate)`` on the first candidate that succeeds.

        Raises the last upstream failure when every candidate failed, ``CircuitOpen`` (503 with
        ``retry_after``) when every circuit was open, or a client error at once. ``trace``, when
        given, receives the attempts and the candidate tried last, also when this raises.
        """
        # The attempt loop lives here rather than in a helper coroutine: every coroutine in the
        # chain is paid for again each time the upstream call resumes.
        if isinstance(candidates, str):
            candidates = self.resolve(candidates)
        ordered = self.order(candidates)
        if not ordered:
            raise ModelNotFound("no candidate to route to")
        if trace is None:
            trace = RouteTrace()
        attempts = trace.attempts
        last_exc: BaseException | None = None
        last_c: C | None = None
        retryable: list[tuple[C, BaseException]] = []
        for c in ordered:
            res = await self._try(c, op, trace, retry=False)
            if isinstance(res, Routed):
                return res
            if res is not None:
                if last_exc is None or not isinstance(res, UpstreamModelNotFound):
                    # A 404 from one candidate never hides another's real failure: the client
                    # hears "model not found" only when no candidate that has it was tried.
                    last_exc, last_c = res, c
                if may_retry(res):
                    retryable.append((c, res))
        n = 0
        while retryable and n < self.retry.max_retries:
            i = n % len(retryable)
            c, err = retryable[i]
            n += 1
            if self.breakers.get(c.provider, self._model(c)).state != "closed":
                del retryable[i]
                continue
            delay = self.retry.delay(n, retry_after_of(err))
            if delay is None or not self.retry.budget(c.provider).try_spend():
                break
            await self._sleep(delay)
            res = await self._try(c, op, trace, retry=True)
            if isinstance(res, Routed):
                return res
            if res is not None:
                last_exc, last_c = res, c
                if may_retry(res):
                    retryable[i] = (c, res)
                else:
                    del retryable[i]
        if last_exc is not None and not (
            isinstance(last_exc, UpstreamModelNotFound)
            and any(a.outcome == "open" for a in attempts)
        ):
            trace.candidate = last_c
            raise last_exc
        # Nothing served it and a candidate that may have the model was skipped (open circuit):
        # the truthful answer is "come back later", not "no such model".
        if all(a.outcome == "unavailable" for a in attempts):
            names = ", ".join(sorted({c.provider for c in ordered}))
            gone = Unavailable(f"provider {names} is not available", hint="check the server log")
            trace.candidate = ordered[0]
            raise gone
        waits = [
            self.breakers.get(c.provider, self._model(c)).retry_after()
            for c in ordered
            if c.provider in self.providers
        ]
        wait = min(waits) if waits else None
        err = CircuitOpen(
            "every upstream for this model is failing; the circuit is open",
            retry_after=wait,
            hint="retry after the Retry-After delay; see `llmgw providers status`",
        )
        trace.candidate = ordered[0]
        raise err

    async def _try(
        self,
        c: C,
        attempt: Callable[[Provider, C], Awaitable[T]],
        trace: RouteTrace[C],
        *,
        retry: bool,
    ) -> Routed[C, T] | BaseException | None:
        """One attempt: the result, the upstream failure to go on with, or ``None`` (skipped)."""
        target = served_by(c)
        attempts = trace.attempts
        provider = self.providers.get(c.provider)
        if provider is None:  # configured but not built (e.g. its credential is missing)
            attempts.append(Attempt(target, "unavailable", retry=retry))
            return None
        model = self._model(c)
        breaker = self.breakers.get(c.provider, model)
        if not breaker.acquire():
            attempts.append(Attempt(target, "open", retry=retry))
            return None
        if not retry:
            self.retry.budget(c.provider).record_request()
        start = self._clock()
        breaker.in_flight += 1
        try:
            value = await attempt(provider, c)
        except asyncio.CancelledError:
            breaker.release()
            attempts.append(Attempt(target, "cancelled", retry=retry))
            raise
        except Exception as exc:
            ms = (self._clock() - start) * 1000.0
            if not is_upstream_failure(exc):
                breaker.release()
                attempts.append(Attempt(target, "rejected", type(exc).__name__, ms, retry))
                trace.candidate = c
                raise
            if isinstance(exc, UpstreamModelNotFound):
                # The upstream is up and answering; it just lacks this model: fall back to the
                # next candidate without charging the breaker (which would turn a truthful 404
                # into a 503 circuit_open for the next requests) or the health's error rate.
                breaker.release()
                attempts.append(Attempt(target, "absent", error_summary(exc), ms, retry))
                return exc
            if isinstance(exc, LlmgwError) and exc.local:
                # The gateway's own concurrency cap for this upstream is full: go elsewhere,
                # but the upstream itself did nothing wrong, so its breaker is not charged.
                breaker.release()
                attempts.append(Attempt(target, "busy", error_summary(exc), ms, retry))
                return exc
            breaker.record_failure()
            self.health.record_failure(c.provider, model, exc)
            attempts.append(Attempt(target, "failed", error_summary(exc), ms, retry))
            return exc
        finally:
            breaker.in_flight -= 1
        elapsed = self._clock() - start
        breaker.record_success()
        self.health.record_success(c.provider, model, elapsed)
        attempts.append(Attempt(target, "ok", None, elapsed * 1000.0, retry))
        trace.candidate = c
        return Routed(value, c, attempts)

    async def open_stream(
        self,
        candidates: Sequence[C] | str,
        op: Callable[[Provider, C], AsyncIterator[X] | Awaitable[AsyncIterator[X]]],
        trace: RouteTrace[C] | None = None,
    ) -> OpenedStream[C, X]:
        """Open a stream on the first candidate that yields a first chunk.

        Returns ``(candidate, first_chunk, chunks)`` (an ``OpenedStream``); iterate ``chunks``
        for the rest and ``aclose()`` it when the client goes away. A failure after this point is
        raised from ``chunks`` and is not retried (bytes may already be with the client).
        """
        cands: Sequence[C] = self.resolve(candidates) if isinstance(candidates, str) else candidates

        async def first(provider: Provider, c: C) -> tuple[X, AsyncIterator[X]]:
            made = op(provider, c)
            it: AsyncIterator[X] = await made if inspect.isawaitable(made) else made
            try:
                chunk = await it.__anext__()
            except StopAsyncIteration:
                await aclose_quietly(it)
                raise UpstreamError(
                    "the upstream ended the stream before sending anything", provider=c.provider
                ) from None
            except BaseException:
                await aclose_quietly(it)
                raise
            return chunk, it

        routed = await self.call(cands, first, trace)
        c, (chunk, it), attempts = routed.candidate, routed.value, routed.attempts
        model = self._model(c)
        breaker = self.breakers.get(c.provider, model)

        def on_failure(exc: BaseException) -> None:
            breaker.record_failure()
            self.health.record_failure(c.provider, model, exc)

        return OpenedStream(c, chunk, StreamTail(it, on_failure), attempts)


def build_router(
    routing: RoutingSettings,
    providers: Mapping[str, Provider],
    candidates_resolver: CandidatesResolver | None = None,
    *,
    clock: Clock = time.monotonic,
    passthrough: Iterable[str] = (),
    offered: Callable[[str, str], bool] = lambda provider, model: False,
) -> Router:
    """A router with breakers, health and retry policy configured from ``[routing]``.

    ``passthrough`` names the providers with ``models = []``; on those, only names the upstream
    lists (``offered``) get state of their own, at most ``routing.max_tracked_models`` each
    (``llmgw.routing.tracked``)."""
    try:
        config = BreakerConfig(
            failure_threshold=routing.failure_threshold,
            error_rate_threshold=routing.error_rate_threshold,
            window=routing.error_rate_window,
            min_requests=routing.error_rate_min_requests,
            cooldown=routing.cooldown,
            max_cooldown=max(routing.max_cooldown, routing.cooldown),
            half_open_probes=routing.half_open_probes,
        )
    except ValueError as exc:
        raise ConfigError(f"routing: {exc}", hint="see docs/routing.md") from None
    breakers = BreakerRegistry(config, clock)
    health = HealthTracker(alpha=routing.health_alpha, breakers=breakers, clock=clock)
    policy = RetryPolicy(
        max_retries=routing.max_retries,
        backoff_base=routing.backoff_base,
        backoff_max=routing.backoff_max,
        budget_ratio=routing.retry_budget_ratio,
        budget_min_per_second=routing.retry_budget_min_per_second,
        budget_window=routing.retry_budget_window,
        clock=clock,
    )

    def evict(provider: str, model: str) -> None:
        breakers.forget(provider, model)
        health.forget(provider, model)

    tracked = TrackedModels(
        passthrough, max_tracked=routing.max_tracked_models, offered=offered, on_evict=evict
    )
    return Router(candidates_resolver, providers, breakers, health, policy, clock, tracked=tracked)
