"""What the Slack, PagerDuty and Rootly emulators share: the log of what they received, fault
switches that can be flipped while they run, per-key rate limits, and the ``/_emulator`` routes.

Control routes (JSON; no auth, loopback tools):

- ``GET /_emulator/received`` lists every request the service surface received, oldest first
  (``?since=ID`` for newer ones only, ``?path=PREFIX`` to filter); ``DELETE`` clears it.
- ``GET /_emulator/fault`` shows the fault switch; ``POST`` sets it from
  ``{"fault": "429", "count": 2, "retry_after": 1}`` (count omitted: every request); ``DELETE`` clears it.
- ``GET /_emulator/state`` shows the service's own state (messages, alerts, incidents).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, get_args

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.emulators.faults import json_response
from llmgw.providers.transport import redact_secrets

__all__ = [
    "ALERT_FAULTS",
    "AlertFault",
    "ControlOptions",
    "Controls",
    "FaultSwitch",
    "Received",
    "Recorder",
    "SlidingWindow",
    "TokenBucket",
    "control_routes",
    "controls",
]

AlertFault = Literal["400", "401", "404", "410", "429", "500", "timeout"]
"""Faults of the alerting emulators: answer that status with the service's own error body (429 with
``Retry-After``), or ``timeout``: hold the request ``hang_seconds`` (a client should give up first),
then answer 500."""

ALERT_FAULTS: tuple[str, ...] = get_args(AlertFault)

_SECRET_HEADERS = ("authorization", "x-routing-key", "x-api-key", "cookie")
_SECRET_FIELDS = ("routing_key", "token", "secret", "client_secret", "api_key", "password")
"""Body fields (top level, JSON or form) and query parameters whose value is a credential."""


def _credentials(request: Request, body: Any) -> list[str]:
    """The credentials one request carries: secret headers (without their scheme), secret body
    fields and query parameters."""
    found = []
    for name in _SECRET_HEADERS:
        value = request.headers.get(name, "")
        found.append(value.split(" ", 1)[1] if " " in value else value)
    if isinstance(body, dict):
        found += [str(body[k]) for k in _SECRET_FIELDS if isinstance(body.get(k), str)]
    found += [request.query_params.get(k, "") for k in _SECRET_FIELDS]
    return [s for s in found if s]


@dataclass
class Received:
    """One request as an emulator received it.

    The fields hold what arrived (tests in the same process check the routing key a client sent);
    ``as_json``, the only form that leaves the process (``/_emulator/received`` and ``--log``),
    redacts the request's credentials the way the gateway's logs do (``redact_secrets``)."""

    id: int
    at: float
    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: Any
    """Parsed JSON (or form fields as a dict), else the text as received."""
    note: str = ""
    """What the emulator did with it: ``created``, ``updated``, ``dropped: ...``, ``fault: 429``..."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """The credentials this request carried (headers, body fields, a webhook URL's secret part)."""

    def as_json(self) -> dict[str, Any]:
        """The JSON shape served on ``/_emulator/received`` and written to ``--log``, redacted."""
        return {
            "id": self.id, "at": self.at, "method": self.method,
            "path": _redacted(self.path, self.secrets), "status": self.status,
            "headers": _redacted(self.headers, self.secrets),
            "body": _redacted(self.body, self.secrets), "note": self.note,
        }  # fmt: skip


def _redacted(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` (JSON-shaped) with every string passed through the gateway's ``redact_secrets``."""
    if isinstance(value, str):
        return redact_secrets(value, secrets)
    if isinstance(value, dict):
        return {k: _redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, secrets) for v in value]
    return value


class Recorder:
    """The received log: in memory (the last ``keep`` requests) and optionally as JSON lines."""

    def __init__(self, keep: int = 10_000, log_path: Path | None = None) -> None:
        self.items: deque[Received] = deque(maxlen=keep)
        self.log_path = log_path
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(
        self, request: Request, body: Any, status: int, note: str = "", secrets: Sequence[str] = ()
    ) -> Received:
        """Record one request and what was answered; ``secrets``: credentials the request carries
        beyond those ``_credentials`` finds (the secret part of a Slack webhook URL)."""
        found = tuple(sorted({*_credentials(request, body), *secrets}, key=len, reverse=True))
        with self._lock:
            item = Received(
                id=next(self._ids), at=time.time(), method=request.method, path=request.url.path,
                status=status, headers=dict(request.headers), body=body, note=note, secrets=found,
            )  # fmt: skip
            self.items.append(item)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(item.as_json(), ensure_ascii=False) + "\n")
        return item

    def select(self, *, since: int = 0, path: str = "") -> list[Received]:
        """Requests with an id above ``since`` whose path starts with ``path``."""
        with self._lock:
            return [r for r in self.items if r.id > since and r.path.startswith(path)]

    def bodies(self, path: str = "", *, status: int | None = None) -> list[Any]:
        """The bodies received on paths starting with ``path`` (only those answered ``status``)."""
        return [r.body for r in self.select(path=path) if status is None or r.status == status]

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._lock:
            self.items.clear()


@dataclass
class FaultSwitch:
    """A fault applied to the next ``count`` requests (``None``: every request until cleared)."""

    fault: str | None = None
    count: int | None = None
    retry_after: int = 1
    hang_seconds: float = 30.0
    fired: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(
        self, fault: str | None, count: int | None = None, retry_after: int | None = None
    ) -> None:
        """Arm ``fault`` (or clear it with ``None``)."""
        if fault is not None and fault not in ALERT_FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(ALERT_FAULTS)}")
        with self._lock:
            self.fault, self.count = fault, count
            if retry_after is not None:
                self.retry_after = retry_after

    def take(self) -> str | None:
        """The fault to apply to this request, if any (counts it down)."""
        with self._lock:
            if self.fault is None:
                return None
            fault = self.fault
            if self.count is not None:
                self.count -= 1
                if self.count <= 0:
                    self.fault, self.count = None, None
            self.fired += 1
            return fault

    async def hang(self) -> None:
        """Hold the request as the ``timeout`` fault does."""
        await asyncio.sleep(self.hang_seconds)

    async def draw(self, fail_rate: float = 0.0, rng: random.Random | None = None) -> str | None:
        """The fault to answer this request with: the armed one, else a 500 with probability
        ``fail_rate``; ``timeout`` holds the request ``hang_seconds`` and then answers 500."""
        fault = self.take()
        if fault is None and fail_rate > 0 and rng is not None and rng.random() < fail_rate:
            fault = "500"
        if fault == "timeout":
            await self.hang()
            fault = "500"
        return fault

    def as_json(self) -> dict[str, Any]:
        """The switch as ``GET /_emulator/fault`` shows it."""
        return {"fault": self.fault, "count": self.count, "retry_after": self.retry_after,
                "hang_seconds": self.hang_seconds, "fired": self.fired}  # fmt: skip


class ControlOptions(TypedDict, total=False):
    """The fault and log switches every alerting emulator's ``create_app`` takes (all optional).

    ``fault``: answer the next ``fault_count`` requests (all when ``None``) with that fault;
    ``retry_after``: Retry-After seconds on an injected 429 (1); ``hang_seconds``: how long the
    ``timeout`` fault holds a request (30); ``fail_rate``: share of requests answered with a 500
    (0), drawn from ``random.Random(seed)`` (seed 0); ``log_path``: append every received request
    there as JSON lines.
    """

    fault: str | None
    fault_count: int | None
    retry_after: int
    hang_seconds: float
    fail_rate: float
    seed: int
    log_path: Path | None


class Controls(TypedDict):
    """An emulator's received log, fault switch and ``--fail-rate`` draw, built by ``controls``."""

    recorder: Recorder
    faults: FaultSwitch
    fail_rate: float
    rng: random.Random


def controls(options: ControlOptions) -> Controls:
    """The recorder, armed fault switch, fail rate and seeded RNG for ``options``."""
    faults = FaultSwitch(
        retry_after=options.get("retry_after", 1), hang_seconds=options.get("hang_seconds", 30.0)
    )
    faults.set(options.get("fault"), options.get("fault_count"))
    return Controls(
        recorder=Recorder(log_path=options.get("log_path")),
        faults=faults,
        fail_rate=options.get("fail_rate", 0.0),
        rng=random.Random(options.get("seed", 0)),  # noqa: S311 - repeatable test faults
    )


class SlidingWindow:
    """At most ``limit`` events per ``window`` seconds per key (PagerDuty's and Rootly's limits)."""

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float:
        """Count one event; 0 if allowed, else the seconds until one is allowed (not counted)."""
        if self.limit <= 0:
            return 0.0
        now = self.clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(hits[0] + self.window - now, 0.001)
        hits.append(now)
        return 0.0


class TokenBucket:
    """``rate`` events per second per key with bursts of ``burst`` (Slack's 1 message/s per channel)."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._state: dict[str, tuple[float, float]] = {}

    def hit(self, key: str) -> float:
        """Take one token; 0 if allowed, else the seconds until one is there (not taken)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, last = self._state.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._state[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._state[key] = (tokens - 1.0, now)
        return 0.0


def control_routes(
    recorder: Recorder, faults: FaultSwitch, state: Callable[[], Any]
) -> list[Route]:
    """The ``/_emulator/*`` routes over one emulator's recorder, fault switch and state view."""

    async def received(request: Request) -> Response:
        if request.method == "DELETE":
            recorder.clear()
            return json_response({"ok": True})
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            return json_response({"error": "since must be an integer"}, 400)
        items = recorder.select(since=since, path=request.query_params.get("path", ""))
        return json_response({"received": [r.as_json() for r in items]})

    async def fault(request: Request) -> Response:
        if request.method == "DELETE":
            faults.set(None)
        elif request.method == "POST":
            try:
                body = json.loads(await request.body() or b"{}")
                count = body.get("count")
                retry_after = body.get("retry_after")
                faults.set(
                    body.get("fault"),
                    None if count is None else int(count),
                    None if retry_after is None else int(retry_after),
                )
            except (ValueError, TypeError, AttributeError) as exc:
                return json_response({"error": str(exc), "faults": list(ALERT_FAULTS)}, 400)
        return json_response(faults.as_json())

    async def show_state(_request: Request) -> Response:
        return json_response(state())

    return [
        Route("/_emulator/received", received, methods=["GET", "DELETE"]),
        Route("/_emulator/fault", fault, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/state", show_state, methods=["GET"]),
    ]
