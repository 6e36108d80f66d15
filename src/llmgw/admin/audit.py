"""The audit log: every administrative action (who, what, which object, when, from where).

Rows are written by ``LocalAdmin`` in the same transaction as each change, whichever face asked
(CLI, admin API, TUI): a change whose audit row cannot be written does not happen. They never hold a secret: targets are ids, key prefixes and emails, and any
string in ``detail`` that looks like a key secret is cut to its public prefix before it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.admin.ops import Actor, Record
from llmgw.admin.records import audit_record, jsonable
from llmgw.auth._db import db_errors
from llmgw.errors import UsageError
from llmgw.storage.tables import AuditEntry, utcnow

__all__ = ["AuditService"]

_T: sa.Table = AuditEntry.__table__  # type: ignore[attr-defined]
_SECRET = re.compile(r"llmgw_[A-Za-z0-9_-]{20,}")
_ACTION = re.compile(r"[a-z_]+(\.[a-z_]+)*(\.\*)?|\*")
_MAX_LIMIT = 10_000


def _scrubbed(value: Any) -> Any:
    """``value`` with anything shaped like a key secret cut to its 12-character prefix."""
    if isinstance(value, str):
        return _SECRET.sub(lambda m: m.group(0)[:12] + "…", value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value


class AuditService:
    """Append to and read the ``audit_log`` table. Thread-safe."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self._clock = clock

    def record(
        self,
        actor: Actor,
        action: str,
        target: str | None,
        *,
        source: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one entry for ``action`` (``keys.create``, ``users.disable``...) on ``target``."""
        values = {
            "at": self._clock(),
            "actor": _scrubbed(actor.name)[:320],
            "actor_kind": actor.kind,
            "action": action,
            "target": _scrubbed(target)[:320] if target is not None else None,
            "source": source[:16],
            "remote_addr": actor.remote_addr[:64] if actor.remote_addr else None,
            "detail": _scrubbed(jsonable(dict(detail))) if detail else None,
        }
        with (
            db_errors(self.engine, "writing the audit log", integrity=False),
            self.engine.begin() as conn,
        ):
            conn.execute(sa.insert(_T).values(**values))

    def list(
        self,
        *,
        since: datetime | None = None,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[Record]:
        """Entries newest first; ``action`` ``keys.*`` matches every ``keys.`` action."""
        if not 1 <= limit <= _MAX_LIMIT:
            raise UsageError(f"invalid limit {limit}", hint=f"use 1 to {_MAX_LIMIT}", param="limit")
        query = sa.select(_T).order_by(_T.c.at.desc(), _T.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(_T.c.at >= since)
        if actor is not None:
            query = query.where(_T.c.actor == actor.strip())
        if action is not None:
            action = action.strip()
            if not _ACTION.fullmatch(action):
                raise UsageError(
                    f"invalid action {action[:64]!r}",
                    hint="an action such as keys.create, or a group such as keys.*",
                    param="action",
                )
            if action.endswith("*"):
                if action != "*":
                    query = query.where(_T.c.action.startswith(action[:-1], autoescape=True))
            else:
                query = query.where(_T.c.action == action)
        with db_errors(self.engine, "reading the audit log"), self.engine.connect() as conn:
            return [audit_record(r._mapping) for r in conn.execute(query)]
