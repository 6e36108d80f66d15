"""Budgets, their threshold notifications, and quotas (issue 13). Migration ``0014_budgets``.

A budget caps the spend of one key or one user (``scope``, ``subject_id``) per UTC ``period``
(``day`` or ``month``) in one ``currency``. ``budget_notices`` is the once-guard of threshold
notifications: its primary key is (budget, period start, threshold), so across instances only
the one whose insert succeeds sends. A quota is an rpm/tpm limit of a user (all their keys
together, ``model`` empty) or of a key or user on one model version (``model`` set).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from llmgw.storage.types import Money, UTCDateTime

__all__ = ["Budget", "BudgetNotice", "Quota"]


class Budget(SQLModel, table=True):
    """A spend limit of a key or a user per day or month, in one currency."""

    __tablename__ = "budgets"
    __table_args__ = (sa.UniqueConstraint("scope", "subject_id", "period", "currency"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    scope: str = Field(max_length=8)
    """``key`` or ``user``."""
    subject_id: uuid.UUID
    period: str = Field(max_length=8)
    """``day`` or ``month`` (UTC)."""
    currency: str = Field(max_length=3)
    amount: Decimal = Field(sa_type=Money(), nullable=False)
    thresholds: str = Field(default="80,100", max_length=100)
    """Percentages that notify, comma-separated, ascending."""
    hard_stop: bool = Field(default=False)
    """Refuse requests (402 ``budget_exceeded``) once the spend reaches the amount."""
    created_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)


class BudgetNotice(SQLModel, table=True):
    """A threshold notification claimed for one period (sent at most once, by one instance)."""

    __tablename__ = "budget_notices"

    budget_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid(), sa.ForeignKey("budgets.id", ondelete="CASCADE"), primary_key=True
        )
    )
    period_start: datetime = Field(sa_type=UTCDateTime(), primary_key=True)
    threshold: int = Field(primary_key=True)
    spent: Decimal = Field(sa_type=Money(), nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)


class Quota(SQLModel, table=True):
    """rpm/tpm of a user (``model`` empty) or of a key or user on one model version."""

    __tablename__ = "quotas"
    __table_args__ = (sa.UniqueConstraint("scope", "subject_id", "model"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    scope: str = Field(max_length=8)
    """``key`` or ``user``."""
    subject_id: uuid.UUID
    model: str = Field(default="", max_length=200)
    """``""`` (every model) or ``model[:version]`` / ``provider/model[:version]``."""
    rpm: int | None = Field(default=None)
    tpm: int | None = Field(default=None)
    created_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
