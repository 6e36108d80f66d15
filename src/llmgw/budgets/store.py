"""The budgets and quotas in the database, and the once-guard of threshold notices.

``BudgetStore`` reads and writes ``budgets``, ``budget_notices`` and ``quotas``
(``llmgw.storage.budget_tables``). ``claim_notice`` is the cross-instance guard: the notice's
primary key is (budget, period start, threshold), so exactly one insert per period and
threshold succeeds, whichever instance tries first.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from llmgw.auth._db import db_errors
from llmgw.budgets.periods import PERIODS
from llmgw.errors import NotFound, UsageError
from llmgw.storage.budget_tables import Budget, BudgetNotice, Quota

__all__ = ["BudgetStore", "parse_amount", "parse_thresholds"]

_B = Budget.__table__  # type: ignore[attr-defined]
_N = BudgetNotice.__table__  # type: ignore[attr-defined]
_Q = Quota.__table__  # type: ignore[attr-defined]
SCOPES = ("key", "user")


def _now() -> datetime:
    return datetime.now(UTC)


def parse_thresholds(text: str | Sequence[int]) -> list[int]:
    """``"80,100"`` -> ``[80, 100]`` (1-1000 %, ascending, no duplicates)."""
    parts = [str(p).strip() for p in (text.split(",") if isinstance(text, str) else text)]
    try:
        values = sorted({int(p) for p in parts if p})
    except ValueError:
        raise UsageError(
            f"invalid thresholds {text!r}", hint="percentages, e.g. 50,80,100", param="thresholds"
        ) from None
    if not values or any(not 1 <= v <= 1000 for v in values):
        raise UsageError(
            f"invalid thresholds {text!r}", hint="percentages from 1 to 1000", param="thresholds"
        )
    return values


def parse_amount(text: str | Decimal | float) -> Decimal:
    """A positive amount of money with at most 10 decimal places."""
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value <= 0 or value > Decimal("1e12"):
        raise UsageError(f"invalid amount {text!r}", hint="a positive number, e.g. 100 or 12.50")
    return value.quantize(Decimal("0.0000000001")).normalize()


class BudgetStore:
    """Budgets, notices and quotas on ``engine`` (every call is one short transaction)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = _now) -> None:
        self.engine = engine
        self._clock = clock

    # -- budgets -------------------------------------------------------------------------
    def budgets(self) -> list[Budget]:
        """Every budget, by scope, subject and period."""
        with db_errors(self.engine, "reading budgets"), self.engine.connect() as conn:
            rows = conn.execute(sa.select(_B).order_by(_B.c.scope, _B.c.subject_id, _B.c.period))
            return [Budget.model_validate(dict(r._mapping)) for r in rows]

    def set_budget(
        self,
        scope: str,
        subject_id: uuid.UUID,
        period: str,
        currency: str,
        amount: Decimal,
        *,
        thresholds: Sequence[int] = (80, 100),
        hard_stop: bool = False,
    ) -> tuple[Budget | None, Budget]:
        """Create or replace the budget of (scope, subject, period, currency): (before, after)."""
        if scope not in SCOPES:
            raise UsageError(f"invalid scope {scope!r}", hint="key or user")
        if period not in PERIODS:
            raise UsageError(f"invalid period {period!r}", hint="day or month", param="period")
        if len(currency) != 3 or not (currency.isascii() and currency.isalpha()):
            raise UsageError(
                f"invalid currency {currency!r}",
                hint="an ISO 4217 code: RUB, USD",
                param="currency",
            )
        now = self._clock()
        values = {
            "amount": amount,
            "thresholds": ",".join(str(t) for t in thresholds),
            "hard_stop": hard_stop,
            "updated_at": now,
        }
        match = (
            (_B.c.scope == scope)
            & (_B.c.subject_id == subject_id)
            & (_B.c.period == period)
            & (_B.c.currency == currency.upper())
        )
        with db_errors(self.engine, "saving a budget"), self.engine.begin() as conn:
            row = conn.execute(sa.select(_B).where(match)).first()
            before = Budget.model_validate(dict(row._mapping)) if row is not None else None
            if before is None:
                new = {
                    "id": uuid.uuid4(),
                    "scope": scope,
                    "subject_id": subject_id,
                    "period": period,
                    "currency": currency.upper(),
                    "created_at": now,
                    **values,
                }
                conn.execute(_B.insert().values(**new))
                return None, Budget.model_validate(new)
            conn.execute(_B.update().where(_B.c.id == before.id).values(**values))
            return before, before.model_copy(update=values)

    def labels(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        """A readable name per key or user id: ``name (llmgw_abc…)`` or the user's email."""
        from llmgw.storage.tables import ApiKey, User

        keys, users = ApiKey.__table__, User.__table__  # type: ignore[attr-defined]
        out: dict[uuid.UUID, str] = {}
        with db_errors(self.engine, "reading names"), self.engine.connect() as conn:
            q = sa.select(keys.c.id, keys.c.name, keys.c.prefix).where(keys.c.id.in_(ids))
            for kid, name, prefix in conn.execute(q):
                out[kid] = f"{name} ({prefix})"
            for uid, email in conn.execute(
                sa.select(users.c.id, users.c.email).where(users.c.id.in_(ids))
            ):
                out[uid] = email
        return out

    def delete_budget(self, budget_id: uuid.UUID) -> None:
        """Remove a budget (and its notices)."""
        with db_errors(self.engine, "deleting a budget"), self.engine.begin() as conn:
            conn.execute(_N.delete().where(_N.c.budget_id == budget_id))
            if conn.execute(_B.delete().where(_B.c.id == budget_id)).rowcount == 0:
                raise NotFound("no such budget", hint="`llmgw budgets list` shows them")

    # -- notices -------------------------------------------------------------------------
    def claim_notice(
        self, budget_id: uuid.UUID, period_start: datetime, threshold: int, spent: Decimal
    ) -> bool:
        """Record that ``threshold`` was notified for this period; False when another instance
        (or an earlier pass) already did."""
        row = {
            "budget_id": budget_id,
            "period_start": period_start,
            "threshold": threshold,
            "spent": spent,
            "created_at": self._clock(),
        }
        try:
            with db_errors(self.engine, "claiming a notice"), self.engine.begin() as conn:
                conn.execute(_N.insert().values(**row))
        except IntegrityError:
            return False
        return True

    def notices(self, budget_id: uuid.UUID, period_start: datetime) -> list[BudgetNotice]:
        """The thresholds notified in the period starting at ``period_start``."""
        q = (
            sa.select(_N)
            .where((_N.c.budget_id == budget_id) & (_N.c.period_start == period_start))
            .order_by(_N.c.threshold)
        )
        with db_errors(self.engine, "reading notices"), self.engine.connect() as conn:
            return [BudgetNotice.model_validate(dict(r._mapping)) for r in conn.execute(q)]

    # -- quotas --------------------------------------------------------------------------
    def quotas(self) -> list[Quota]:
        """Every quota."""
        with db_errors(self.engine, "reading quotas"), self.engine.connect() as conn:
            rows = conn.execute(sa.select(_Q).order_by(_Q.c.scope, _Q.c.subject_id, _Q.c.model))
            return [Quota.model_validate(dict(r._mapping)) for r in rows]

    def set_quota(
        self, scope: str, subject_id: uuid.UUID, model: str, rpm: int | None, tpm: int | None
    ) -> Quota:
        """Create or replace the quota of (scope, subject, model)."""
        if scope not in SCOPES:
            raise UsageError(f"invalid scope {scope!r}", hint="key or user")
        if scope == "key" and not model:
            raise UsageError(
                "a key's quota names a model version",
                hint="a key's own limits are `llmgw keys update --rpm --tpm`",
            )
        if rpm is None and tpm is None:
            raise UsageError("give --rpm, --tpm or both")
        if len(model) > 200:
            raise UsageError("--model is longer than 200 characters", param="model")
        for name, v in (("rpm", rpm), ("tpm", tpm)):
            if v is not None and not 1 <= v <= 2_000_000_000:
                raise UsageError(f"invalid {name} {v}", hint="1 to 2,000,000,000", param=name)
        now = self._clock()
        match = (_Q.c.scope == scope) & (_Q.c.subject_id == subject_id) & (_Q.c.model == model)
        with db_errors(self.engine, "saving a quota"), self.engine.begin() as conn:
            row = conn.execute(sa.select(_Q).where(match)).first()
            if row is None:
                new = {
                    "id": uuid.uuid4(),
                    "scope": scope,
                    "subject_id": subject_id,
                    "model": model,
                    "rpm": rpm,
                    "tpm": tpm,
                    "created_at": now,
                    "updated_at": now,
                }
                conn.execute(_Q.insert().values(**new))
                return Quota.model_validate(new)
            conn.execute(_Q.update().where(match).values(rpm=rpm, tpm=tpm, updated_at=now))
            return Quota.model_validate({**row._mapping, "rpm": rpm, "tpm": tpm, "updated_at": now})

    def delete_quota(self, quota_id: uuid.UUID) -> None:
        """Remove a quota."""
        with db_errors(self.engine, "deleting a quota"), self.engine.begin() as conn:
            if conn.execute(_Q.delete().where(_Q.c.id == quota_id)).rowcount == 0:
                raise NotFound("no such quota", hint="`llmgw quotas list` shows them")
