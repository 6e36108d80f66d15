"""Aliases managed at runtime: stored in the ``aliases`` table (migration ``0017``).

An alias is a name and its ordered targets, exactly as the config file's ``[aliases]`` holds
them (``"provider/model[:version]"`` or ``{"target": ..., "weight": w}``; docs/routing.md).
``AliasStore`` adds, edits and removes rows; each change raises the row's ``revision`` and its
``updated_at``, so ``fingerprint`` (one small query) tells a running gateway that something
changed, as ``ProviderStore.fingerprint`` does for providers (``llmgw.server.reload``).

Config-file aliases are read-only and win on a name clash: adding a name the file already has
is refused (409, by the admin operations), and a stored row shadowed by the file is skipped
with a warning by ``merged_settings``. A stored alias name holds no ``/``, so it can never
stand for a ``provider/model`` name.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from llmgw.config import AliasTarget
from llmgw.errors import Conflict, InvalidRequest, NotFound
from llmgw.schemas import MODEL_NAME_PATTERN
from llmgw.storage.provider_tables import AliasRow
from llmgw.storage.tables import utcnow

__all__ = ["MAX_TARGETS", "AliasStore", "StoredAlias", "check_alias"]

_T: sa.Table = AliasRow.__table__  # type: ignore[attr-defined]
_ALIAS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
_TARGET = re.compile(MODEL_NAME_PATTERN)
MAX_TARGETS = 16
"""Most candidates one stored alias lists (each failed one costs the client a round trip)."""

Targets = list[str | dict[str, Any]]


@dataclass(frozen=True, slots=True)
class StoredAlias:
    """One stored alias as the API shows it."""

    name: str
    targets: Targets
    revision: int
    created_at: datetime
    updated_at: datetime

    def record(self, *, shadowed: bool = False) -> dict[str, Any]:
        """The JSON-ready record (``/admin/v1/aliases``, ``--json``)."""
        return {
            "name": self.name,
            "source": "database",
            "targets": list(self.targets),
            "shadowed_by_config": shadowed,
            "revision": self.revision,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "updated_at": self.updated_at.isoformat().replace("+00:00", "Z"),
        }


def check_alias(name: str, targets: Sequence[Any]) -> Targets:
    """``targets`` checked as the config file's alias candidates; the stored JSON (a plain
    string for a weight of 1, else ``{"target", "weight"}``). ``InvalidRequest`` (400) names
    the first problem."""
    if not isinstance(name, str) or _ALIAS_NAME.fullmatch(name) is None:
        raise InvalidRequest(
            f"invalid alias name {name!r}",
            param="name",
            hint="letters, digits and . _ - : @ + (no /), at most 128 characters",
        )
    if not isinstance(targets, list | tuple) or not targets:
        raise InvalidRequest("an alias needs at least one target", param="targets")
    if len(targets) > MAX_TARGETS:
        raise InvalidRequest(f"an alias lists at most {MAX_TARGETS} targets", param="targets")
    out: Targets = []
    seen: set[str] = set()
    for i, raw in enumerate(targets):
        where = f"targets.{i}"
        try:
            t = AliasTarget.model_validate({"target": raw} if isinstance(raw, str) else raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            sub = ".".join(str(p) for p in first["loc"])
            raise InvalidRequest(
                f"{where}{'.' + sub if sub else ''}: {first['msg']}", param=where
            ) from None
        if _TARGET.fullmatch(t.target) is None or len(t.target) > 264:
            raise InvalidRequest(
                f"{where}: {t.target!r} is not a model name",
                param=where,
                hint="provider/model[:version], e.g. giga/GigaChat",
            )
        if t.target == name:
            raise InvalidRequest(f"{where}: an alias cannot name itself", param=where)
        if t.target in seen:
            raise InvalidRequest(f"{where}: {t.target!r} is listed twice", param=where)
        seen.add(t.target)
        out.append(t.target if t.weight == 1.0 else {"target": t.target, "weight": t.weight})
    return out


def _row(r: Any) -> StoredAlias:
    return StoredAlias(r.name, list(r.targets), r.revision, r.created_at, r.updated_at)


def _missing(name: str) -> NotFound:
    return NotFound(
        f"no stored alias {name!r}",
        hint="`llmgw providers aliases list` shows them (config-file aliases are read-only)",
    )


class AliasStore:
    """The ``aliases`` table. ``engine`` may be a transaction's ``Bound`` engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def list(self) -> list[StoredAlias]:
        with self._engine.connect() as conn:
            return [_row(r) for r in conn.execute(sa.select(_T).order_by(_T.c.name))]

    def get(self, name: str) -> StoredAlias:
        with self._engine.connect() as conn:
            r = conn.execute(sa.select(_T).where(_T.c.name == name)).first()
        if r is None:
            raise _missing(name)
        return _row(r)

    def add(self, name: str, targets: Sequence[Any]) -> None:
        checked = check_alias(name, targets)
        now = utcnow()
        taken = Conflict(
            f"a stored alias named {name!r} exists",
            hint=f"change it with `llmgw providers aliases edit {name}`",
        )
        with self._engine.connect() as conn:
            if conn.execute(sa.select(_T.c.name).where(_T.c.name == name)).first() is not None:
                raise taken
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.insert(_T).values(
                        name=name, targets=checked, revision=1, created_at=now, updated_at=now
                    )
                )
        except IntegrityError:
            raise taken from None

    def edit(self, name: str, targets: Sequence[Any]) -> None:
        """Replace the targets of alias ``name``."""
        checked = check_alias(name, targets)
        self.get(name)
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(_T)
                .where(_T.c.name == name)
                .values(targets=checked, revision=_T.c.revision + 1, updated_at=utcnow())
            )

    def remove(self, name: str) -> StoredAlias:
        old = self.get(name)
        with self._engine.begin() as conn:
            conn.execute(sa.delete(_T).where(_T.c.name == name))
        return old

    def fingerprint(self) -> tuple[tuple[str, int, str], ...]:
        """Every ``(name, revision, updated_at)``: changes whenever a row is added, changed or
        removed (``updated_at`` tells a removed and re-added alias from the old one)."""
        q = sa.select(_T.c.name, _T.c.revision, _T.c.updated_at).order_by(_T.c.name)
        with self._engine.connect() as conn:
            return tuple((r.name, r.revision, r.updated_at.isoformat()) for r in conn.execute(q))

    def as_config(self) -> dict[str, builtins.list[str | AliasTarget]]:
        """Every stored alias in the shape of ``Settings.aliases`` (an invalid row skipped)."""
        from llmgw.providers.stored_view import alias_targets

        return alias_targets((a.name, a.targets) for a in self.list())
