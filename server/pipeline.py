"""The request pipeline every OpenAI-compatible route goes through.

A route is an *operation*: the one step that is its own. The pipeline does the rest, in this
order, in one coroutine per request (each coroutine in the chain is paid for again every time
the upstream call resumes, so the steps are not handlers wrapped around handlers):

``UpstreamOperation`` (``POST /v1/chat/completions``, ``POST /v1/embeddings``):

1. authenticate the key (cached: ``server/auth.py``);
2. open the request's ``Call`` (exactly one usage record, metrics, log fields);
3. read the body under the size cap and decode the JSON object (``server/body.py``);
4. validate it once into the operation's ``request`` model (steering fields refused);
5. check the key's model allow-list and resolve the model to its candidates;
6. admit the request against the key's ``rpm``/``tpm`` (``operation.tokens`` estimates);
7. **the operation's step**: ``upstream`` starts the router's call, which the pipeline awaits,
   cancelled when the client hangs up (``server/disconnect.py``), then ``respond`` answers;
8. any failure is recorded on the ``Call`` and answered with the OpenAI error envelope.

``KeyOperation`` (``GET /v1/models``, ``GET /api/providers``): steps 1 and 8 around the
operation's ``answer``, sent as JSON.

``ConversationOperation`` (``POST /api/chat``): the ``UpstreamOperation`` steps with step 6
moved before step 5 and the operation's ``prepare`` between them (the conversation loaded for the
key's owner, the history fitted to the model's window, the ``ChatRequest`` built): a call refused
by the key's limits reads no conversation and makes no upstream call. ``tokens`` is asked twice:
for the body (reserved at admission) and for the prepared request (the reservation raised to it,
never refused); a quota on the model version is stepped once prepared (its model known). Its
``respond`` stores the turn.

``AdminOperation`` (``/admin/v1/...``, and with another ``authorize`` the conversation routes
``/api/conversations``, ``/api/messages``): step 1, then the route's ``authorize`` (the caller as
an admin ``Actor``, or 403: ``server/routes/admin.py:require_admin``; the conversations' owner:
``require_chat``), step 6 against the key's
``rpm`` with no tokens, step 3 for ``POST`` and ``PATCH`` (an empty body is ``{}``), the
operation's ``run``, its answer sent as JSON (a list as ``{"object": "list", "data": [...]}``),
and step 8.

Routes are pure ASGI apps (no Starlette ``Request``/``Response`` objects). ``GatewayApp``
dispatches an operation's exact method and path to it directly, behind the same middleware stack
as every other route; other methods on its path (405), ``HEAD``, and paths with parameters go
through Starlette's router, which calls the same app (``routes_for``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from llmgw.admin.ops import Actor
from llmgw.errors import LlmgwError
from llmgw.routing.outcome import Routed
from llmgw.routing.resolve import Target
from llmgw.server.accounting import Call
from llmgw.server.body import decode_json, parse, receive_body
from llmgw.server.errors import error_response
from llmgw.server.middleware import RequestContext
from llmgw.server.state import Gateway

__all__ = [
    "SERVED_BY",
    "AdminOperation",
    "AdminRoute",
    "Authorize",
    "KeyOperation",
    "KeyRoute",
    "UpstreamOperation",
    "UpstreamRoute",
    "routes_for",
    "send_json",
    "send_routed_json",
]

SERVED_BY = "x-llmgw-served-by"

_JSON = (b"content-type", b"application/json")
_SERVED_BY = SERVED_BY.encode("ascii")


Req = TypeVar("Req", bound=BaseModel)
Res = TypeVar("Res")


class UpstreamOperation(Generic[Req, Res]):
    """A route that calls an upstream through the router: its own step and its facts."""

    method: ClassVar[str] = "POST"
    path: ClassVar[str]
    endpoint: ClassVar[str]
    """The usage record's ``endpoint`` (``chat``, ``embeddings``)."""
    request: type[Req]
    """The body's model (validated once, at the edge)."""

    prepares: ClassVar[bool] = False
    """Whether the pipeline awaits ``prepare`` after validating the body (a conversation route);
    a class attribute read once per request, so the other routes pay one attribute look-up."""

    async def prepare(self, g: Gateway, key: Any, req: Req) -> Req:
        """Turn the validated body into what the next steps read (``ConversationOperation``:
        the conversation loaded for the key's owner and fitted to the model's window)."""
        return req

    def model(self, req: Req) -> str:
        """The model or alias the request names."""
        raise NotImplementedError

    def tokens(self, req: Req) -> int:
        """The request's token estimate, reserved against the key's ``tpm`` (an operation that
        ``prepares`` is asked for its body at admission, then for what ``prepare`` returned)."""
        return 0

    def watch_after(self, req: Req) -> float:
        """Seconds before the client's disconnect is watched (0: from the start)."""
        return 0.0

    def upstream(
        self, g: Gateway, call: Call, req: Req, candidates: Sequence[Target]
    ) -> Awaitable[Res]:
        """Start the upstream call (through ``g.router`` with ``call.trace``); the pipeline awaits it."""
        raise NotImplementedError

    def respond(
        self,
        call: Call,
        req: Req,
        result: Res,
        t0: float,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> Awaitable[None]:
        """The answer to ``result`` that finishes ``call`` (``t0``: when the upstream began).

        It returns the awaitable the pipeline awaits (``send_routed_json(...)``, say), rather than
        awaiting it in a coroutine of its own: one coroutine fewer per request."""
        raise NotImplementedError


class KeyOperation:
    """A route that answers from the gateway's own state to any valid key."""

    method: ClassVar[str] = "GET"
    path: ClassVar[str]

    async def answer(self, g: Gateway, key: Any, scope: Scope) -> object:
        """The JSON-able answer for ``key`` (``scope["path_params"]`` holds path parameters)."""
        raise NotImplementedError


class AdminOperation:
    """A route of the admin API: one operation run for an admin (``AdminRoute`` authorizes)."""

    method: str = "GET"
    path: str

    async def run(self, g: Gateway, actor: Actor, scope: Scope, body: dict[str, Any]) -> object:
        """The JSON-able answer (a list is sent as ``{"object": "list", "data": [...]}``);
        ``body`` is the decoded JSON object of a ``POST`` or ``PATCH`` (``{}`` otherwise)."""
        raise NotImplementedError


Authorize = Callable[[Any, Scope], Any]
"""The route's check: the authenticated key and the request's scope to whom the operation runs
for, or ``PermissionDenied``: the acting admin ``Actor`` (``server/routes/admin.py:require_admin``),
or the owner of conversations (``server/routes/conversations.py:require_chat``)."""

_WITH_BODY = frozenset({"POST", "PATCH"})
_NO_TARGET = False
"""``KeyLimits.admit``'s target before the model is known: budgets and the user's quota apply,
version quotas do not."""


class UpstreamRoute(Generic[Req, Res]):
    """The pipeline for one ``UpstreamOperation``, as a pure ASGI app (see the module docstring)."""

    __slots__ = ("g", "op")

    def __init__(self, gateway: Gateway, op: UpstreamOperation[Req, Res]) -> None:
        self.g = gateway
        self.op = op

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        g, op = self.g, self.op
        try:
            rc: RequestContext = scope["llmgw"]
            key = await g.auth.authenticate(scope["headers"])
            rc.key_prefix = key.prefix
            call = Call(g, rc, key, op.endpoint)
            try:
                req = parse(op.request, decode_json(await receive_body(scope, receive, g.max_body)))
                if op.prepares:
                    req, candidates = await self._prepared(call, key, req)
                else:
                    model = op.model(req)
                    g.auth.check_model(key, model)
                    candidates = g.resolver.candidates(model)
                    call.routed(candidates[0])  # replaced by the candidate that actually served
                    if key.rpm or key.tpm or g.limits.extra:
                        call.grant = await g.limits.admit(key, op.tokens(req), candidates[0])
                t0 = time.perf_counter()
                result = await g.disconnects.until(
                    receive, op.upstream(g, call, req, candidates), after=op.watch_after(req)
                )
                await op.respond(call, req, result, t0, scope, receive, send)
            except BaseException as exc:
                call.fail(exc)  # a no-op once the answer has recorded the call
                raise
        except (LlmgwError, ValidationError) as exc:
            await error_response(exc, g.scrubber)(scope, receive, send)

    async def _prepared(self, call: Call, key: Any, req: Req) -> tuple[Req, Sequence[Target]]:
        """Steps 5 and 6 of an operation that ``prepares`` (``/api/chat``), admission first: a
        refused call (429) never reaches ``prepare``, so it reads no conversation and makes no
        upstream call (a token count). The ``tpm`` reservation is ``op.tokens`` of the body; once
        prepared, the grant is raised to ``op.tokens`` of the prepared request (charged, not
        refused: the next calls pay it back). Off the hot path: awaited once, before the
        upstream call, and only by such operations."""
        g, op = self.g, self.op
        hold_later = False
        if key.rpm or key.tpm or g.limits.extra:
            # The model version is not known yet: the key's limits, its user's quota and the
            # budgets here; a version quota applies to the prepared request's candidate below.
            # The budgets' hold is priced at the candidate of the model the body names (a
            # later turn that names none holds once prepared, with the version's quotas).
            price = self._named(op.model(req)) if g.limits.budgets_hard else None
            hold_later = price is False
            call.grant = await g.limits.admit(key, op.tokens(req), _NO_TARGET, price)
        req = await op.prepare(g, key, req)
        model = op.model(req)
        g.auth.check_model(key, model)
        candidates = g.resolver.candidates(model)
        call.routed(candidates[0])  # replaced by the candidate that actually served
        if call.grant is not None:
            call.grant.raise_to(op.tokens(req))
        if g.limits.quotas.versions or hold_later:
            # The version's quotas (and a hold not taken at admission), now that the model is
            # known: a second limiter call, made only by a prepared call of a key or user with
            # such a quota, or a later turn without a model under a hard-stop budget.
            call.grant = await g.limits.admit_version(
                key, op.tokens(req), candidates[0], call.grant, hold_later
            )
        return req, candidates

    def _named(self, model: str) -> Any:
        """The first candidate of the model a turn's body names (the budgets' hold is priced
        at it), ``False`` when it names none or an unknown one (held once prepared)."""
        if not model:
            return False
        try:
            return self.g.resolver.candidates(model)[0]
        except LlmgwError:  # prepare answers it (404), after admission as before
            return False


class KeyRoute:
    """The pipeline for one ``KeyOperation``: authenticate, answer as JSON, errors as envelopes."""

    __slots__ = ("g", "op")

    def __init__(self, gateway: Gateway, op: KeyOperation) -> None:
        self.g = gateway
        self.op = op

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        g = self.g
        try:
            rc: RequestContext = scope["llmgw"]
            key = await g.auth.authenticate(scope["headers"])
            rc.key_prefix = key.prefix
            await send_json(send, orjson.dumps(await self.op.answer(g, key, scope)))
        except (LlmgwError, ValidationError) as exc:
            await error_response(exc, g.scrubber)(scope, receive, send)


class AdminRoute:
    """The pipeline for one ``AdminOperation`` (see the module docstring)."""

    __slots__ = ("authorize", "g", "op")

    def __init__(self, gateway: Gateway, op: AdminOperation, authorize: Authorize) -> None:
        self.g = gateway
        self.op = op
        self.authorize = authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        g, op = self.g, self.op
        try:
            rc: RequestContext = scope["llmgw"]
            key = await g.auth.authenticate(scope["headers"])
            rc.key_prefix = key.prefix
            actor = self.authorize(key, scope)
            if key.rpm or key.tpm:
                grant = await g.limits.admit(key, 0)
                if grant is not None:
                    grant.settle(0)
            body: dict[str, Any] = {}
            if op.method in _WITH_BODY:
                raw = await receive_body(scope, receive, g.max_body)
                if raw.strip():
                    body = decode_json(raw)
            result = await op.run(g, actor, scope, body)
            if isinstance(result, list):
                result = {"object": "list", "data": result}
            await send_json(send, orjson.dumps(result))
        except (LlmgwError, ValidationError) as exc:
            await error_response(exc, g.scrubber, hint=True)(scope, receive, send)


async def send_json(
    send: Send, body: bytes, headers: Sequence[tuple[bytes, bytes]] = (), status: int = 200
) -> None:
    """Send ``body`` (JSON) as the whole response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode("ascii")), _JSON, *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_routed_json(call: Call, routed: Routed[Target, Any], t0: float, send: Send) -> None:
    """Finish ``call`` with a routed JSON result (its ``body`` and ``usage``) and send it, naming
    the candidate that served and the key's rate-limit state in the headers."""
    call.served(routed.candidate, routed.attempts)
    result = routed.value
    choices = result.body.get("choices")
    if choices:  # a chat completion: why it ended (``length``: it hit max_tokens)
        reason = choices[0].get("finish_reason")
        call.event.finish_reason = reason[:32] if isinstance(reason, str) else None
    synced = call.finish(200, None, result.usage, upstream_seconds=time.perf_counter() - t0)
    if synced is not None:  # usage.durability = "power": the record is on disk before the answer
        await synced
    body = orjson.dumps(result.body)
    headers = [
        (b"content-length", str(len(body)).encode("ascii")),
        _JSON,
        (_SERVED_BY, routed.served_by.encode("latin-1")),
    ]
    if call.grant is not None:
        headers += call.grant.raw_headers()
    # The two sends inline, not through send_json: a coroutine fewer on the hottest path.
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def routes_for(
    g: Gateway, operations: Sequence[UpstreamOperation[Any, Any] | KeyOperation]
) -> list[Route]:
    """Starlette routes for ``operations`` (each an ASGI app of the pipeline, with its method)."""
    routes = []
    for op in operations:
        app = UpstreamRoute(g, op) if isinstance(op, UpstreamOperation) else KeyRoute(g, op)
        routes.append(Route(op.path, app, methods=[op.method]))
    return routes
