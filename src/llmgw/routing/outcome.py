"""What the router hands back: candidates, attempts, results, open streams, and the route trace."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from llmgw.errors import (
    LlmgwError,
    RateLimited,
    Unavailable,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamTimeout,
)
from llmgw.routing.breaker import CircuitOpen

__all__ = [
    "Attempt",
    "CandidatesResolver",
    "OpenedStream",
    "RouteCandidate",
    "RouteTrace",
    "Routed",
    "StreamTail",
    "aclose_quietly",
    "is_upstream_failure",
    "may_retry",
    "retry_after_of",
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

CandidatesResolver = Callable[[str], Sequence[Any]]


def served_by(c: RouteCandidate) -> str:
    """``provider/model[:version]`` of a candidate, for the response header and usage record."""
    qualified = getattr(c, "qualified", None)  # a resolver ``Target`` has it made already
    if qualified is not None:
        return qualified  # type: ignore[no-any-return]
    return f"{c.provider}/{c.model}" + (f":{c.version}" if c.version else "")


def is_upstream_failure(exc: BaseException) -> bool:
    """Is ``exc`` the upstream's fault (fallback, breaker failure, retryable)?"""
    if isinstance(exc, CircuitOpen):
        return False
    return isinstance(exc, UpstreamError | RateLimited | Unavailable | TimeoutError | OSError)


def may_retry(exc: BaseException) -> bool:
    """May the same candidate be tried again after ``exc``? Not after a timeout: the client has
    already waited a full timeout, and the upstream may be generating (and billing) the answer;
    not after a 404: the upstream will not learn the model in the meantime."""
    return not isinstance(exc, UpstreamTimeout | TimeoutError | UpstreamModelNotFound)


def retry_after_of(exc: BaseException) -> float | None:
    """The ``retry_after`` seconds an error carries (429s, open circuits), if any."""
    return exc.retry_after if isinstance(exc, LlmgwError) else None


@dataclass(slots=True)
class Attempt:
    """One try of one candidate."""

    target: str
    """``provider/model[:version]``."""
    outcome: str
    """``ok``, ``failed``, ``open`` (skipped: circuit open), ``unavailable`` (provider not built),
    ``busy`` (the gateway's own cap for it was full), ``absent`` (the upstream answered 404: it
    does not serve the model), ``rejected`` (client error) or ``cancelled``."""
    error: str | None = None
    latency_ms: float | None = None
    retry: bool = False


@dataclass(slots=True)
class RouteTrace(Generic[C]):
    """What the router tried for one request, filled in as it goes.

    A caller that passes its own trace to ``Router.call`` or ``Router.open_stream`` can read it
    after a failure: the candidate tried last names the provider in the failure's usage record,
    and the attempts go into its metadata. (The error itself is raised unchanged.)
    """

    attempts: list[Attempt] = field(default_factory=list)
    candidate: C | None = None
    """The candidate tried last: the one that served, or the last one that failed."""


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


class StreamTail(Generic[X]):
    """The rest of a stream after its first chunk: mid-stream failures reach breaker and health."""

    def __init__(self, it: AsyncIterator[X], on_failure: Callable[[BaseException], None]) -> None:
        self._it = it
        self._on_failure = on_failure

    def __aiter__(self) -> StreamTail[X]:
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


async def aclose_quietly(it: object) -> None:
    """Close an async iterator if it can be closed, ignoring errors from a broken upstream."""
    close = getattr(it, "aclose", None)
    if close is not None:
        # closing a broken upstream must not mask the error that broke it
        with contextlib.suppress(Exception):
            await close()
