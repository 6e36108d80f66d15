"""``LocalAdmin``: the admin operations on a database engine, with an audit row per change.

Used by the CLI without ``--url`` and by the server's ``/admin/v1`` routes (with the calling key
as actor): one implementation of keys, users, usage and audit queries, the core services'.

Each change and its audit row are written in one database transaction (``_change``): if the
audit row cannot be written the change is rolled back, and running servers are told about a
change (``on_change``) only after that transaction has committed.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from llmgw.admin.aliases import AliasOps
from llmgw.admin.budgets import BudgetOps
from llmgw.admin.ops import UNSET, USAGE_GROUPS, Actor, Record, Unset
from llmgw.admin.records import (
    key_record,
    provider_record,
    recent_record,
    usage_record,
    user_record,
)
from llmgw.errors import UsageError
from llmgw.storage.opener import EngineOpener, resolve

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from llmgw.admin.audit import AuditService
    from llmgw.auth.changes import AuthChange
    from llmgw.auth.keys import KeyChanges, KeyService
    from llmgw.auth.users import UserService
    from llmgw.config import Settings
    from llmgw.providers.managed import ProviderStore
    from llmgw.usage.reports import GroupBy, UsageFilter

# The services (and through them SQLModel, pydantic and the table classes, a third of a second)
# load on first use: the dashboard's first screen needs only the provider_status query.


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)


__all__ = ["MAX_RECENT", "LocalAdmin"]

MAX_RECENT = 1000
"""The most recent requests one call returns."""


def _positive(value: int | None, name: str) -> int | None:
    if value is not None and not 1 <= value <= 2_000_000_000:
        raise UsageError(
            f"invalid {name} {value}", hint=f"--{name} takes a positive whole number", param=name
        )
    return value


@dataclass(frozen=True, slots=True)
class _Tx:
    """The services of one change's transaction."""

    keys: KeyService
    users: UserService
    audit: AuditService
    bound: Engine
    """The transaction as an engine (``auth/_db.py:Bound``), for other stores."""


@contextmanager
def db_errors(engine: Engine, doing: str) -> Iterator[None]:
    """``llmgw.auth._db.db_errors``, imported when first used: it loads SQLAlchemy, which the
    dashboard's first paint on a current SQLite file does without (``storage/opener.py``)."""
    from llmgw.auth._db import db_errors as translate

    with translate(engine, doing):
        yield


class LocalAdmin(BudgetOps, AliasOps):
    """``AdminOps`` on ``engine``: the core services, acting as ``actor``, from ``source``.

    ``on_change`` announces key and user changes to running servers (``ChangePublisher.publish``).
    ``settings`` is the configuration (its providers and aliases are the read-only ones);
    ``live`` is a running gateway's provider set (config plus stored, ``server/reload.py``),
    which prices and currencies then use instead of reading the ``providers`` table.
    """

    def __init__(
        self,
        engine: Engine | EngineOpener,
        actor: Actor,
        source: str = "cli",
        *,
        on_change: Callable[[AuthChange], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        settings: Settings | None = None,
        live: Settings | None = None,
    ) -> None:
        self._engine = engine
        self.settings = settings
        self.live = live
        self.actor = actor
        self.source = source
        self._clock = clock
        self._on_change = on_change

    @property
    def engine(self) -> Engine:
        """The database engine (an ``EngineOpener`` given instead is opened now, once)."""
        return resolve(self._engine)

    @cached_property
    def keys(self) -> KeyService:
        """The key service (loaded on first use)."""
        from llmgw.auth.keys import KeyService

        return KeyService(self.engine, clock=self._clock)  # reads: changes go through _change

    @cached_property
    def users(self) -> UserService:
        """The user service (loaded on first use)."""
        from llmgw.auth.users import UserService

        return UserService(self.engine, clock=self._clock)

    @cached_property
    def audit(self) -> AuditService:
        """The audit log (loaded on first use)."""
        from llmgw.admin.audit import AuditService

        return AuditService(self.engine, clock=self._clock)

    @contextmanager
    def _change(self, doing: str) -> Iterator[_Tx]:
        """One transaction for a change and its audit row: both are written or neither is. The
        services' announcements are held until the commit, then passed to ``on_change``."""
        from llmgw.admin.audit import AuditService
        from llmgw.auth.keys import KeyService
        from llmgw.auth.users import UserService

        held: list[AuthChange] = []
        with db_errors(self.engine, doing), self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                # pysqlite opens a transaction only before its first INSERT/UPDATE/DELETE; a
                # savepoint taken earlier (a key's insert) would then be the outermost
                # transaction and its RELEASE would commit on its own. Begin for real, and take
                # the write lock now rather than upgrading to it halfway.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            from llmgw.auth._db import Bound

            bound = cast("Engine", Bound(self.engine, conn))
            clock = self._clock
            yield _Tx(
                KeyService(bound, clock=clock, on_change=held.append),
                UserService(bound, clock=clock, on_change=held.append),
                AuditService(bound, clock=clock),
                bound,
            )
        if self._on_change is not None:
            for change in held:
                self._on_change(change)

    def _audit(self, tx: _Tx, action: str, target: str | None, **detail: Any) -> None:
        tx.audit.record(self.actor, action, target, source=self.source, detail=detail or None)

    # -- identity -------------------------------------------------------------------------
    def whoami(self) -> Record:
        """The actor and their role; ``mode`` is ``local``."""
        return {
            "actor": self.actor.name,
            "actor_kind": self.actor.kind,
            "role": self.actor.role,
            "mode": "local",
            "url": None,
        }

    # -- keys -----------------------------------------------------------------------------
    def keys_list(self, *, include_revoked: bool = False) -> builtins.list[Record]:
        """Keys oldest first."""
        now = self._clock()
        return [key_record(k, now) for k in self.keys.list(include_revoked=include_revoked)]

    def keys_show(self, ref: str) -> Record:
        """One key."""
        return key_record(self.keys.get(ref), self._clock())

    def keys_create(
        self,
        name: str,
        *,
        user: str | None = None,
        expires: timedelta | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        models: Sequence[str] | None = None,
    ) -> Record:
        """A new key with its one-time secret in ``"key"``."""
        from llmgw.auth.keys import check_key_settings
        from llmgw.auth.users import check_user_ref

        # Every value is checked before the database is touched: bad input writes nothing.
        name, allow = check_key_settings(
            name, _positive(rpm, "rpm"), _positive(tpm, "tpm"), models, expires
        )
        owner = check_user_ref(user)
        with self._change("creating a key") as tx:
            created = tx.keys.create(
                name, user=owner, expires_in=expires, rpm=rpm, tpm=tpm, models=allow
            )
            record = key_record(created.info, self._clock())
            self._audit(
                tx,
                "keys.create",
                created.info.prefix,
                id=record["id"],
                name=name,
                user=created.info.user_email,
                expires_at=record["expires_at"],
                rpm=rpm,
                tpm=tpm,
                models=record["models"],
            )
        return {**record, "key": created.secret}

    def keys_revoke(self, ref: str) -> Record:
        """Revoke a key (idempotent: revoking a revoked key records nothing new)."""
        with self._change("revoking a key") as tx:
            before = tx.keys.get(ref)
            info = tx.keys.revoke(str(before.id))
            if before.revoked_at is None:
                self._audit(tx, "keys.revoke", info.prefix, id=str(info.id), name=info.name)
        return key_record(info, self._clock())

    def keys_rotate(self, ref: str) -> Record:
        """A new secret for the key's settings; the old key is revoked."""
        with self._change("rotating a key") as tx:
            created = tx.keys.rotate(ref)
            rotated_from = created.info.rotated_from
            old = tx.keys.get(str(rotated_from)) if rotated_from else None
            record = key_record(created.info, self._clock())
            self._audit(
                tx,
                "keys.rotate",
                old.prefix if old is not None else created.info.prefix,
                id=record["rotated_from"],
                new_id=record["id"],
                new_prefix=created.info.prefix,
                name=created.info.name,
            )
        return {**record, "key": created.secret}

    def keys_update(
        self,
        ref: str,
        *,
        rpm: int | None | Unset = UNSET,
        tpm: int | None | Unset = UNSET,
        models: Sequence[str] | None | Unset = UNSET,
        expires_at: datetime | None | Unset = UNSET,
    ) -> Record:
        """Change a live key's limits, allow-list or expiry (``UNSET`` leaves one as it is)."""
        changes: KeyChanges = {}
        if rpm is not UNSET:
            changes["rpm"] = _positive(rpm, "rpm")
        if tpm is not UNSET:
            changes["tpm"] = _positive(tpm, "tpm")
        if models is not UNSET:
            changes["models"] = models
        if expires_at is not UNSET:
            changes["expires_at"] = expires_at
        if not changes:
            raise UsageError(
                "nothing to change", hint="give at least one of --rpm, --tpm, --models, --expires"
            )
        with self._change("updating a key") as tx:
            before = key_record(tx.keys.get(ref), self._clock())
            after = key_record(tx.keys.update(before["id"], changes), self._clock())
            diff = {
                name: {"from": before[name], "to": after[name]}
                for name in ("rpm", "tpm", "models", "expires_at")
                if before[name] != after[name]
            }
            if diff:
                self._audit(tx, "keys.update", after["prefix"], id=after["id"], **diff)
        return after

    # -- users ----------------------------------------------------------------------------
    def users_list(self) -> builtins.list[Record]:
        """Every user, oldest first."""
        return [user_record(u) for u in self.users.list()]

    def users_show(self, ref: str) -> Record:
        """One user by email, id, unique id prefix (8+ hex digits) or unique name."""
        return user_record(self.users.get(ref))

    def users_create(self, email: str, *, name: str | None = None, role: str = "user") -> Record:
        """A new user."""
        from llmgw.auth.users import check_user_fields

        check_user_fields(email, name, role)
        with self._change("creating a user") as tx:
            record = user_record(tx.users.create(email, name=name, role=role))
            self._audit(tx, "users.create", record["email"], id=record["id"], role=record["role"])
        return record

    def users_disable(self, ref: str) -> Record:
        """Disable a user (idempotent)."""
        with self._change("disabling a user") as tx:
            before = tx.users.get(ref)
            record = user_record(tx.users.disable(str(before.id)))
            if not before.disabled:
                self._audit(
                    tx, "users.disable", record["email"], id=record["id"], keys=record["keys"]
                )
        return record

    def users_enable(self, ref: str) -> Record:
        """Enable a user (idempotent)."""
        with self._change("enabling a user") as tx:
            before = tx.users.get(ref)
            record = user_record(tx.users.enable(str(before.id)))
            if before.disabled:
                self._audit(tx, "users.enable", record["email"], id=record["id"])
        return record

    def users_set_role(self, ref: str, role: str) -> Record:
        """Give a user ``role``."""
        with self._change("changing a user's role") as tx:
            before = tx.users.get(ref)
            record = user_record(tx.users.set_role(str(before.id), role))
            if before.role != record["role"]:
                self._audit(
                    tx,
                    "users.set_role",
                    record["email"],
                    id=record["id"],
                    **{"from": before.role, "to": role},
                )
        return record

    # -- usage ----------------------------------------------------------------------------
    def usage_stats(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        by: str = "day",
        key: str | None = None,
        user: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        status: int | None = None,
    ) -> builtins.list[Record]:
        """Statistics per group over ``[since, until)`` for the rows matching the filters."""
        if by not in USAGE_GROUPS:
            raise UsageError(
                f"invalid --by {by!r}", hint=f"use one of: {', '.join(USAGE_GROUPS)}", param="by"
            )
        only: UsageFilter = {}
        if key is not None:
            only["key_id"] = self.keys.get(key).id
        if user is not None:
            only["user_id"] = self.users.get(user).id
        if model is not None:
            only["model"] = model
        if provider is not None:
            only["provider"] = provider
        if status is not None:
            only["status"] = status
        return self._stats(since, until, by, only)

    def _stats(
        self, since: datetime | None, until: datetime | None, by: str, only: UsageFilter
    ) -> builtins.list[Record]:
        from llmgw.usage.reports import usage_stats

        with db_errors(self.engine, "querying usage"):
            rows = usage_stats(
                self.engine,
                since=since,
                until=until,
                by=cast("GroupBy", by),
                only=only,
                currencies=self._currencies(),
            )
        return [usage_record(r) for r in rows]

    def usage_stats_many(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        groups: Sequence[tuple[str, dict[str, Any]]],
    ) -> builtins.list[builtins.list[Record]]:
        """``usage_stats`` for several groupings of one window (each ``(by, only)``; ``only``
        may be ``{"failed": True}``), read in one statement (a report's sections)."""
        from llmgw.usage.reports import usage_stats_many

        with db_errors(self.engine, "querying usage"):
            out = usage_stats_many(
                self.engine,
                since=since,
                until=until,
                groups=cast("Any", groups),
                currencies=self._currencies(),
            )
        return [[usage_record(r) for r in rows] for rows in out]

    def usage_recommend(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        read: Sequence[builtins.list[Record]] | None = None,
    ) -> builtins.list[Record]:
        """Optimisation recommendations over ``[since, until)`` (default: the last 30 days).
        ``read``: the window's ``usage_stats_many`` by model, failed by model and by key, when
        the caller read them already (a report, in the statement of its own sections)."""
        from llmgw.usage.recommend import Thresholds, recommend

        now = self._clock()
        since = since if since is not None else now - timedelta(days=30)
        if until is not None and until <= since:
            raise UsageError("until must be after since", hint="e.g. since 30 days ago, until now")
        t = Thresholds()
        # by model, what the failed requests cost per model, by key: one statement
        models, failing, key_rows = read or self.usage_stats_many(
            since=since,
            until=until,
            groups=[("model", {}), ("model", {"failed": True}), ("key", {})],
        )
        failed = [
            {"model": r["model"], "costs": {c: str(v) for c, v in (r.get("costs") or {}).items()}}
            for r in failing
        ]
        return recommend(
            models=models,
            failed=failed,
            key_rows=key_rows,
            keys=self.keys_list(),
            idle_rows=self.usage_stats(since=now - timedelta(days=t.idle_days), by="key"),
            now=now,
            thresholds=t,
        )

    def usage_recent(self, *, limit: int = 100) -> builtins.list[Record]:
        """The newest requests in the ``usage`` table, newest first."""
        from llmgw.usage.reports import recent_requests

        if not 1 <= limit <= MAX_RECENT:
            raise UsageError(f"invalid limit {limit}", hint=f"use 1 to {MAX_RECENT}", param="limit")
        with db_errors(self.engine, "reading recent requests"):
            rows = recent_requests(self.engine, limit=limit)
        return [recent_record(r, r["key_prefix"]) for r in rows]

    # -- providers stored in the database (runtime-managed) --------------------------------
    def _stored(self, tx: _Tx | None = None) -> ProviderStore:
        from llmgw.providers.managed import ProviderStore, sealer_for

        sealer = sealer_for(self.settings) if self.settings is not None else None
        return ProviderStore(tx.bound if tx is not None else self.engine, sealer)

    def _clash(self, name: str) -> None:
        from llmgw.errors import Conflict

        if self.settings is not None and self.settings.provider(name) is not None:
            raise Conflict(
                f"provider {name!r} is defined in the config file, which is read-only here and "
                "wins on a name clash",
                hint="edit the config file, or choose another name",
            )

    def _stored_record(self, name: str, tx: _Tx) -> Record:
        return self._stored(tx).get(name).record()

    def providers_stored(self) -> builtins.list[Record]:
        """The providers stored in the database (never a credential)."""
        names = {p.name for p in self.settings.providers} if self.settings is not None else set()
        return [p.record(shadowed=p.name in names) for p in self._stored().list()]

    def providers_add(
        self, name: str, kind: str, fields: dict[str, Any], *, secret: str | None = None
    ) -> Record:
        """Store a new provider; running gateways pick it up within seconds."""
        self._clash(name)
        with self._change("adding a provider") as tx:
            self._stored(tx).add(name, kind, fields, secret)
            record = self._stored_record(name, tx)
            self._audit(tx, "providers.add", name, kind=kind, fields=sorted(fields))
        return record

    def providers_edit(
        self, name: str, fields: dict[str, Any], *, secret: str | None = None
    ) -> Record:
        """Change a stored provider (``None`` unsets a field; ``secret=""`` removes it)."""
        self._clash(name)
        with self._change("changing a provider") as tx:
            self._stored(tx).edit(name, fields, secret)
            record = self._stored_record(name, tx)
            detail = sorted(fields) + (["api_key"] if secret is not None else [])
            self._audit(tx, "providers.edit", name, fields=detail)
        return record

    def providers_set_enabled(self, name: str, enabled: bool) -> Record:
        """Disable (no new requests; running ones finish) or enable a stored provider."""
        self._clash(name)
        with self._change("disabling a provider" if not enabled else "enabling a provider") as tx:
            if self._stored(tx).set_enabled(name, enabled):
                action = "providers.enable" if enabled else "providers.disable"
                self._audit(tx, action, name)
            record = self._stored_record(name, tx)
        return record

    def providers_remove(self, name: str) -> Record:
        """Remove a stored provider (its credential with it)."""
        self._clash(name)
        with self._change("removing a provider") as tx:
            old = self._stored(tx).remove(name)
            self._audit(tx, "providers.remove", name, kind=old.kind)
        return {**old.record(), "removed": True}

    # -- providers ------------------------------------------------------------------------
    def providers_status(self) -> builtins.list[Record]:
        """The last health each server wrote to ``provider_status`` (``"live": false``); read
        with ``sqlite3`` while an ``EngineOpener`` has not opened the engine yet (the dashboard's
        first paint). A removed provider's rows stay in the table (a running gateway may write
        one again just after the removal), so with the configuration only the rows of existing
        providers are shown: stored ones (enabled or disabled) and the config file's."""
        configured = (
            tuple(p.name for p in self.settings.providers) if self.settings is not None else None
        )
        if isinstance(self._engine, EngineOpener) and not self._engine.opened:
            from llmgw.admin.quick import providers_status

            records = providers_status(self._engine.url, configured)
            if records is not None:
                return records
        import sqlalchemy as sa

        table = _provider_status()
        query = sa.select(table).order_by(table.c.provider, table.c.model)
        if configured is not None:
            stored = sa.select(sa.table("providers", sa.column("name")).c.name)
            query = query.where(table.c.provider.in_(stored) | table.c.provider.in_(configured))
        with db_errors(self.engine, "reading provider status"), self.engine.connect() as conn:
            return [provider_record(r._mapping, live=False) for r in conn.execute(query)]

    def providers_prices(self) -> builtins.list[Record]:
        """The price in force for every model of every provider, config-file and stored."""
        from llmgw.admin.records import price_records

        if self.settings is None and self.live is None:
            raise UsageError("listing prices needs the configuration (no settings given)")
        return price_records(self._provider_configs())

    def providers_test(self, name: str, *, model: str | None = None) -> Record:
        """One real round trip to provider ``name`` with this process's configuration; the
        attempt and its outcome go to the audit log (``providers.test``)."""
        import asyncio

        from llmgw.errors import LlmgwError
        from llmgw.providers.probe import probe

        if self.settings is None:
            raise UsageError("testing a provider needs the configuration (no settings given)")

        def record(**detail: Any) -> None:  # no change to commit with it: its own row
            self.audit.record(self.actor, "providers.test", name, source=self.source, detail=detail)

        try:
            result = asyncio.run(probe(self.settings, name, model=model))
        except LlmgwError as exc:
            if self.settings.provider(name) is not None:
                record(ok=False, model=model, error=exc.message)
            raise
        record(ok=True, model=result.get("model", model), latency_ms=result["latency_ms"])
        return result

    def models_catalog(self, *, refresh: bool = False) -> Record:
        """Every configured provider asked for its models now (so always fresh: ``refresh`` is
        accepted for the same signature as ``RemoteAdmin``), with this process's configuration."""
        import asyncio

        from llmgw.routing.catalog import fresh_catalog

        if self.settings is None:
            raise UsageError("listing models needs the configuration (no settings given)")
        return asyncio.run(fresh_catalog(self.settings))

    # -- audit ----------------------------------------------------------------------------
    def audit_list(
        self,
        *,
        since: datetime | None = None,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
    ) -> builtins.list[Record]:
        """Admin actions newest first."""
        return self.audit.list(since=since, limit=limit, actor=actor, action=action)


def _provider_status() -> Any:
    """``provider_status`` as a lightweight ``sa.table`` (the same columns and types as
    ``llmgw.storage.tables.ProviderStatus``, which a test keeps equal) without loading SQLModel."""
    import sqlalchemy as sa

    from llmgw.storage.types import UTCDateTime

    return sa.table(
        "provider_status",
        sa.column("provider", sa.String()),
        sa.column("model", sa.String()),
        sa.column("status", sa.String()),
        sa.column("latency_ms", sa.Float()),
        sa.column("error_rate", sa.Float()),
        sa.column("last_error", sa.String()),
        sa.column("updated_at", UTCDateTime()),
    )
