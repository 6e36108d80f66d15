"""Conversations: ``POST /api/chat`` (a turn, JSON or SSE), ``/api/messages``, ``/api/conversations``.

``POST /api/chat`` is a ``ConversationOperation``: the chat pipeline (``server/pipeline.py``) with
its ``prepare`` step, run only once the key's rpm/tpm admitted the call (a refused call reads no
conversation and makes no token-count call), which loads the conversation for the key's owner (``ConversationStore``),
adds the new messages, fits the history to the model's context window
(``llmgw.conversations.context``) and builds the ``ChatRequest``; the upstream call is the chat
completions route's own. The answer stores the turn (the new messages and the answer, with its
tokens and cost) in one transaction before it is sent (JSON) or before ``[DONE]`` (SSE); a failed
call stores nothing. A turn may name another model or alias than the last one: the history is
the conversation's, whoever answers it.

The other routes are ``AdminOperation``s run with ``require_chat`` instead of the admin check:
any key (a token needs the ``chat`` scope) reads and changes only its owner's conversations;
another owner's is 404 like an unknown id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from llmgw.admin.chat import SETTING_NAMES
from llmgw.errors import InvalidRequest, LlmgwError, PermissionDenied
from llmgw.providers.base import ChatChunk
from llmgw.routing.outcome import OpenedStream, Routed
from llmgw.routing.resolve import Target
from llmgw.schemas import ChatRequest
from llmgw.schemas.openai import MAX_MESSAGES, ChatMessage, Tool, _ModelName
from llmgw.server.accounting import Call
from llmgw.server.pipeline import SERVED_BY, AdminOperation, AdminRoute, UpstreamOperation
from llmgw.server.ratelimits import (
    DEFAULT_COMPLETION_RESERVE,
    estimate_chat_tokens,
    estimate_text_tokens,
)
from llmgw.server.routes.chat import ChatCompletions, Result
from llmgw.server.state import Gateway
from llmgw.server.streaming import SSEStream, StreamOutcome

if TYPE_CHECKING:  # imported on first use: `llmgw serve` does not load them until a chat turn
    from llmgw.conversations.store import ConversationStore, Owner

__all__ = ["ConversationChat", "conversation_routes", "require_chat"]

CONVERSATION_HEADER = "x-llmgw-conversation-id"
TOKEN_COUNT_SECONDS = 5.0
"""How long a provider's token count may take before the estimate is used instead."""

SETTINGS = SETTING_NAMES
"""Generation settings a turn may set; the conversation keeps them for the next turns."""


class ChatTurnBody(BaseModel):
    """The body of ``POST /api/chat``."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: str | None = Field(default=None, max_length=64)
    model: _ModelName | None = None
    message: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, max_length=256)
    system: str | None = None
    title: str | None = Field(default=None, max_length=200)
    stream: StrictBool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None


@dataclass(slots=True)
class PreparedTurn:
    """A turn ready for the upstream: the request, and what to store once it is answered."""

    owner: Owner
    conversation_id: uuid.UUID
    new_conversation: bool
    seen: int
    chat: ChatRequest
    new: list[dict[str, Any]]
    context: dict[str, Any]
    system: str | None
    settings: dict[str, Any]
    title: str
    stored: list[dict[str, Any]] = field(default_factory=list)


def store_of(g: Gateway) -> ConversationStore:
    """The gateway's conversation store (made on first use)."""
    if g.conversations is None:
        from llmgw.conversations.store import ConversationStore

        g.conversations = ConversationStore(g.engine)
    store: ConversationStore = g.conversations
    return store


async def _counts(
    g: Gateway, candidates: Sequence[Target], messages: list[dict[str, Any]], window: int | None
) -> tuple[list[int], str]:
    """Tokens per message: estimated, or the provider's own count where it has one (GigaChat)
    and the estimate comes within half the window (a short conversation costs no upstream call;
    the count matters only near the limit)."""
    from llmgw.conversations.context import estimate, message_text

    texts = [message_text(m) for m in messages]
    guess = estimate(texts)
    if window is None or sum(guess) <= window // 2:
        return guess, "estimate"
    first = candidates[0] if candidates else None
    provider = g.providers.get(first.provider) if first is not None else None
    count = getattr(provider, "count_tokens", None)
    if first is not None and count is not None:
        try:
            counted = await asyncio.wait_for(count(texts, first.model), TOKEN_COUNT_SECONDS)
            return [n + 4 for n in counted], f"{first.provider} tokens/count"
        except (LlmgwError, TimeoutError, OSError):
            return guess, "estimate (the provider's count failed)"
    return guess, "estimate"


def _window(g: Gateway, candidates: Sequence[Target]) -> int | None:
    """The smallest known context window among the candidates (the turn may reach any)."""
    windows = [w for c in candidates if (w := g.catalog.window_of(c.provider, c.model))]
    return min(windows) if windows else None


class ConversationChat(UpstreamOperation[Any, Result]):
    """``POST /api/chat``: one turn of a conversation (see the module docstring)."""

    path = "/api/chat"
    endpoint = "chat"
    request = ChatTurnBody
    prepares = True

    def __init__(self) -> None:
        self._chat = ChatCompletions()

    async def prepare(self, g: Gateway, key: Any, req: Any) -> PreparedTurn:
        """Load the conversation, add the new messages, fit the history, build the request."""
        from llmgw.conversations.context import fit
        from llmgw.conversations.store import Owner

        body: ChatTurnBody = req
        owner = Owner.of(key)
        store = store_of(g)
        if body.conversation_id is not None:
            conv, history = await asyncio.to_thread(store.history, owner, body.conversation_id)
            cid, new_conv, seen = uuid.UUID(conv["id"]), False, conv["messages"]
        else:
            conv, history = None, []
            cid, new_conv, seen = uuid.uuid4(), True, 0
        model = body.model or (conv["model"] if conv is not None else None)
        if not model:
            raise InvalidRequest(
                "model is required to start a conversation",
                param="model",
                hint="name a provider/model or an alias; later turns may leave it out",
            )
        system = body.system if body.system is not None else (conv or {}).get("system")
        settings = dict((conv or {}).get("settings") or {})
        given = body.model_dump(include=set(SETTINGS), exclude_none=True, mode="json")
        settings.update(given)
        new: list[dict[str, Any]] = []
        if body.message is not None:
            new.append({"role": "user", "content": body.message})
        new += [m.model_dump(exclude_none=True, mode="json") for m in body.messages or ()]
        if not new:
            raise InvalidRequest(
                "the turn has no message", param="message", hint="send message or messages"
            )
        g.auth.check_model(key, model)  # before the history is counted against its window
        candidates = g.resolver.candidates(model)
        sys_msgs = [{"role": "system", "content": system}] if system else []
        window = _window(g, candidates)
        counts, counted_by = await _counts(g, candidates, [*sys_msgs, *history, *new], window)
        reserve = settings.get("max_completion_tokens") or settings.get("max_tokens")
        fitted = fit(
            system,
            history,
            new,
            window=window,
            reserve=reserve,
            counts=counts,
            counted_by=counted_by,
            max_messages=MAX_MESSAGES,
        )
        wire = {"model": model, "messages": fitted.messages, "stream": body.stream, **settings}
        if body.stream:
            wire["stream_options"] = {"include_usage": True}
        chat = ChatRequest.model_validate(wire)
        first_text = next((m.get("content") for m in new if m.get("role") == "user"), None)
        title = body.title or (conv["title"] if conv is not None else None)
        title = title or (str(first_text or "")[:60].strip() or "Conversation")
        return PreparedTurn(
            owner, cid, new_conv, seen, chat, new, fitted.report, system, settings, title
        )

    def model(self, req: Any) -> str:
        """The turn's model or alias (at admission: the one the body names, else ``""``)."""
        if isinstance(req, PreparedTurn):
            return str(req.chat.model)
        return str(req.model or "")

    def tokens(self, req: Any) -> int:
        """At admission (the body, before anything is read): the new messages and the system
        prompt given, plus the answer's cap given (else the default reserve). Once prepared: the
        fitted prompt's estimate plus the kept cap (the pipeline raises the reservation to it)."""
        if isinstance(req, PreparedTurn):
            return estimate_chat_tokens(req.chat)
        from llmgw.conversations.context import message_text

        body: ChatTurnBody = req
        texts = [body.message or "", body.system or ""]
        texts += [message_text(m.model_dump(mode="json")) for m in body.messages or ()]
        cap = body.max_completion_tokens or body.max_tokens or DEFAULT_COMPLETION_RESERVE
        return estimate_text_tokens(texts) + cap

    def watch_after(self, req: Any) -> float:
        """As chat completions."""
        return self._chat.watch_after(req.chat)

    def upstream(
        self, g: Gateway, call: Call, req: Any, candidates: Sequence[Target]
    ) -> Awaitable[Result]:
        """The chat completions route's upstream call with the fitted request."""
        call.meta()["conversation_id"] = str(req.conversation_id)
        return self._chat.upstream(g, call, req.chat, candidates)

    def respond(
        self,
        call: Call,
        req: Any,
        result: Result,
        t0: float,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> Awaitable[None]:
        """Store the turn, then the JSON answer; or relay the stream and store it before
        ``[DONE]``."""
        if isinstance(result, Routed):
            return self._json(call, req, result, t0, send)
        return self._relay(call, req, result, t0, scope, receive, send)

    async def _store(self, call: Call, turn: PreparedTurn, answer: dict[str, Any]) -> None:
        from llmgw.conversations.store import Turn

        ev = call.event
        target = call.target
        record = Turn(
            messages=[*turn.new, answer],
            model=turn.chat.model,
            answered_by=f"{target.provider}/{target.model}" if target is not None else None,
            prompt_tokens=ev.prompt_tokens,
            completion_tokens=ev.completion_tokens,
            cost=Decimal(ev.cost or 0),
        )
        turn.stored = await asyncio.to_thread(
            store_of(call.gateway).record_turn,
            turn.owner,
            turn.conversation_id,
            new=turn.new_conversation,
            seen=turn.seen,
            turn=record,
            title=turn.title,
            system=turn.system,
            settings=turn.settings,
        )

    async def _store_after(
        self,
        synced: Awaitable[None] | None,
        call: Call,
        turn: PreparedTurn,
        answer: dict[str, Any],
    ) -> None:
        if synced is not None:
            await synced
        await self._store(call, turn, answer)

    def _summary(self, turn: PreparedTurn) -> dict[str, Any]:
        return {
            "id": str(turn.conversation_id),
            "created": turn.new_conversation,
            "title": turn.title,
            "model": turn.chat.model,
            "context": turn.context,
            "message_ids": [m["id"] for m in turn.stored],
        }

    async def _json(
        self, call: Call, turn: PreparedTurn, routed: Routed[Target, Any], t0: float, send: Send
    ) -> None:
        import time

        call.served(routed.candidate, routed.attempts)
        result = routed.value
        choices = result.body.get("choices") or [{}]
        reason = choices[0].get("finish_reason")  # recorded as /v1/chat/completions records it
        call.event.finish_reason = reason[:32] if isinstance(reason, str) else None
        synced = call.finish(200, None, result.usage, upstream_seconds=time.perf_counter() - t0)
        if synced is not None:
            await synced
        message = dict(choices[0].get("message") or {"role": "assistant", "content": None})
        answer = {k: message.get(k) for k in ("role", "content", "tool_calls") if k in message}
        await self._store(call, turn, answer)
        body = orjson.dumps({**result.body, "conversation": self._summary(turn)})
        headers = [
            (b"content-length", str(len(body)).encode("ascii")),
            (b"content-type", b"application/json"),
            (SERVED_BY.encode("ascii"), routed.served_by.encode("latin-1")),
            (CONVERSATION_HEADER.encode("ascii"), str(turn.conversation_id).encode("ascii")),
        ]
        if call.grant is not None:
            headers += call.grant.raw_headers()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _relay(
        self,
        call: Call,
        turn: PreparedTurn,
        result: OpenedStream[Target, ChatChunk],
        t0: float,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        call.served(result.candidate, result.attempts)
        synced = call.begin_stream()
        if synced is not None:
            await synced
        collected = Collector()
        collected.add(result.first_chunk)

        def finished(out: StreamOutcome) -> Awaitable[None] | None:
            # Not a coroutine function: SSEStream awaits what this returns only on success
            # (before [DONE]); after a failure or a hang-up the usage is recorded all the same.
            if out.partial:
                call.meta()["partial"] = True
            if out.finish_reason is not None:
                call.event.finish_reason = out.finish_reason[:32]
            done = call.finish(
                out.status,
                out.error_type,
                out.usage,
                upstream_seconds=out.finished_at - t0,
                ttft=out.ttft,
                end=out.finished_at,
            )
            if out.status == 200 and not out.partial:
                return self._store_after(done, call, turn, collected.message())
            return done

        g = call.gateway
        await SSEStream(
            result.first_chunk,
            collected.wrap(result.chunks),
            include_usage=True,
            start=call.rc.start,
            drain=g.drain,
            scrubber=g.scrubber,
            on_finish=finished,
            headers={
                SERVED_BY: result.served_by,
                CONVERSATION_HEADER: str(turn.conversation_id),
                **(dict(call.grant.headers) if call.grant is not None else {}),
            },
        )(scope, receive, send)


class Collector:
    """The assistant message assembled from a stream's deltas (content and tool calls)."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}

    def add(self, chunk: ChatChunk) -> None:
        """Fold one chunk's delta in."""
        data = chunk.data
        if not data:
            return
        for choice in data.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.content.append(delta["content"])
            for tc in delta.get("tool_calls") or ():
                slot = self.calls.setdefault(
                    int(tc.get("index", 0)),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if tc.get("id"):
                    slot["id"] = tc["id"]
                fn = tc.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""

    def message(self) -> dict[str, Any]:
        """The assistant message the stream carried."""
        out: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.calls:
            out["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        return out

    def wrap(self, chunks: AsyncIterator[ChatChunk]) -> _Tap:
        """``chunks``, folded in as they pass."""
        return _Tap(self, chunks)


class _Tap:
    """An async iterator passing chunks through a ``Collector``; ``aclose`` closes the source."""

    def __init__(self, collector: Collector, source: AsyncIterator[ChatChunk]) -> None:
        self._collector = collector
        self._source = source

    def __aiter__(self) -> _Tap:
        return self

    async def __anext__(self) -> ChatChunk:
        chunk = await anext(self._source)
        self._collector.add(chunk)
        return chunk

    async def aclose(self) -> None:
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()


# -- the conversation management routes --------------------------------------------------------


def require_chat(key: Any, scope: Scope) -> Owner:
    """The owner of the caller's conversations; a token without the ``chat`` scope is 403."""
    scopes = getattr(key, "scopes", None)
    if scopes is not None and "chat" not in scopes:
        raise PermissionDenied(
            "this token does not carry the chat scope",
            code="insufficient_scope",
            hint="log in (or create the token) with --scope chat",
        )
    from llmgw.conversations.store import Owner

    return Owner.of(key)


def _query(scope: Scope) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


def _limit(scope: Scope) -> int:
    text = _query(scope).get("limit", "100")
    if not text.isdigit():
        raise InvalidRequest(f"invalid limit {text[:20]!r}: use 1 to 1000", param="limit")
    return int(text)


class _Op(AdminOperation):
    """One conversation operation for the caller's owner, run in a worker thread."""

    def __init__(self, method: str, path: str, handler: Any) -> None:
        self.method = method
        self.path = path
        self.handler = handler

    async def run(self, g: Gateway, actor: Any, scope: Scope, body: dict[str, Any]) -> object:
        params = scope.get("path_params", {})
        return await asyncio.to_thread(self.handler, store_of(g), actor, params, scope, body)


def _conversation_id(params: dict[str, Any], scope: Scope) -> str:
    cid = params.get("id") or _query(scope).get("conversation_id")
    if not cid:
        raise InvalidRequest("conversation_id is required", param="conversation_id")
    return str(cid)


def _append(s: ConversationStore, o: Owner, p: Any, scope: Scope, b: dict[str, Any]) -> object:
    cid = b.get("conversation_id")
    if not isinstance(cid, str):
        raise InvalidRequest("conversation_id is required", param="conversation_id")
    raw = b.get("messages")
    if raw is None and "role" in b:
        raw = [{k: v for k, v in b.items() if k != "conversation_id"}]
    if not isinstance(raw, list) or not raw or len(raw) > 256:
        raise InvalidRequest("send messages: a list of 1 to 256 messages", param="messages")
    try:
        msgs = [ChatMessage.model_validate(m).model_dump(exclude_none=True) for m in raw]
    except ValueError:
        raise InvalidRequest("a message is not a valid chat message", param="messages") from None
    return s.append(o, cid, msgs)


def _export(s: ConversationStore, o: Owner, p: Any, scope: Scope, b: dict[str, Any]) -> object:
    fmt = _query(scope).get("format", "json")
    if fmt not in ("json", "markdown"):
        raise InvalidRequest(f"invalid format {fmt[:20]!r}: use json or markdown", param="format")
    data = s.export(o, p["id"])
    if fmt == "markdown":
        from llmgw.conversations.store import markdown

        return {"id": data["id"], "format": "markdown", "content": markdown(data)}
    return {**data, "format": "json"}


def _rename(s: ConversationStore, o: Owner, p: Any, scope: Scope, b: dict[str, Any]) -> object:
    title = b.get("title")
    if not isinstance(title, str):
        raise InvalidRequest("title is required", param="title")
    return s.rename(o, p["id"], title)


_OPS: list[tuple[str, str, Any]] = [
    ("GET", "/api/conversations", lambda s, o, p, q, b: s.list(o, limit=_limit(q))),
    ("GET", "/api/conversations/{id}", lambda s, o, p, q, b: s.get(o, p["id"])),
    ("PATCH", "/api/conversations/{id}", _rename),
    ("DELETE", "/api/conversations/{id}", lambda s, o, p, q, b: s.delete(o, p["id"])),
    ("GET", "/api/conversations/{id}/export", _export),
    ("GET", "/api/messages", lambda s, o, p, q, b: s.messages(o, _conversation_id(p, q))),
    ("POST", "/api/messages", _append),
]


def conversation_routes(g: Gateway) -> list[Route]:
    """The conversation management routes bound to gateway ``g`` (``/api/chat`` is listed with
    the upstream operations in ``create_app``)."""
    by_path: dict[str, list[_Op]] = {}
    for method, path, handler in _OPS:
        by_path.setdefault(path, []).append(_Op(method, path, handler))
    routes = []
    for path, ops in by_path.items():
        apps = {op.method: AdminRoute(g, op, require_chat) for op in ops}
        routes.append(Route(path, _ByMethod(apps), methods=list(apps)))
    return routes


class _ByMethod:
    """One path's operations by method, as one ASGI app (``HEAD`` runs ``GET``)."""

    def __init__(self, apps: dict[str, AdminRoute]) -> None:
        self.apps = apps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        await self.apps[method](scope, receive, send)
