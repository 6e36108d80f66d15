"""Initial schema: users, api_keys, usage, provider_status.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmgw.storage.types import JSONType, Money, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(200)),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), index=True),
        sa.Column("prefix", sa.String(32), nullable=False, unique=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("revoked_at", UTCDateTime()),
        sa.Column("last_used_at", UTCDateTime()),
        sa.Column("rpm", sa.Integer()),
        sa.Column("tpm", sa.Integer()),
        sa.Column("models", JSONType),
        sa.Column("rotated_from", sa.Uuid()),
    )
    op.create_table(
        "usage",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("user_id", sa.Uuid()),
        sa.Column("key_id", sa.Uuid()),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(64)),
        sa.Column("model", sa.String(200)),
        sa.Column("model_version", sa.String(64)),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", Money(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float()),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(64)),
        sa.Column("metadata", JSONType),
    )
    op.create_index("ix_usage_created_at", "usage", ["created_at"])
    op.create_index("ix_usage_key_created", "usage", ["key_id", "created_at"])
    op.create_index("ix_usage_user_created", "usage", ["user_id", "created_at"])
    op.create_index("ix_usage_provider_model_created", "usage", ["provider", "model", "created_at"])
    op.create_table(
        "provider_status",
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("latency_ms", sa.Float()),
        sa.Column("error_rate", sa.Float(), nullable=False),
        sa.Column("last_error", sa.String(500)),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("provider_status")
    op.drop_index("ix_usage_provider_model_created", table_name="usage")
    op.drop_index("ix_usage_user_created", table_name="usage")
    op.drop_index("ix_usage_key_created", table_name="usage")
    op.drop_index("ix_usage_created_at", table_name="usage")
    op.drop_table("usage")
    op.drop_table("api_keys")
    op.drop_table("users")
