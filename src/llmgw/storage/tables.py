"""The database tables, as SQLModel classes. Migrations in ``llmgw.migrations`` create them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from llmgw.storage.types import JSONType, Money, UTCDateTime

__all__ = ["ApiKey", "AuditEntry", "ProviderStatus", "UsageRecord", "User", "utcnow"]


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)


class User(SQLModel, table=True):
    """A person or service that owns API keys."""

    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=320, sa_column_kwargs={"unique": True}, nullable=False)
    name: str | None = Field(default=None, max_length=200)
    role: str = Field(default="user", max_length=20)
    disabled: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime(), nullable=False)


class ApiKey(SQLModel, table=True):
    """An API key: only its digest and a short public prefix are stored."""

    __tablename__ = "api_keys"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", index=True)
    prefix: str = Field(max_length=32, sa_column_kwargs={"unique": True}, nullable=False)
    digest: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime(), nullable=False)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    rpm: int | None = Field(default=None)
    tpm: int | None = Field(default=None)
    models: list[str] | None = Field(default=None, sa_type=JSONType)
    rotated_from: uuid.UUID | None = Field(default=None)


class UsageRecord(SQLModel, table=True):
    """One request through the gateway, successful or not."""

    __tablename__ = "usage"
    __table_args__ = (
        sa.Index("ix_usage_created_at", "created_at"),
        sa.Index("ix_usage_key_created", "key_id", "created_at"),
        sa.Index("ix_usage_user_created", "user_id", "created_at"),
        sa.Index("ix_usage_provider_model_created", "provider", "model", "created_at"),
    )

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    request_id: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime(), nullable=False)
    user_id: uuid.UUID | None = Field(default=None)
    key_id: uuid.UUID | None = Field(default=None)
    endpoint: str = Field(default="chat", max_length=32)
    provider: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=200)
    model_version: str | None = Field(default=None, max_length=64)
    stream: bool = Field(default=False)
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    total_tokens: int = Field(default=0)
    cost: Decimal = Field(default=Decimal(0), sa_type=Money(), nullable=False)
    latency_ms: float = Field(default=0.0)
    ttft_ms: float | None = Field(default=None)
    status: int = Field(default=200)
    error_type: str | None = Field(default=None, max_length=64)
    meta: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column("metadata", JSONType, nullable=True)
    )


class ProviderStatus(SQLModel, table=True):
    """Last known health of one (provider, model)."""

    __tablename__ = "provider_status"

    provider: str = Field(max_length=64, primary_key=True)
    model: str = Field(max_length=200, primary_key=True)
    status: str = Field(default="unknown", max_length=20)
    latency_ms: float | None = Field(default=None)
    error_rate: float = Field(default=0.0)
    last_error: str | None = Field(default=None, max_length=500)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime(), nullable=False)


class AuditEntry(SQLModel, table=True):
    """One administrative action: who did what to which object, when and from where.

    Never a secret: targets are ids, key prefixes and emails; ``detail`` holds settings only.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        sa.Index("ix_audit_log_at", "at"),
        sa.Index("ix_audit_log_actor_at", "actor", "at"),
    )

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime(), nullable=False)
    actor: str = Field(max_length=320)
    actor_kind: str = Field(max_length=16)
    action: str = Field(max_length=64)
    target: str | None = Field(default=None, max_length=320)
    source: str = Field(max_length=16)
    remote_addr: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
