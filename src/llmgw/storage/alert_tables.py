"""The alert history tables (issue 14): deliveries, occurrences, their events, the job queue,
the classification cache. Migration ``0004_alerts`` creates them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from llmgw.storage.types import JSONType, UTCDateTime

__all__ = [
    "POSTGRES_ONLY_INDEXES",
    "Alert",
    "AlertCacheEntry",
    "AlertDelivery",
    "AlertEvent",
    "AlertJob",
    "AlertPublication",
    "AlertStatsDelta",
    "AlertStatsHour",
]


def _bigint_pk() -> Any:
    return Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )


def _alert_fk() -> Any:
    return Field(
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("alerts.id", ondelete="CASCADE"),
            nullable=False,
        )
    )


class AlertDelivery(SQLModel, table=True):
    """One webhook notification as Alertmanager sent it, kept once however often it arrives.

    ``digest`` is the SHA-256 of the body without the fields that differ between the peers of
    an HA pair (``externalURL``) or between Alertmanager versions (``notification_reason``), so
    a retry or the second peer's copy only counts ``copies`` up.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (sa.Index("ix_alert_deliveries_last_received_at", "last_received_at"),)

    id: int | None = _bigint_pk()
    digest: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    received_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    last_received_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    copies: int = Field(default=1)
    receiver: str = Field(default="", max_length=200)
    group_key: str = Field(default="", sa_type=sa.Text())
    status: str = Field(default="firing", max_length=16)
    alert_count: int = Field(default=0)
    truncated: int = Field(default=0)
    external_url: str = Field(default="", sa_type=sa.Text())
    payload: dict[str, Any] = Field(sa_type=JSONType, nullable=False)


POSTGRES_ONLY_INDEXES = frozenset(
    {"ix_alerts_labels", "ix_alerts_search_trgm", "ix_alerts_active", "ix_alerts_refired"}
)
"""Indexes that only the migrations create: 0009's exist only on PostgreSQL (GIN and GiST;
SQLite has none of them), 0018's ``ix_alerts_refired`` is partial on both. They are not in the
models: ``postgresql_using`` would load SQLAlchemy's PostgreSQL dialect
in every command (tests/test_import_hygiene.py), and one is on an expression; schema comparisons
leave them out."""


class Alert(SQLModel, table=True):
    """One occurrence of an alert: a label set (``fingerprint``) firing from ``starts_at``."""

    __tablename__ = "alerts"
    __table_args__ = (
        sa.UniqueConstraint("fingerprint", "starts_at", name="uq_alerts_fingerprint_starts_at"),
        sa.Index("ix_alerts_last_seen", "last_seen"),
        sa.Index("ix_alerts_status_last_seen", "status", "last_seen"),
        sa.Index("ix_alerts_severity_last_seen", "severity", "last_seen"),
        sa.Index("ix_alerts_alertname_last_seen", "alertname", "last_seen"),
        sa.Index("ix_alerts_starts_at", "starts_at"),
        sa.Index("ix_alerts_category_last_seen", "category", "last_seen"),
    )

    id: int | None = _bigint_pk()
    fingerprint: str = Field(max_length=32, nullable=False)
    starts_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    ends_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    source: str = Field(default="alertmanager", max_length=16)
    alertname: str = Field(default="", max_length=200)
    status: str = Field(default="firing", max_length=16)
    severity: str | None = Field(default=None, max_length=32)
    labels: dict[str, Any] = Field(sa_type=JSONType, nullable=False)
    annotations: dict[str, Any] = Field(sa_type=JSONType, nullable=False)
    generator_url: str = Field(default="", sa_type=sa.Text())
    receiver: str = Field(default="", max_length=200)
    first_seen: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    last_seen: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    notifications: int = Field(default=1)
    fire_count: int = Field(default=1)
    flapping: bool = Field(default=False)
    last_delivery_id: int | None = Field(
        default=None, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    acked_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    acked_by: str | None = Field(default=None, max_length=320)
    note: str | None = Field(default=None, sa_type=sa.Text())
    cls_status: str = Field(default="pending", max_length=16)
    classification: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    category: str | None = Field(default=None, max_length=32)
    """The classification's category (migration 0006), for filters and stats."""
    suppressed: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    """What Alertmanager last said silences or inhibits this firing occurrence (migration 0010;
    ``llmgw.alerts.silences``); ``None``: not suppressed, or never asked."""
    search: str = Field(default="", sa_type=sa.Text())


class AlertEvent(SQLModel, table=True):
    """The timeline of an occurrence: fired, resolved, classified, acknowledged, annotated..."""

    __tablename__ = "alert_events"
    __table_args__ = (sa.Index("ix_alert_events_alert_id_at", "alert_id", "at"),)

    id: int | None = _bigint_pk()
    alert_id: int = _alert_fk()
    at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    kind: str = Field(max_length=32)
    actor: str | None = Field(default=None, max_length=320)
    detail: dict[str, Any] | None = Field(default=None, sa_type=JSONType)


class AlertJob(SQLModel, table=True):
    """The durable processing queue: one row per (occurrence, step), claimed under a lease."""

    __tablename__ = "alert_jobs"
    __table_args__ = (
        sa.UniqueConstraint("alert_id", "step", name="uq_alert_jobs_alert_id_step"),
        sa.Index("ix_alert_jobs_state_run_after", "state", "run_after"),
    )

    id: int | None = _bigint_pk()
    alert_id: int = _alert_fk()
    step: str = Field(max_length=64)
    state: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    run_after: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime())
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)


class AlertCacheEntry(SQLModel, table=True):
    """A classification reused for the same identifying labels (when Redis is not configured)."""

    __tablename__ = "alert_cls_cache"
    __table_args__ = (sa.Index("ix_alert_cls_cache_expires_at", "expires_at"),)

    key: str = Field(max_length=160, primary_key=True)
    result: dict[str, Any] = Field(sa_type=JSONType, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)


class AlertPublication(SQLModel, table=True):
    """What was sent for an occurrence to one publishing target (migration ``0012``): one row
    per (occurrence, target, action), written *before* each request (``state = 'sending'``) and
    after its answer, so a crash mid-request is known on the next attempt (see
    ``llmgw.alerts.publishers.step``)."""

    __tablename__ = "alert_publications"
    __table_args__ = (
        sa.UniqueConstraint("alert_id", "target", "action", name="uq_alert_publications"),
        sa.Index("ix_alert_publications_target_updated_at", "target", "updated_at"),
    )

    id: int | None = _bigint_pk()
    alert_id: int = _alert_fk()
    target: str = Field(max_length=100)
    target_type: str = Field(max_length=16)
    action: str = Field(max_length=16)
    """``fire`` or ``resolve``."""
    state: str = Field(max_length=16)
    """``sending`` (a request may be in flight), ``retrying``, ``sent``, ``failed``, ``unknown``."""
    external_id: str | None = Field(default=None, max_length=300)
    """PagerDuty ``dedup_key``, Rootly alert ``id``, Slack ``channel:ts``."""
    http_status: int | None = Field(default=None)
    attempts: int = Field(default=0)
    error: str | None = Field(default=None, max_length=500)
    next_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    """When a ``retrying`` publication is due again."""
    created_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)


class AlertStatsHour(SQLModel, table=True):
    """How many occurrences there are per hour last seen, hour started, status, severity,
    category and classification status (migration ``0018``): triggers on ``alerts`` keep it in
    the writer's transaction, so ``stats()`` reads a few hundred rows instead of scanning the
    period. A missing severity or category is ``''``."""

    __tablename__ = "alert_stats_hourly"

    seen_hour: datetime = Field(sa_type=UTCDateTime(), primary_key=True)
    start_hour: datetime = Field(sa_type=UTCDateTime(), primary_key=True)
    status: str = Field(max_length=16, primary_key=True)
    severity: str = Field(max_length=32, primary_key=True)
    category: str = Field(max_length=32, primary_key=True)
    cls_status: str = Field(max_length=16, primary_key=True)
    n: int = Field(sa_type=sa.BigInteger(), nullable=False)


class AlertStatsDelta(SQLModel, table=True):
    """Changes to ``alert_stats_hourly`` not folded into it yet (migration ``0019``): on
    PostgreSQL the triggers on ``alerts`` append their grouped changes here (no shared row, so
    concurrent writers never wait for each other's count), ``llmgw.alerts.summary.fold`` moves
    them into the hourly counts, and ``stats()`` reads both. Empty on SQLite, whose triggers
    keep the hourly counts themselves."""

    __tablename__ = "alert_stats_delta"

    id: int | None = _bigint_pk()
    seen_hour: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    start_hour: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    status: str = Field(max_length=16, nullable=False)
    severity: str = Field(max_length=32, nullable=False)
    category: str = Field(max_length=32, nullable=False)
    cls_status: str = Field(max_length=16, nullable=False)
    n: int = Field(sa_type=sa.BigInteger(), nullable=False)
