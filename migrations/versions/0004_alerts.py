"""The alert history (issue 14): deliveries, occurrences, events, the job queue, the cache.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmgw.storage.types import JSONType, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def _alert_id() -> sa.Column[int]:
    return sa.Column(
        "alert_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey("alerts.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "alert_deliveries",
        _id(),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("last_received_at", UTCDateTime(), nullable=False),
        sa.Column("copies", sa.Integer(), nullable=False),
        sa.Column("receiver", sa.String(200), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("alert_count", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Integer(), nullable=False),
        sa.Column("external_url", sa.Text(), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
    )
    op.create_index(
        "ix_alert_deliveries_last_received_at", "alert_deliveries", ["last_received_at"]
    )
    op.create_table(
        "alerts",
        _id(),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime()),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("alertname", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(32)),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("annotations", JSONType, nullable=False),
        sa.Column("generator_url", sa.Text(), nullable=False),
        sa.Column("receiver", sa.String(200), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("notifications", sa.Integer(), nullable=False),
        sa.Column("fire_count", sa.Integer(), nullable=False),
        sa.Column("flapping", sa.Boolean(), nullable=False),
        sa.Column("last_delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
        sa.Column("acked_at", UTCDateTime()),
        sa.Column("acked_by", sa.String(320)),
        sa.Column("note", sa.Text()),
        sa.Column("cls_status", sa.String(16), nullable=False),
        sa.Column("classification", JSONType),
        sa.Column("search", sa.Text(), nullable=False),
        sa.UniqueConstraint("fingerprint", "starts_at", name="uq_alerts_fingerprint_starts_at"),
    )
    op.create_index("ix_alerts_last_seen", "alerts", ["last_seen"])
    op.create_index("ix_alerts_status_last_seen", "alerts", ["status", "last_seen"])
    op.create_index("ix_alerts_severity_last_seen", "alerts", ["severity", "last_seen"])
    op.create_index("ix_alerts_alertname_last_seen", "alerts", ["alertname", "last_seen"])
    op.create_index("ix_alerts_starts_at", "alerts", ["starts_at"])
    op.create_table(
        "alert_events",
        _id(),
        _alert_id(),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(320)),
        sa.Column("detail", JSONType),
    )
    op.create_index("ix_alert_events_alert_id_at", "alert_events", ["alert_id", "at"])
    op.create_table(
        "alert_jobs",
        _id(),
        _alert_id(),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("last_error", sa.String(500)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("alert_id", "step", name="uq_alert_jobs_alert_id_step"),
    )
    op.create_index("ix_alert_jobs_state_run_after", "alert_jobs", ["state", "run_after"])
    op.create_table(
        "alert_cls_cache",
        sa.Column("key", sa.String(160), primary_key=True),
        sa.Column("result", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_alert_cls_cache_expires_at", "alert_cls_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_cls_cache_expires_at", table_name="alert_cls_cache")
    op.drop_table("alert_cls_cache")
    op.drop_index("ix_alert_jobs_state_run_after", table_name="alert_jobs")
    op.drop_table("alert_jobs")
    op.drop_index("ix_alert_events_alert_id_at", table_name="alert_events")
    op.drop_table("alert_events")
    for name in (
        "ix_alerts_starts_at",
        "ix_alerts_alertname_last_seen",
        "ix_alerts_severity_last_seen",
        "ix_alerts_status_last_seen",
        "ix_alerts_last_seen",
    ):
        op.drop_index(name, table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_alert_deliveries_last_received_at", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
