"""The router: tries a request's candidates in order with breakers, fallback, retries and health.

``Router.call`` runs a non-streamed operation (chat, embeddings); ``Router.open_stream`` opens a
stream and returns only once the first chunk is in hand, so the server commits its response
(status line and headers) only after the upstream has really started. Fallback and retries happen
only before that point: once a chunk has been given to the caller, a failure ends the stream.

What counts as an upstream failure (fall back to the next candidate, count against the breaker,
retryable within the budget): ``UpstreamError`` and ``UpstreamTimeout`` (connection refused, TLS,
timeouts, 5xx, unusable bodies), ``RateLimited`` (429), ``Unavailable`` (503, a provider's own
queue full), ``TimeoutError`` and ``OSError`` that escaped an adapter, and a stream that ends
before its first chunk. An error with a true ``local`` attribute (the gateway's own per-upstream
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
import contextlib
import inspect
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from llmgw.config import RoutingSettings
from llmgw.errors import (
    ConfigError,
    ModelNotFound,
    RateLimited,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from llmgw.providers.base import Provider
from llmgw.routing.breaker import (
    BreakerConfig,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpen,
    Clock,
)
from llmgw.routing.health import HealthTracker, error_summary
from llmgw.routing.retry import RetryPolicy

__all__ = [
    "Attempt",
    "OpenedStream",
    "RouteCandidate",
    "Routed",
    "Router",
    "build_router",
    "is_upstream_failure",
    "served_by",
]


class RouteCandidate(Protocol):
    """What the router needs from a candidate (``llmgw.routing.resolve`` builds them)."""

    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def version(self) -> str | None: ...


C = TypeVar("C", bound=RouteCandidate)
T = TypeVar("T")
X = TypeVar("X")
E = TypeVar("E", bound=BaseException)

CandidatesResolver = Callable[[str], Sequence[Any]]


def served_by(c: RouteCandidate) -> str:
    """``provider/model[:version]`` of a candidate, for the response header and usage record."""
    return f"{c.provider}/{c.model}" + (f":{c.version}" if c.version else "")


def is_upstream_failure(exc: BaseException) -> bool:
    """Is ``exc`` the upstream's fault (fallback, breaker failure, retryable)?"""
    if isinstance(exc, CircuitOpen):
        return False
    return isinstance(exc, UpstreamError | RateLimited | Unavailable | TimeoutError | OSError)


def _retryable(exc: BaseException) -> bool:
    """May the same candidate be tried again after ``exc``? Not after a timeout: the client has
    already waited a full timeout, and the upstream may be generating (and billing) the answer."""
    return not isinstance(exc, UpstreamTimeout | TimeoutError)


def _retry_after(exc: BaseException) -> float | None:
    v = getattr(exc, "retry_after", None)
    return float(v) if isinstance(v, int | float) else None


@dataclass(slots=True)
class Attempt:
    """One try of one candidate."""

    target: str
    """``provider/model[:version]``."""
    outcome: str
    """``ok``, ``failed``, ``open`` (skipped: circuit open), ``unavailable`` (provider not built),
    ``busy`` (the gateway's own cap for it was full), ``rejected`` (client error) or ``cancelled``."""
    error: str | None = None
    latency_ms: float | None = None
    retry: bool = False


@dataclass(slots=True)
class Routed(Generic[C, T]):
    """A result and the candidate that produced it."""

    value: T
    candidate: C
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def served_by(self) -> str:
        """``provider/model[:version]`` that served the request."""
        return served_by(self.candidate)


class OpenedStream(Generic[C, X]):
    """An open stream: unpacks as ``(candidate, first_chunk, chunks)``; also carries ``attempts``."""

    def __init__(
        self, candidate: C, first_chunk: X, chunks: AsyncIterator[X], attempts: list[Attempt]
    ) -> None:
        self.candidate = candidate
        self.first_chunk = first_chunk
        self.chunks = chunks
        self.attempts = attempts

    def __iter__(self) -> Any:
        return iter((self.candidate, self.first_chunk, self.chunks))

    @property
    def served_by(self) -> str:
        """``provider/model[:version]`` serving the stream."""
        return served_by(self.candidate)


class _StreamTail(Generic[X]):
    """The rest of a stream after its first chunk: mid-stream failures reach breaker and health."""

    def __init__(self, it: AsyncIterator[X], on_failure: Callable[[BaseException], None]) -> None:
        self._it = it
        self._on_failure = on_failure

    def __aiter__(self) -> _StreamTail[X]:
        return self

    async def __anext__(self) -> X:
        try:
            return await self._it.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            if is_upstream_failure(exc):
                self._on_failure(exc)
            raise

    async def aclose(self) -> None:
        """Close the upstream stream (releases its connection at once)."""
        close = getattr(self._it, "aclose", None)
        if close is not None:
            await close()


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
    ) -> None:
        self.resolver = candidates_resolver
        self.providers = providers
        self.breakers = breakers
        self.health = health
        self.retry = retry_policy
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security

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

    # -- the attempt loop -------------------------------------------------------------------

    async def _run(
        self, candidates: Sequence[C], attempt: Callable[[Provider, C], Awaitable[T]]
    ) -> tuple[C, T, list[Attempt], CircuitBreaker]:
        ordered = self.order(candidates)
        if not ordered:
            raise ModelNotFound("no candidate to route to")
        attempts: list[Attempt] = []
        last_exc: BaseException | None = None
        last_c: C | None = None
        retryable: list[tuple[C, BaseException]] = []
        for c in ordered:
            res = await self._try(c, attempt, attempts, retry=False)
            if isinstance(res, tuple):
                return res
            if res is not None:
                last_exc, last_c = res, c
                if _retryable(res):
                    retryable.append((c, res))
        n = 0
        while retryable and n < self.retry.max_retries:
            i = n % len(retryable)
            c, err = retryable[i]
            n += 1
            if self.breakers.get(c.provider, c.model).state != "closed":
                del retryable[i]
                continue
            delay = self.retry.delay(n, _retry_after(err))
            if delay is None or not self.retry.budget(c.provider).try_spend():
                break
            await self._sleep(delay)
            res = await self._try(c, attempt, attempts, retry=True)
            if isinstance(res, tuple):
                return res
            if res is not None:
                last_exc, last_c = res, c
                if _retryable(res):
                    retryable[i] = (c, res)
                else:
                    del retryable[i]
        if last_exc is not None:
            raise _tag(last_exc, attempts, last_c)
        if all(a.outcome == "unavailable" for a in attempts):
            names = ", ".join(sorted({c.provider for c in ordered}))
            gone = Unavailable(f"provider {names} is not available", hint="check the server log")
            raise _tag(gone, attempts, ordered[0])
        waits = [
            self.breakers.get(c.provider, c.model).retry_after()
            for c in ordered
            if c.provider in self.providers
        ]
        wait = min(waits) if waits else None
        err = CircuitOpen(
            "every upstream for this model is failing; the circuit is open",
            retry_after=wait,
            hint="retry after the Retry-After delay; see `llmgw providers status`",
        )
        raise _tag(err, attempts, ordered[0])

    async def _try(
        self,
        c: C,
        attempt: Callable[[Provider, C], Awaitable[T]],
        attempts: list[Attempt],
        *,
        retry: bool,
    ) -> tuple[C, T, list[Attempt], CircuitBreaker] | BaseException | None:
        """One attempt: the result tuple, the upstream failure to go on with, or ``None`` (skipped)."""
        target = served_by(c)
        provider = self.providers.get(c.provider)
        if provider is None:  # configured but not built (e.g. its credential is missing)
            attempts.append(Attempt(target, "unavailable", retry=retry))
            return None
        breaker = self.breakers.get(c.provider, c.model)
        if not breaker.acquire():
            attempts.append(Attempt(target, "open", retry=retry))
            return None
        if not retry:
            self.retry.budget(c.provider).record_request()
        start = self._clock()
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
                _tag(exc, attempts, c)
                raise
            if getattr(exc, "local", False):
                # The gateway's own concurrency cap for this upstream is full: go elsewhere,
                # but the upstream itself did nothing wrong, so its breaker is not charged.
                breaker.release()
                attempts.append(Attempt(target, "busy", error_summary(exc), ms, retry))
                return exc
            breaker.record_failure()
            self.health.record_failure(c.provider, c.model, exc)
            attempts.append(Attempt(target, "failed", error_summary(exc), ms, retry))
            return exc
        elapsed = self._clock() - start
        breaker.record_success()
        self.health.record_success(c.provider, c.model, elapsed)
        attempts.append(Attempt(target, "ok", None, elapsed * 1000.0, retry))
        return c, value, attempts, breaker

    # -- public entry points ------------------------------------------------------------------

    async def call(
        self, candidates: Sequence[C] | str, op: Callable[[Provider, C], Awaitable[T]]
    ) -> Routed[C, T]:
        """Run ``op(provider, candidate)`` on the first candidate that succeeds.

        Raises the last upstream failure when every candidate failed, ``CircuitOpen`` (503 with
        ``retry_after``) when every circuit was open, or a client error at once.
        """
        cands: Sequence[C] = self.resolve(candidates) if isinstance(candidates, str) else candidates
        c, value, attempts, _ = await self._run(cands, op)
        return Routed(value, c, attempts)

    async def open_stream(
        self,
        candidates: Sequence[C] | str,
        op: Callable[[Provider, C], AsyncIterator[X] | Awaitable[AsyncIterator[X]]],
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
                await _aclose(it)
                raise UpstreamError(
                    "the upstream ended the stream before sending anything", provider=c.provider
                ) from None
            except BaseException:
                await _aclose(it)
                raise
            return chunk, it

        c, (chunk, it), attempts, breaker = await self._run(cands, first)

        def on_failure(exc: BaseException) -> None:
            breaker.record_failure()
            self.health.record_failure(c.provider, c.model, exc)

        return OpenedStream(c, chunk, _StreamTail(it, on_failure), attempts)


def _tag(exc: E, attempts: list[Attempt], candidate: object) -> E:
    """Attach the attempts and the last candidate tried to an error the router raises.

    The server reads ``route_candidate`` to name the provider in the failure's usage record and
    ``route_attempts`` for its metadata.
    """
    with contextlib.suppress(AttributeError):
        exc.route_attempts = attempts  # type: ignore[attr-defined]
        exc.route_candidate = candidate  # type: ignore[attr-defined]
    return exc


async def _aclose(it: object) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        # closing a broken upstream must not mask the error that broke it
        with contextlib.suppress(Exception):
            await close()


def build_router(
    routing: RoutingSettings,
    providers: Mapping[str, Provider],
    candidates_resolver: CandidatesResolver | None = None,
    *,
    clock: Clock = time.monotonic,
) -> Router:
    """A router with breakers, health and retry policy configured from ``[routing]``."""
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
    health = HealthTracker(alpha=routing.health_alpha, breakers=breakers)
    policy = RetryPolicy(
        max_retries=routing.max_retries,
        backoff_base=routing.backoff_base,
        backoff_max=routing.backoff_max,
        budget_ratio=routing.retry_budget_ratio,
        budget_min_per_second=routing.retry_budget_min_per_second,
        budget_window=routing.retry_budget_window,
        clock=clock,
    )
    return Router(candidates_resolver, providers, breakers, health, policy, clock)
