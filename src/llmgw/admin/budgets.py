"""Budgets and quotas as admin operations: ``BudgetOps`` (local, on the database) and
``RemoteBudgetOps`` (the ``/admin/v1/budgets`` and ``/admin/v1/quotas`` API).

``LocalAdmin`` and ``RemoteAdmin`` inherit them, so the CLI, the TUI and the admin API share one
record shape. A budget record carries its current period and the spend recorded in the database
for it (``spent``, ``percent``); the gateway's running figure (Redis) is ahead of it by what is
not written yet (at most a fraction of a second of traffic). See docs/budgets.md.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from llmgw.admin.ops import Record
from llmgw.errors import NotFound, UsageError

__all__ = ["BudgetOps", "RemoteBudgetOps"]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def _money(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.0000000001")), "f")


class BudgetOps:
    """Budget and quota operations of ``LocalAdmin`` (uses its engine, services and actor)."""

    engine: Any
    keys: Any
    users: Any
    audit: Any
    actor: Any
    source: str
    settings: Any
    live: Any
    """The gateway's live provider set (``Settings``), when the server runs these operations."""

    # -- helpers -----------------------------------------------------------------------------
    def _budget_store(self) -> Any:
        from llmgw.budgets.store import BudgetStore

        return BudgetStore(self.engine)

    def _subject(self, key: str | None, user: str | None) -> tuple[str, uuid.UUID, str]:
        if (key is None) == (user is None):
            raise UsageError("give exactly one of --key and --user", hint="e.g. --key llmgw_AbCdEf")
        if key is not None:
            info = self.keys.get(key)
            return "key", info.id, f"{info.name} ({info.prefix})"
        found = self.users.get(user)
        return "user", found.id, found.email

    def _currency(self, currency: str | None) -> str:
        if currency:
            return currency.upper()
        from llmgw.usage.pricing import currency_of

        known = sorted({currency_of(p) for p in self._provider_configs()})
        if len(known) == 1:
            return known[0]
        raise UsageError(
            "give --currency: budgets count one currency (never converted)",
            hint=f"the providers bill in {', '.join(known)}" if known else "e.g. --currency RUB",
        )

    def _provider_configs(self) -> builtins.list[Any]:
        """Every provider requests can reach: the config file's and the enabled stored ones
        (on a server, its live set, kept by the "providers changed" hook; locally, read from
        the ``providers`` table now), so a stored provider is priced and counted like a
        config-file one. Empty without settings."""
        live = self._live_settings()
        return list(live.providers) if live is not None else []

    def _live_settings(self) -> Any:
        """The config file's providers and aliases plus the stored ones (``Settings``): the
        server's live set, or read from the database now; ``None`` without settings."""
        if self.live is not None:
            return self.live
        if self.settings is None:
            return None
        from llmgw.providers.stored_view import effective_settings

        return effective_settings(self.settings, self.engine)

    def _currencies(self) -> dict[str, str] | None:
        """Provider -> the currency it bills in (costs are split by it); ``None`` without
        settings."""
        if self.settings is None and self.live is None:
            return None
        from llmgw.usage.pricing import currency_of

        return {p.name: currency_of(p) for p in self._provider_configs()}

    def _budget_record(self, b: Any, labels: Mapping[uuid.UUID, str], now: datetime) -> Record:
        from llmgw.budgets.periods import period_bounds
        from llmgw.usage.reports import usage_stats

        start, end = period_bounds(b.period, now)
        only: Any = {"key_id" if b.scope == "key" else "user_id": b.subject_id}
        rows = usage_stats(
            self.engine, since=start, by="day", only=only, currencies=self._currencies() or {}
        )
        spent = sum((Decimal(str(r["costs"].get(b.currency, 0))) for r in rows), Decimal(0))
        store = self._budget_store()
        return {
            "id": str(b.id),
            "scope": b.scope,
            "subject_id": str(b.subject_id),
            "subject": labels.get(b.subject_id, str(b.subject_id)),
            "period": b.period,
            "currency": b.currency,
            "amount": _money(b.amount),
            "thresholds": [int(t) for t in b.thresholds.split(",") if t],
            "hard_stop": b.hard_stop,
            "period_start": _iso(start),
            "resets_at": _iso(end),
            "spent": _money(spent),
            "percent": float(round(spent * 100 / b.amount, 1)) if b.amount else None,
            "notified": [n.threshold for n in store.notices(b.id, start)],
            "created_at": _iso(b.created_at),
            "updated_at": _iso(b.updated_at),
        }

    def _find_budget(self, ref: str) -> Any:
        hexed = ref.strip().lower().replace("-", "")
        if len(hexed) < 8:
            raise UsageError(
                f"{ref!r} is too short to name a budget",
                hint="give at least 8 characters of its id (`llmgw budgets list`)",
            )
        found = [b for b in self._budget_store().budgets() if b.id.hex.startswith(hexed)]
        if len(found) != 1:
            raise NotFound(
                f"no budget {ref!r}" if not found else f"{ref!r} names several budgets",
                hint="`llmgw budgets list` shows their ids",
            )
        return found[0]

    # -- budgets -----------------------------------------------------------------------------
    def budgets_list(self) -> builtins.list[Record]:
        """Every budget with its current period's spend."""
        store = self._budget_store()
        budgets = store.budgets()
        labels = store.labels({b.subject_id for b in budgets}) if budgets else {}
        now = datetime.now(UTC)
        return [self._budget_record(b, labels, now) for b in budgets]

    def budgets_show(self, ref: str) -> Record:
        """One budget by id (8+ hex digits)."""
        b = self._find_budget(ref)
        labels = self._budget_store().labels({b.subject_id})
        return self._budget_record(b, labels, datetime.now(UTC))

    def budgets_set(
        self,
        *,
        key: str | None = None,
        user: str | None = None,
        period: str = "month",
        amount: str | Decimal,
        currency: str | None = None,
        thresholds: str | builtins.list[int] = "80,100",
        hard_stop: bool = False,
    ) -> Record:
        """Create or replace the budget of a key or user for ``period`` in ``currency``."""
        from llmgw.budgets.store import parse_amount, parse_thresholds

        value = parse_amount(amount)
        marks = parse_thresholds(thresholds)
        cur = self._currency(currency)
        scope, subject_id, label = self._subject(key, user)
        before, after = self._budget_store().set_budget(
            scope, subject_id, period, cur, value, thresholds=marks, hard_stop=hard_stop
        )
        detail: dict[str, Any] = {
            "id": str(after.id),
            "period": period,
            "currency": cur,
            "amount": _money(value),
            "thresholds": marks,
            "hard_stop": hard_stop,
        }
        if before is not None:
            detail["was"] = {"amount": _money(before.amount), "hard_stop": before.hard_stop}
        self.audit.record(
            self.actor, "budgets.set", f"{scope} {label}", source=self.source, detail=detail
        )
        return self._budget_record(after, {subject_id: label}, datetime.now(UTC))

    def budgets_delete(self, ref: str) -> Record:
        """Remove a budget; the record as it was."""
        record = self.budgets_show(ref)
        self._budget_store().delete_budget(uuid.UUID(record["id"]))
        self.audit.record(
            self.actor,
            "budgets.delete",
            f"{record['scope']} {record['subject']}",
            source=self.source,
            detail={"id": record["id"], "period": record["period"], "amount": record["amount"]},
        )
        return record

    # -- quotas ------------------------------------------------------------------------------
    def quotas_list(self) -> builtins.list[Record]:
        """Every per-user and per-version quota."""
        store = self._budget_store()
        quotas = store.quotas()
        labels = store.labels({q.subject_id for q in quotas}) if quotas else {}
        return [_quota_record(q, labels) for q in quotas]

    def quotas_set(
        self,
        *,
        key: str | None = None,
        user: str | None = None,
        model: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> Record:
        """Create or replace the rpm/tpm of a user (all models) or of a key or user on a model
        version."""
        if key is not None and not (model or "").strip():
            raise UsageError(
                "a key's quota names a model version (--model)",
                hint="a key's own limits are `llmgw keys update --rpm --tpm`",
            )
        scope, subject_id, label = self._subject(key, user)
        q = self._budget_store().set_quota(scope, subject_id, (model or "").strip(), rpm, tpm)
        self.audit.record(
            self.actor,
            "quotas.set",
            f"{scope} {label}",
            source=self.source,
            detail={"id": str(q.id), "model": q.model or None, "rpm": rpm, "tpm": tpm},
        )
        return _quota_record(q, {subject_id: label})

    def quotas_delete(self, ref: str) -> Record:
        """Remove a quota by id (8+ hex digits); the record as it was."""
        hexed = ref.strip().lower().replace("-", "")
        found = [
            q
            for q in self.quotas_list()
            if len(hexed) >= 8 and q["id"].replace("-", "").startswith(hexed)
        ]
        if len(found) != 1:
            raise NotFound(f"no quota {ref!r}", hint="`llmgw quotas list` shows their ids")
        self._budget_store().delete_quota(uuid.UUID(found[0]["id"]))
        self.audit.record(
            self.actor,
            "quotas.delete",
            f"{found[0]['scope']} {found[0]['subject']}",
            source=self.source,
            detail={"id": found[0]["id"], "model": found[0]["model"]},
        )
        return found[0]


def _quota_record(q: Any, labels: Mapping[uuid.UUID, str]) -> Record:
    return {
        "id": str(q.id),
        "scope": q.scope,
        "subject_id": str(q.subject_id),
        "subject": labels.get(q.subject_id, str(q.subject_id)),
        "model": q.model or None,
        "rpm": q.rpm,
        "tpm": q.tpm,
        "created_at": _iso(q.created_at),
        "updated_at": _iso(q.updated_at),
    }


class RemoteBudgetOps:
    """The same operations over ``/admin/v1`` (mixed into ``RemoteAdmin``)."""

    def _list(self, path: str, params: Mapping[str, str] | None = None) -> builtins.list[Record]:
        raise NotImplementedError

    def _one(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Record:
        raise NotImplementedError

    def budgets_list(self) -> builtins.list[Record]:
        """Every budget with its current period's spend."""
        return self._list("/budgets")

    def budgets_show(self, ref: str) -> Record:
        """One budget by id (8+ hex digits)."""
        return self._one("GET", f"/budgets/{quote(ref, safe='')}")

    def budgets_set(
        self,
        *,
        key: str | None = None,
        user: str | None = None,
        period: str = "month",
        amount: str | Decimal,
        currency: str | None = None,
        thresholds: str | builtins.list[int] = "80,100",
        hard_stop: bool = False,
    ) -> Record:
        """Create or replace a budget (the server resolves the key or user)."""
        body = {
            "key": key,
            "user": user,
            "period": period,
            "amount": str(amount),
            "currency": currency,
            "thresholds": thresholds,
            "hard_stop": hard_stop,
        }
        return self._one("POST", "/budgets", body)

    def budgets_delete(self, ref: str) -> Record:
        """Remove a budget."""
        return self._one("DELETE", f"/budgets/{quote(ref, safe='')}")

    def quotas_list(self) -> builtins.list[Record]:
        """Every per-user and per-version quota."""
        return self._list("/quotas")

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
        body = {"key": key, "user": user, "model": model, "rpm": rpm, "tpm": tpm}
        return self._one("POST", "/quotas", body)

    def quotas_delete(self, ref: str) -> Record:
        """Remove a quota."""
        return self._one("DELETE", f"/quotas/{quote(ref, safe='')}")
