"""Budgets, their threshold notices, and quotas per user and model version (issue 13).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmgw.storage.types import Money, UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("thresholds", sa.String(100), nullable=False),
        sa.Column("hard_stop", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("scope", "subject_id", "period", "currency"),
    )
    op.create_table(
        "budget_notices",
        sa.Column(
            "budget_id",
            sa.Uuid(),
            sa.ForeignKey("budgets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("period_start", UTCDateTime(), primary_key=True),
        sa.Column("threshold", sa.Integer(), primary_key=True),
        sa.Column("spent", Money(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "quotas",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("rpm", sa.Integer()),
        sa.Column("tpm", sa.Integer()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("scope", "subject_id", "model"),
    )


def downgrade() -> None:
    op.drop_table("quotas")
    op.drop_table("budget_notices")
    op.drop_table("budgets")
