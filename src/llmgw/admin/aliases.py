"""Aliases as admin operations: ``AliasOps`` (local, on the database) and ``RemoteAliasOps``
(the ``/admin/v1/aliases`` API), mixed into ``LocalAdmin`` and ``RemoteAdmin``.

An alias record says where it lives (``source``: ``config`` or ``database``), its targets in
the config file's shape, whether a config-file alias of the same name shadows a stored one,
and which targets resolve to no provider right now (``unresolved``: the alias still answers,
falling back past them, and a provider added later makes them resolve). Config-file aliases are
read-only: changing one, or storing one of the same name, is 409. See docs/routing.md.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from llmgw.admin.ops import Record

__all__ = ["AliasOps", "RemoteAliasOps"]


def _target_json(t: Any) -> Any:
    return t if isinstance(t, str) else {"target": t.target, "weight": t.weight}


def _plain(t: Any) -> str:
    return t if isinstance(t, str) else str(t["target"] if isinstance(t, dict) else t.target)


class AliasOps:
    """Alias operations of ``LocalAdmin`` (uses its engine, audit, settings and live set)."""

    settings: Any
    engine: Any

    if TYPE_CHECKING:  # LocalAdmin's (and BudgetOps') own

        def _live_settings(self) -> Any: ...

        def _change(self, doing: str) -> Any: ...

        def _audit(self, tx: Any, action: str, target: str | None, **detail: Any) -> None: ...

    def _read_only(self, name: str) -> None:
        from llmgw.errors import Conflict

        if self.settings is not None and name in self.settings.aliases:
            raise Conflict(
                f"alias {name!r} is defined in the config file, which is read-only here and "
                "wins on a name clash",
                hint="edit the config file's [aliases], or choose another name",
            )

    def _unresolved(self, targets: Sequence[Any], resolver: Any) -> builtins.list[str]:
        from llmgw.errors import LlmgwError

        out = []
        for t in targets:
            try:
                resolver.direct(_plain(t))
            except LlmgwError:
                out.append(_plain(t))
        return out

    def _resolver(self) -> Any:
        from llmgw.routing.resolve import Resolver

        live = self._live_settings()
        return Resolver(live) if live is not None else None

    def _alias_record(self, stored: Any, resolver: Any, *, shadowed: bool = False) -> Record:
        record: Record = stored.record(shadowed=shadowed)
        record["unresolved"] = (
            self._unresolved(stored.targets, resolver) if resolver is not None else []
        )
        return record

    def aliases_list(self) -> builtins.list[Record]:
        """Every alias: the config file's (read-only) first, then the stored ones."""
        from llmgw.providers.stored_aliases import AliasStore

        resolver = self._resolver()
        config = self.settings.aliases if self.settings is not None else {}
        out: builtins.list[Record] = [
            {
                "name": name,
                "source": "config",
                "targets": [_target_json(t) for t in targets],
                "shadowed_by_config": False,
                "revision": None,
                "created_at": None,
                "updated_at": None,
                "unresolved": self._unresolved(targets, resolver) if resolver else [],
            }
            for name, targets in config.items()
        ]
        for a in AliasStore(self.engine).list():
            out.append(self._alias_record(a, resolver, shadowed=a.name in config))
        return out

    def aliases_add(self, name: str, targets: Sequence[Any]) -> Record:
        """Store a new alias; running gateways answer it within seconds."""
        from llmgw.providers.stored_aliases import AliasStore

        self._read_only(name)
        with self._change("adding an alias") as tx:
            store = AliasStore(tx.bound)
            store.add(name, targets)
            stored = store.get(name)
            self._audit(tx, "aliases.add", name, targets=[_plain(t) for t in stored.targets])
        return self._alias_record(stored, self._resolver())

    def aliases_edit(self, name: str, targets: Sequence[Any]) -> Record:
        """Replace a stored alias's targets."""
        from llmgw.providers.stored_aliases import AliasStore

        self._read_only(name)
        with self._change("changing an alias") as tx:
            store = AliasStore(tx.bound)
            before = store.get(name)
            store.edit(name, targets)
            stored = store.get(name)
            self._audit(
                tx,
                "aliases.edit",
                name,
                **{
                    "from": [_plain(t) for t in before.targets],
                    "to": [_plain(t) for t in stored.targets],
                },
            )
        return self._alias_record(stored, self._resolver())

    def aliases_remove(self, name: str) -> Record:
        """Remove a stored alias."""
        from llmgw.providers.stored_aliases import AliasStore

        self._read_only(name)
        with self._change("removing an alias") as tx:
            old = AliasStore(tx.bound).remove(name)
            self._audit(tx, "aliases.remove", name, targets=[_plain(t) for t in old.targets])
        return {**self._alias_record(old, None), "removed": True}


class RemoteAliasOps:
    """The same operations over ``/admin/v1/aliases`` (mixed into ``RemoteAdmin``)."""

    def _list(self, path: str, params: Mapping[str, str] | None = None) -> builtins.list[Record]:
        raise NotImplementedError

    def _one(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Record:
        raise NotImplementedError

    def aliases_list(self) -> builtins.list[Record]:
        """Every alias the server knows, config-file and stored."""
        return self._list("/aliases")

    def aliases_add(self, name: str, targets: Sequence[Any]) -> Record:
        """Store an alias through the server."""
        return self._one("POST", "/aliases", {"name": name, "targets": list(targets)})

    def aliases_edit(self, name: str, targets: Sequence[Any]) -> Record:
        """Replace a stored alias's targets through the server."""
        return self._one("PATCH", f"/aliases/{quote(name, safe='')}", {"targets": list(targets)})

    def aliases_remove(self, name: str) -> Record:
        """Remove a stored alias through the server."""
        return self._one("DELETE", f"/aliases/{quote(name, safe='')}")
