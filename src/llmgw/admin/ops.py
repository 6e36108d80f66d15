"""``AdminOps``: the one interface to the admin operations, used by the CLI and the TUI alike.

Two implementations: ``llmgw.admin.local.LocalAdmin`` (the core services on a database engine)
and ``llmgw.admin.remote.RemoteAdmin`` (the ``/admin/v1`` API of a running ``llmgw serve``).

Every method is synchronous and returns JSON-ready records: ``dict[str, Any]`` whose values are
str, int, float, bool, None, lists and dicts only (datetimes as ISO 8601 UTC strings, decimals as
plain fixed-point strings, UUIDs as strings). No record holds a secret, except the one-time
``"key"`` of ``keys_create`` and ``keys_rotate``. A record IS the ``/admin/v1`` response body and
the CLI's ``--json`` output, so local and remote output are identical by construction; a method
returning ``list[Record]`` is answered over HTTP as ``{"object": "list", "data": [...]}``.

Errors are ``llmgw.errors.LlmgwError`` subclasses in both implementations (``NotFound``,
``Conflict``, ``UsageError``, ``PermissionDenied``, ``DatabaseError``...).

This module imports nothing heavy (the TUI imports it; no SQLAlchemy, no httpx).
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Final, Literal, Protocol, TypeAlias

__all__ = [
    "UNSET",
    "USAGE_GROUPS",
    "Actor",
    "ActorKind",
    "AdminOps",
    "Record",
    "Source",
    "Unset",
    "UsageGroup",
]

Record: TypeAlias = dict[str, Any]
"""One JSON-ready record (see the module docstring)."""

UsageGroup = Literal["day", "hour", "model", "version", "provider", "key", "user", "status"]
USAGE_GROUPS: tuple[str, ...] = (
    "day",
    "hour",
    "model",
    "version",
    "provider",
    "key",
    "user",
    "status",
)
ActorKind = Literal["key", "token", "session", "local"]
Source = Literal["cli", "api", "tui"]


class Unset(Enum):
    """The type of ``UNSET``: "leave this setting as it is" (``None`` means "clear it")."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


@dataclass(frozen=True, slots=True)
class Actor:
    """Who runs admin operations: recorded in the audit log, answered by ``whoami``.

    ``name`` is an email, a key prefix or ``local:<os user>``; never a secret. ``kind`` says how
    they proved it: an API key, an OAuth token, a browser ``session`` of the web pages, or
    ``local`` (the database itself).
    """

    name: str
    kind: ActorKind
    role: str = "admin"
    remote_addr: str | None = None

    @classmethod
    def local(cls) -> Actor:
        """The person at this terminal, working on the database directly."""
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # no login name (a container without passwd entry)
            user = "unknown"
        return cls(name=f"local:{user}", kind="local")


class AdminOps(Protocol):
    """The admin operations. Options are keyword-only; every result is a JSON-ready record."""

    # -- identity -------------------------------------------------------------------------
    def whoami(self) -> Record:
        """``{"actor", "actor_kind", "role", "mode": "local"|"remote", "url"}``."""
        ...

    # -- keys -----------------------------------------------------------------------------
    def keys_list(self, *, include_revoked: bool = False) -> list[Record]:
        """Keys oldest first; revoked ones only with ``include_revoked``."""
        ...

    def keys_show(self, ref: str) -> Record:
        """One key by name, id, unique id prefix (8+ hex digits) or key prefix."""
        ...

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
        """A new key: its record plus ``"key"``, the secret, shown this once."""
        ...

    def keys_revoke(self, ref: str) -> Record:
        """Revoke a key now (idempotent); its record."""
        ...

    def keys_rotate(self, ref: str) -> Record:
        """A new secret with the same settings, the old key revoked: record plus ``"key"``."""
        ...

    def keys_update(
        self,
        ref: str,
        *,
        rpm: int | None | Unset = UNSET,
        tpm: int | None | Unset = UNSET,
        models: Sequence[str] | None | Unset = UNSET,
        expires_at: datetime | None | Unset = UNSET,
    ) -> Record:
        """Change a live key's limits, allow-list or expiry; ``UNSET`` leaves one as it is,
        ``None`` clears it (no limit, every model, never expires)."""
        ...

    # -- users ----------------------------------------------------------------------------
    def users_list(self) -> list[Record]:
        """Every user, oldest first."""
        ...

    def users_show(self, ref: str) -> Record:
        """One user by email, id, unique id prefix (8+ hex digits) or unique name."""
        ...

    def users_create(self, email: str, *, name: str | None = None, role: str = "user") -> Record:
        """A new user."""
        ...

    def users_disable(self, ref: str) -> Record:
        """Disable a user: their keys stop authenticating."""
        ...

    def users_enable(self, ref: str) -> Record:
        """Enable a user again."""
        ...

    def users_set_role(self, ref: str, role: str) -> Record:
        """Give a user the role ``user`` or ``admin``."""
        ...

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
    ) -> list[Record]:
        """Requests, errors, tokens, cost and latency per group (``USAGE_GROUPS``) over
        ``[since, until)``, filtered by key (ref), user (ref), model, provider, status."""
        ...

    def usage_recent(self, *, limit: int = 100) -> list[Record]:
        """The newest requests, newest first (remote: the server's in-memory ring buffer)."""
        ...

    def usage_recommend(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[Record]:
        """Optimisation recommendations over ``[since, until)`` (default: the last 30 days),
        each with its evidence and its saving per currency (``llmgw.usage.recommend``)."""
        ...

    # -- providers ------------------------------------------------------------------------
    def providers_status(self) -> list[Record]:
        """One record per (provider, model): ``"live": true`` from a server's router,
        ``false`` from the ``provider_status`` table."""
        ...

    def providers_prices(self) -> list[Record]:
        """The price in force for every model of every provider (``records.price_records``):
        configured, bundled (with its source and date) or unpriced; remote: the server's."""
        ...

    def providers_test(self, name: str, *, model: str | None = None) -> Record:
        """One real round trip to provider ``name`` (``llmgw.providers.probe``; remote: from the
        server, with its configuration and secrets): ``{"provider", "ok": true, "check",
        "latency_ms", "model" | "models"}``, or the diagnosed error (auth rejected, TLS failure,
        connection refused, timeout...). Recorded in the audit log as ``providers.test``."""
        ...

    def providers_stored(self) -> list[Record]:
        """The providers stored in the database (never a credential: ``has_secret``)."""
        ...

    def providers_add(
        self, name: str, kind: str, fields: dict[str, Any], *, secret: str | None = None
    ) -> Record:
        """Store a provider (``fields``: ``[[providers]]`` fields; ``secret`` sealed); running
        gateways serve it within seconds. A config-file name is ``Conflict``."""
        ...

    def providers_edit(
        self, name: str, fields: dict[str, Any], *, secret: str | None = None
    ) -> Record:
        """Change a stored provider (a ``None`` value unsets a field)."""
        ...

    def providers_set_enabled(self, name: str, enabled: bool) -> Record:
        """Disable (running requests finish) or enable a stored provider (idempotent)."""
        ...

    def providers_remove(self, name: str) -> Record:
        """Remove a stored provider and its credential."""
        ...

    # -- aliases (llmgw.admin.aliases) -----------------------------------------------------
    def aliases_list(self) -> list[Record]:
        """Every alias: the config file's (``"source": "config"``, read-only) and the stored
        ones (``"database"``), with the targets no provider offers now (``unresolved``)."""
        ...

    def aliases_add(self, name: str, targets: Sequence[Any]) -> Record:
        """Store an alias (targets as ``[aliases]`` holds them); running gateways answer it
        within seconds. A config-file alias name is ``Conflict``."""
        ...

    def aliases_edit(self, name: str, targets: Sequence[Any]) -> Record:
        """Replace a stored alias's targets."""
        ...

    def aliases_remove(self, name: str) -> Record:
        """Remove a stored alias."""
        ...

    def models_catalog(self, *, refresh: bool = False) -> Record:
        """The model catalog (``llmgw.routing.catalog.ModelCatalog.describe``): ``{"object":
        "list", "data": [model records], "providers": [provider records], "ttl_seconds"}``.
        Local: every provider asked now. Remote: the server's cached catalog, asked again first
        when ``refresh``."""
        ...

    # -- audit ----------------------------------------------------------------------------
    def audit_list(
        self,
        *,
        since: datetime | None = None,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[Record]:
        """Admin actions newest first; ``action`` may end in ``*`` (``keys.*``)."""
        ...

    # -- budgets and quotas (llmgw.admin.budgets) -------------------------------------------
    def budgets_list(self) -> list[Record]:
        """Every budget with its current period's spend."""
        ...

    def budgets_show(self, ref: str) -> Record:
        """One budget by id (8+ hex digits)."""
        ...

    def budgets_set(
        self,
        *,
        key: str | None = None,
        user: str | None = None,
        period: str = "month",
        amount: str | Decimal,
        currency: str | None = None,
        thresholds: str | list[int] = "80,100",
        hard_stop: bool = False,
    ) -> Record:
        """Create or replace the budget of a key or a user (exactly one)."""
        ...

    def budgets_delete(self, ref: str) -> Record:
        """Remove a budget; the record as it was."""
        ...

    def quotas_list(self) -> list[Record]:
        """Every per-user and per-version quota."""
        ...

    def quotas_set(
        self,
        *,
        key: str | None = None,
        user: str | None = None,
        model: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> Record:
        """Create or replace a quota."""
        ...

    def quotas_delete(self, ref: str) -> Record:
        """Remove a quota; the record as it was."""
        ...
