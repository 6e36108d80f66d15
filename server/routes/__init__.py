"""Route groups and what they share: the body reader, validation once at the edge, usage accounting."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import Receive, Scope

from llmgw.errors import (
    DatabaseError,
    InvalidRequest,
    LlmgwError,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from llmgw.providers.base import Usage
from llmgw.routing.resolve import Target
from llmgw.schemas import FORBIDDEN_FIELDS
from llmgw.server.errors import to_llmgw_error, validation_error
from llmgw.server.middleware import RequestContext
from llmgw.server.ratelimits import Grant
from llmgw.server.state import Gateway
from llmgw.usage.recorder import UsageEvent

__all__ = [
    "Call",
    "ClientDisconnected",
    "context",
    "decode_json",
    "parse",
    "read_json",
    "receive_body",
    "until_disconnect",
]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class ClientDisconnected(LlmgwError):
    """The client went away before the answer was ready (status 499, never actually sent)."""

    http_status = 499
    code = "client_disconnected"


def context(request: Request) -> RequestContext:
    """The ``RequestContext`` the middleware put on the scope."""
    rc: RequestContext = request.scope["llmgw"]
    return rc


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object: 413 over ``limit`` (by header or while reading), 400 if not JSON."""
    return decode_json(await receive_body(request.scope, request.receive, limit))


async def receive_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The raw request body from the ASGI ``receive``: 413 over ``limit`` (by header or while
    reading), 400 for a bad ``Content-Length``, ``ClientDisconnected`` when the client hangs up."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise InvalidRequest("invalid Content-Length header")
            if int(value) > limit:
                raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
            break
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        raw: bytes = message.get("body", b"")  # the usual case: the whole body in one message
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        return raw
    parts: list[bytes] = []
    size = 0
    while True:
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnected("the client closed the connection while sending")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        if chunk:
            parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)
        message = await receive()


def decode_json(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object; 400 with a precise message when it is empty or not one."""
    if not raw:
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("request body is not valid UTF-8") from None
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    return data


def parse(cls: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` into ``cls`` once; steering fields and schema errors give 400."""
    if not FORBIDDEN_FIELDS.isdisjoint(data):
        field = sorted(FORBIDDEN_FIELDS.intersection(data))[0]
        raise InvalidRequest(
            f"field {field!r} is not accepted: the gateway chooses the upstream and its credentials",
            param=field,
            code="forbidden_field",
        )
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


class _Watch:
    """One call's disconnect watcher: the task it would cancel and, once started, the watcher
    task reading ``receive``. Delayed watchers wait in a ``_Sweeper`` until ``due``."""

    __slots__ = ("current", "due", "gone", "receive", "watcher")

    def __init__(self, receive: Receive, current: asyncio.Task[Any], due: float) -> None:
        self.receive = receive
        self.current = current
        self.due = due
        self.gone = False
        self.watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching (unless the call is already over)."""
        if not self.current.done():
            self.watcher = self.current.get_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                self.current.cancel()
                return


class _Sweeper:
    """One loop timer for every delayed watcher: a call costs a set insert and removal, not a
    timer of its own (``call_later`` + ``cancel`` cost about as much as the watcher task)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval  # no reference to the loop: it keys the registry below
        self.calls: set[_Watch] = set()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, call: _Watch) -> None:
        self.calls.add(call)
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.interval, self.sweep)

    def sweep(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for call in [c for c in self.calls if c.due <= now]:
            self.calls.discard(call)
            call.start()
        if self.calls:
            self.timer = loop.call_later(self.interval, self.sweep)


# Sweepers per loop, keyed by id(loop) next to a weak reference that tells a live loop from a
# dead one with a recycled id (a WeakKeyDictionary look-up makes a weakref per call: 0.3 µs).
_sweepers: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], dict[float, _Sweeper]]] = {}


def _sweeper(loop: asyncio.AbstractEventLoop, after: float) -> _Sweeper:
    entry = _sweepers.get(id(loop))
    if entry is None or entry[0]() is not loop:
        key = id(loop)

        def forget(ref: weakref.ref[asyncio.AbstractEventLoop]) -> None:
            if _sweepers.get(key, (None,))[0] is ref:
                del _sweepers[key]

        entry = _sweepers[key] = (weakref.ref(loop, forget), {})
    per_loop = entry[1]
    sweeper = per_loop.get(after)
    if sweeper is None:
        sweeper = per_loop[after] = _Sweeper(after / 2)
    return sweeper


async def until_disconnect(receive: Receive, aw: Awaitable[T], *, after: float = 0.0) -> T:
    """Await ``aw``, cancelling it if the client disconnects (``ClientDisconnected``).

    The disconnect watcher is a task of its own; with ``after`` > 0 it starts only once ``aw``
    has run that long (checked every ``after / 2`` seconds by one timer per loop), so calls that
    finish sooner (most non-streaming answers) never create one, and a client that hangs up is
    noticed at most ``1.5 * after`` seconds late.
    """
    current = asyncio.current_task()
    assert current is not None
    loop = current.get_loop()
    sweeper: _Sweeper | None = None
    if after > 0:
        watch = _Watch(receive, current, loop.time() + after)
        sweeper = _sweeper(loop, after)
        sweeper.add(watch)
    else:
        watch = _Watch(receive, current, 0.0)
        watch.start()
    try:
        return await aw
    except asyncio.CancelledError:
        if watch.gone:
            current.uncancel()
            raise ClientDisconnected("the client closed the connection") from None
        raise
    finally:
        if sweeper is not None:
            sweeper.calls.discard(watch)
        if watch.watcher is not None:
            watch.watcher.cancel()


def error_code(exc: BaseException) -> str:
    """A short, closed-set name for a failure (usage ``error_type``, metrics label)."""
    if isinstance(exc, asyncio.CancelledError):
        return "client_disconnected"
    err = to_llmgw_error(exc)
    if err.code:
        return err.code
    if isinstance(err, InvalidRequest):
        return "invalid_request"
    if isinstance(err, NotFound):
        return "not_found"
    if isinstance(err, DatabaseError):
        return "database_unavailable"
    if isinstance(err, Unavailable):
        return "unavailable"
    return "internal_error"


class Call:
    """Accounting for one authenticated request: exactly one usage event, metrics, log fields."""

    __slots__ = ("event", "gateway", "grant", "rc", "recorded", "target")

    def __init__(self, gateway: Gateway, rc: RequestContext, key: Any, endpoint: str) -> None:
        self.gateway = gateway
        self.rc = rc
        self.target: Target | None = None
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
        candidate = getattr(exc, "route_candidate", None)
        if isinstance(candidate, Target):  # the router names the last candidate it tried
            self.served(candidate, getattr(exc, "route_attempts", None) or ())
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
    ) -> None:
        """Record the event once: tokens, cost, latency; metrics for the upstream part."""
        if self.recorded:
            return
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
                    ev.provider, ev.model, ev.prompt_tokens, ev.completion_tokens
                )
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
            )
        g.recorder.record(ev)

    @staticmethod
    def _settle(grant: Grant, status: int, total_tokens: int | None) -> None:
        """Tokens used replace the reservation; an upstream failure (nothing generated) frees
        it; a call cut short without usage (a client gone mid-stream) keeps it."""
        if total_tokens is None and (status >= 500 or status in (408, 429)):
            total_tokens = 0
        grant.settle(total_tokens)
