"""``ConversationStore``: conversations and messages in the database, always for one owner.

The owner is the user of the calling key (or OAuth token), or the key itself when it has no
user. Every read and write names the owner in its ``WHERE``: another owner's conversation is
"not found" (404, not 403: its existence is not told, security.md API1). A turn (the new
messages and the answer) is written in one transaction, the conversation with its first turn,
so a failed call leaves nothing half-written. Records are JSON-ready (ISO 8601 UTC times, costs
as fixed-point strings, UUIDs as strings).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmgw.errors import Conflict, InvalidRequest, NotFound
from llmgw.storage.conversation_tables import Conversation, ConversationMessage

__all__ = ["MAX_LIST", "Owner", "ConversationStore", "markdown"]

_C = Conversation.__table__  # type: ignore[attr-defined]
_M = ConversationMessage.__table__  # type: ignore[attr-defined]
MAX_LIST = 1000
ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose conversations: a user's, or (no user) one key's."""

    user_id: uuid.UUID | None
    key_id: uuid.UUID | None

    @classmethod
    def of(cls, key: Any) -> Owner:
        """The owner for an authenticated key or token."""
        user_id = getattr(key, "user_id", None)
        if user_id is not None:
            return cls(uuid.UUID(str(user_id)), None)
        return cls(None, uuid.UUID(str(key.id)))

    def where(self) -> Any:
        """The ``WHERE`` clause selecting this owner's conversations."""
        if self.user_id is not None:
            return _C.c.user_id == self.user_id
        return sa.and_(_C.c.user_id.is_(None), _C.c.key_id == self.key_id)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _money(value: Any) -> str:
    return format(Decimal(value or 0), "f")


def conversation_record(m: Any) -> dict[str, Any]:
    """A conversation row as a record."""
    return {
        "id": str(m["id"]),
        "object": "conversation",
        "title": m["title"],
        "model": m["model"],
        "system": m["system"],
        "settings": m["settings"] or {},
        "created_at": _iso(m["created_at"]),
        "updated_at": _iso(m["updated_at"]),
        "messages": m["messages"],
        "usage": {
            "prompt_tokens": m["prompt_tokens"],
            "completion_tokens": m["completion_tokens"],
            "total_tokens": m["prompt_tokens"] + m["completion_tokens"],
            "cost": _money(m["cost"]),
        },
    }


def message_record(m: Any) -> dict[str, Any]:
    """A message row as a record (its OpenAI fields plus id, seq, model, usage, time)."""
    return {
        "id": str(m["id"]),
        "object": "conversation.message",
        "conversation_id": str(m["conversation_id"]),
        "seq": m["seq"],
        "role": m["role"],
        "content": m["content"],
        "name": m["name"],
        "tool_calls": m["tool_calls"],
        "tool_call_id": m["tool_call_id"],
        "model": m["model"],
        "prompt_tokens": m["prompt_tokens"],
        "completion_tokens": m["completion_tokens"],
        "cost": _money(m["cost"]),
        "created_at": _iso(m["created_at"]),
    }


def wire_message(m: dict[str, Any]) -> dict[str, Any]:
    """A stored message as the OpenAI message sent upstream."""
    out: dict[str, Any] = {"role": m["role"], "content": m["content"]}
    if m.get("name"):
        out["name"] = m["name"]
    if m.get("tool_calls"):
        out["tool_calls"] = m["tool_calls"]
    if m.get("tool_call_id"):
        out["tool_call_id"] = m["tool_call_id"]
    return out


def _parse_id(conversation_id: str | uuid.UUID) -> uuid.UUID:
    try:
        return uuid.UUID(str(conversation_id))
    except ValueError:
        raise NotFound(
            f"no conversation {str(conversation_id)[:64]!r}", param="conversation_id"
        ) from None


def _not_found(conversation_id: uuid.UUID) -> NotFound:
    return NotFound(
        f"no conversation {str(conversation_id)!r}",
        hint="GET /api/conversations lists yours",
        param="conversation_id",
    )


@dataclass(slots=True)
class Turn:
    """What one ``/api/chat`` call adds: the new messages and the answer, with its usage."""

    messages: list[dict[str, Any]]
    model: str
    answered_by: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


class ConversationStore:
    """Conversations on ``engine`` (synchronous; the server calls it in a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _row(self, conn: Connection, owner: Owner, cid: uuid.UUID) -> Any:
        row = conn.execute(sa.select(_C).where(_C.c.id == cid, owner.where())).first()
        if row is None:
            raise _not_found(cid)
        return row._mapping

    def get(self, owner: Owner, conversation_id: str | uuid.UUID) -> dict[str, Any]:
        """One conversation's record."""
        cid = _parse_id(conversation_id)
        with self.engine.connect() as conn:
            return conversation_record(self._row(conn, owner, cid))

    def history(
        self, owner: Owner, conversation_id: str | uuid.UUID
    ) -> tuple[dict[str, Any], builtins.list[dict[str, Any]]]:
        """The conversation's record and its messages as OpenAI messages, in order."""
        cid = _parse_id(conversation_id)
        with self.engine.connect() as conn:
            conv = conversation_record(self._row(conn, owner, cid))
            rows = conn.execute(sa.select(_M).where(_M.c.conversation_id == cid).order_by(_M.c.seq))
            return conv, [wire_message(dict(r._mapping)) for r in rows]

    def list(self, owner: Owner, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The owner's conversations, most recently updated first."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidRequest(f"invalid limit {limit}: use 1 to {MAX_LIST}", param="limit")
        query = sa.select(_C).where(owner.where()).order_by(_C.c.updated_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [conversation_record(r._mapping) for r in conn.execute(query)]

    def messages(
        self, owner: Owner, conversation_id: str | uuid.UUID
    ) -> builtins.list[dict[str, Any]]:
        """Every message of the conversation, oldest first."""
        cid = _parse_id(conversation_id)
        with self.engine.connect() as conn:
            self._row(conn, owner, cid)
            rows = conn.execute(sa.select(_M).where(_M.c.conversation_id == cid).order_by(_M.c.seq))
            return [message_record(r._mapping) for r in rows]

    def rename(self, owner: Owner, conversation_id: str | uuid.UUID, title: str) -> dict[str, Any]:
        """Set the title (1-200 characters)."""
        title = title.strip()
        if not 1 <= len(title) <= 200:
            raise InvalidRequest("invalid title: use 1 to 200 characters", param="title")
        cid = _parse_id(conversation_id)
        with self.engine.begin() as conn:
            self._row(conn, owner, cid)
            conn.execute(_C.update().where(_C.c.id == cid).values(title=title, updated_at=_now()))
            return conversation_record(self._row(conn, owner, cid))

    def delete(self, owner: Owner, conversation_id: str | uuid.UUID) -> dict[str, Any]:
        """Delete the conversation and its messages."""
        cid = _parse_id(conversation_id)
        with self.engine.begin() as conn:
            self._row(conn, owner, cid)
            conn.execute(_M.delete().where(_M.c.conversation_id == cid))
            conn.execute(_C.delete().where(_C.c.id == cid))
        return {"id": str(cid), "object": "conversation", "deleted": True}

    def append(
        self, owner: Owner, conversation_id: str | uuid.UUID, messages: Sequence[dict[str, Any]]
    ) -> builtins.list[dict[str, Any]]:
        """Add messages without calling a model (a tool's result, an edited history)."""
        cid = _parse_id(conversation_id)
        with self.engine.begin() as conn:
            conv = self._row(conn, owner, cid)
            return self._insert(conn, cid, conv["messages"], messages, None, 0, 0, Decimal(0))

    def _insert(
        self,
        conn: Connection,
        cid: uuid.UUID,
        start: int,
        messages: Sequence[dict[str, Any]],
        answered_by: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        cost: Decimal,
    ) -> builtins.list[dict[str, Any]]:
        now = _now()
        rows = []
        for i, m in enumerate(messages):
            role = m.get("role")
            if role not in ROLES:
                raise InvalidRequest(f"invalid role {str(role)[:20]!r}", param="role")
            last = i == len(messages) - 1 and answered_by is not None
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "conversation_id": cid,
                    "seq": start + i,
                    "role": role,
                    "content": m.get("content"),
                    "name": m.get("name"),
                    "tool_calls": m.get("tool_calls") or None,
                    "tool_call_id": m.get("tool_call_id"),
                    "model": answered_by if last else None,
                    "prompt_tokens": prompt_tokens if last else 0,
                    "completion_tokens": completion_tokens if last else 0,
                    "cost": cost if last else Decimal(0),
                    "created_at": now,
                }
            )
        if rows:
            try:
                conn.execute(_M.insert(), rows)
            except sa.exc.IntegrityError:
                raise Conflict(
                    "the conversation changed while this turn ran (two turns at once?)",
                    hint="send the turns of one conversation one after another",
                ) from None
        conn.execute(
            _C.update()
            .where(_C.c.id == cid)
            .values(
                messages=_C.c.messages + len(rows),
                prompt_tokens=_C.c.prompt_tokens + prompt_tokens,
                completion_tokens=_C.c.completion_tokens + completion_tokens,
                cost=_C.c.cost + cost,
                updated_at=now,
            )
        )
        return [message_record(r) for r in rows]

    def record_turn(
        self,
        owner: Owner,
        conversation_id: uuid.UUID,
        *,
        new: bool,
        seen: int,
        turn: Turn,
        title: str,
        system: str | None,
        settings: dict[str, Any],
    ) -> builtins.list[dict[str, Any]]:
        """Write one turn: a new conversation with it, or append it to an existing one that
        still has ``seen`` messages (else 409: another turn ran meanwhile)."""
        with self.engine.begin() as conn:
            if new:
                now = _now()
                conn.execute(
                    _C.insert().values(
                        id=conversation_id,
                        user_id=owner.user_id,
                        key_id=owner.key_id,
                        title=title[:200],
                        model=turn.model,
                        system=system,
                        settings=settings,
                        created_at=now,
                        updated_at=now,
                        messages=0,
                        prompt_tokens=0,
                        completion_tokens=0,
                        cost=Decimal(0),
                    )
                )
            else:
                conv = self._row(conn, owner, conversation_id)
                if conv["messages"] != seen:
                    raise Conflict(
                        "the conversation changed while this turn ran (two turns at once?)",
                        hint="send the turns of one conversation one after another",
                    )
                conn.execute(
                    _C.update()
                    .where(_C.c.id == conversation_id)
                    .values(model=turn.model, system=system, settings=settings, title=title[:200])
                )
            return self._insert(
                conn,
                conversation_id,
                seen,
                turn.messages,
                turn.answered_by,
                turn.prompt_tokens,
                turn.completion_tokens,
                turn.cost,
            )

    def export(self, owner: Owner, conversation_id: str | uuid.UUID) -> dict[str, Any]:
        """The conversation with every message (the JSON export)."""
        conv = self.get(owner, conversation_id)
        return {**conv, "data": self.messages(owner, conversation_id)}


def markdown(export: dict[str, Any]) -> str:
    """The Markdown export of ``ConversationStore.export``'s record."""
    lines = [f"# {export['title'] or 'Conversation'}", ""]
    lines.append(f"- id: `{export['id']}`")
    lines.append(f"- model: `{export['model']}`")
    usage = export["usage"]
    lines.append(
        f"- tokens: {usage['prompt_tokens']} in, {usage['completion_tokens']} out; "
        f"cost {usage['cost']}"
    )
    lines.append("")
    if export.get("system"):
        lines += ["## system", "", export["system"], ""]
    for m in export["data"]:
        head = f"## {m['role']}"
        if m.get("model"):
            head += f" ({m['model']})"
        lines += [head, ""]
        if m.get("content"):
            lines += [m["content"], ""]
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            lines += [f"tool call `{fn.get('name')}`: `{fn.get('arguments')}`", ""]
    return "\n".join(lines).rstrip() + "\n"
