"""The database tables, as SQLModel classes. Migrations in ``llmgw.migrations`` create them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from llmgw.storage.types import JSONType, Money, UTCDateTime
from llmgw.usage.stats_sql import LATENCY_BUCKETS

__all__ = [
    "register_all",
    "ApiKey",
    "AuditEntry",
    "LATENCY_BUCKETS",
    "OAuthClient",
    "OAuthCode",
    "OAuthDeviceCode",
    "OAuthRefreshToken",
    "OAuthSigningKey",
    "OAuthToken",
    "ProviderStatus",
    "UsageRecord",
    "User",
    "WebSession",
    "usage_daily",
    "usage_hourly",
    "usage_hourly_models",
    "usage_rollup_state",
    "report_deliveries",
    "utcnow",
]


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
    password_hash: str | None = Field(default=None, max_length=512)
    """An argon2 hash (``llmgw.identity.passwords``); ``None``: no password login."""
    password_changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime())


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
    """The API key of the call; ``None`` for a call made with a token (``token_id``)."""
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
    token_id: str | None = Field(default=None, max_length=64)
    """The ``jti`` of the access token or personal access token of the call (``oauth_tokens``);
    ``None`` for a call made with an API key (migration 0008)."""
    finish_reason: str | None = Field(default=None, max_length=32)
    """Why the answer ended, as the client was told (``stop``, ``length``: it hit
    ``max_tokens``, ``tool_calls``...); ``None`` for a failure or an embedding (migration 0013)."""


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


# -- identity (issue 11): OAuth clients, grants, tokens, signing keys, browser sessions --------
# Secrets are never stored: codes, refresh tokens, device codes, client secrets and session ids
# are kept as SHA-256 hex digests; signing keys are encrypted (``llmgw.identity.signing``).


class OAuthClient(SQLModel, table=True):
    """An OAuth client registered by an admin: ``public`` (CLI, native apps) or ``confidential``."""

    __tablename__ = "oauth_clients"

    client_id: str = Field(max_length=64, primary_key=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=16)
    secret_digest: str | None = Field(default=None, max_length=64)
    redirect_uris: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    grant_types: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    scopes: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime(), nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime())


class OAuthCode(SQLModel, table=True):
    """An authorization code (single use, 60 s); ``family_id`` names the grant it issued."""

    __tablename__ = "oauth_codes"

    code_digest: str = Field(max_length=64, primary_key=True)
    client_id: str = Field(max_length=64, foreign_key="oauth_clients.client_id")
    user_id: uuid.UUID = Field(foreign_key="users.id")
    redirect_uri: str = Field(max_length=2000)
    scope: str = Field(max_length=500)
    code_challenge: str = Field(max_length=128)
    expires_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    family_id: uuid.UUID | None = Field(default=None)


class OAuthRefreshToken(SQLModel, table=True):
    """One refresh token of a grant (``family_id``); each use rotates it."""

    __tablename__ = "oauth_refresh_tokens"
    __table_args__ = (sa.Index("ix_oauth_refresh_tokens_family_id", "family_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    digest: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    family_id: uuid.UUID
    client_id: str = Field(max_length=64, foreign_key="oauth_clients.client_id")
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    scope: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime(), nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime())


class OAuthDeviceCode(SQLModel, table=True):
    """A device authorization (RFC 8628) waiting for, or given, a user's approval."""

    __tablename__ = "oauth_device_codes"

    device_digest: str = Field(max_length=64, primary_key=True)
    user_code: str = Field(max_length=16, sa_column_kwargs={"unique": True}, nullable=False)
    client_id: str = Field(max_length=64, foreign_key="oauth_clients.client_id")
    scope: str = Field(max_length=500)
    expires_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    interval: int = Field(default=5)
    last_polled_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    approved_user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    denied_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime())


class OAuthToken(SQLModel, table=True):
    """An issued access token or personal access token, by ``jti`` (for listing and revoking).

    A row with ``revoked_at`` set is on the deny-list until ``expires_at``.
    """

    __tablename__ = "oauth_tokens"
    __table_args__ = (
        sa.Index("ix_oauth_tokens_user_id", "user_id"),
        sa.Index("ix_oauth_tokens_family_id", "family_id"),
        sa.Index("ix_oauth_tokens_revoked_at", "revoked_at"),
    )

    jti: str = Field(max_length=64, primary_key=True)
    kind: str = Field(max_length=16)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    client_id: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    scope: str = Field(max_length=500)
    family_id: uuid.UUID | None = Field(default=None)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime(), nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    rpm: int | None = Field(default=None)
    """A personal access token's own requests per minute (``None``: ``identity.token_rpm``)."""
    tpm: int | None = Field(default=None)
    """A personal access token's own tokens per minute (``None``: ``identity.token_tpm``)."""


class OAuthSigningKey(SQLModel, table=True):
    """A JWT signing key: the private half encrypted, the public half as a JWK.

    Signs until ``retires_at``; verifies until ``expires_at`` (the overlap after a rotation).
    """

    __tablename__ = "oauth_signing_keys"

    kid: str = Field(max_length=64, primary_key=True)
    alg: str = Field(max_length=16)
    private_key: str = Field(sa_type=sa.Text(), nullable=False)
    public_jwk: dict[str, Any] = Field(sa_type=JSONType, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime(), nullable=False)
    retires_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime())


class WebSession(SQLModel, table=True):
    """A browser session of the self-service pages (the cookie holds the id; only its digest here)."""

    __tablename__ = "web_sessions"
    __table_args__ = (sa.Index("ix_web_sessions_user_id", "user_id"),)

    id_digest: str = Field(max_length=64, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id")
    csrf_secret: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime(), nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)


def _rollup(name: str, *, who: bool = True) -> sa.Table:
    """A usage rollup (``llmgw.usage.rollup``): one row per time bucket and dimensions
    (``who``: also per key and user).

    Dimensions are NOT NULL (the primary key upserts on them): a usage row's NULL provider,
    model or version is ``''`` here, a NULL key or user the nil UUID.
    """
    keys = (
        [
            sa.Column("key_id", sa.Uuid(), primary_key=True),
            sa.Column("user_id", sa.Uuid(), primary_key=True),
        ]
        if who
        else []
    )
    return sa.Table(
        name,
        SQLModel.metadata,
        sa.Column("bucket", UTCDateTime(), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        *keys,
        sa.Column("status", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_units", sa.BigInteger(), nullable=False),  # cost in 1e-10 units: exact
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("latency_min", sa.Float(), nullable=False),
        sa.Column("latency_max", sa.Float(), nullable=False),
        *(sa.Column(f"lat_{k}", sa.Integer(), nullable=False) for k in range(LATENCY_BUCKETS)),
        # migration 0013: requests streamed, requests that stopped at max_tokens
        sa.Column("streamed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("truncated", sa.BigInteger(), nullable=False, server_default="0"),
    )


usage_hourly = _rollup("usage_hourly")
"""Usage rows aggregated per UTC hour (``bucket`` is the hour's start)."""
usage_hourly_models = _rollup("usage_hourly_models", who=False)
"""``usage_hourly`` without the key and user: about 20 rows per hour, not one per key; reports
that neither filter nor group by key or user read it."""
usage_daily = _rollup("usage_daily")
"""Usage rows aggregated per UTC day (``bucket`` is the day's start, 00:00 UTC)."""
usage_rollup_state = sa.Table(
    "usage_rollup_state",
    SQLModel.metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("last_id", sa.BigInteger(), nullable=False),
)
"""One row (``id`` 1): the rollups hold exactly the usage rows with ``id <= last_id``."""

report_deliveries = sa.Table(
    "report_deliveries",
    SQLModel.metadata,
    sa.Column("period", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("instance", sa.String(64), nullable=False),
    sa.Column("claimed_at", UTCDateTime(), nullable=False),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
)
"""One row per scheduled report period (``daily:2026-12-02``): claimed (``sending``) by one
instance, then ``sent`` (``llmgw.usage.report_schedule``; migration 0015)."""


def register_all() -> None:
    """Register every table on ``SQLModel.metadata``: the alert history's, the budgets', the
    conversations' and the providers' tables live in their own modules, imported here.

    Not done when this module is imported: ``llmgw usage stats`` and the reports use none of
    them, and they were a third of the import time of those commands. What needs the whole
    schema calls this first: the migrations' environment, ``canonical.table_specs`` (``llmgw
    db migrate``), the schema drift test.
    """
    from llmgw.storage import (  # noqa: F401
        alert_tables,
        budget_tables,
        conversation_tables,
        provider_tables,
    )
