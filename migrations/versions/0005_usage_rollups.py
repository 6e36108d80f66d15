"""Usage rollups per hour and per day, for admin usage reports over many rows (issue 10).

The tables are ``llmgw.storage.tables.usage_hourly``, ``usage_daily`` and
``usage_rollup_state``; filling them is ``llmgw.usage.rollup.refresh``, run once here (every
existing row, in transactions of ``CHUNK`` ids) and by reports when the tail grows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmgw.storage.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BUCKETS = 32  # llmgw.storage.tables.LATENCY_BUCKETS when this was written


def _rollup(name: str) -> None:
    op.create_table(
        name,
        sa.Column("bucket", UTCDateTime(), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("status", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_units", sa.BigInteger(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("latency_min", sa.Float(), nullable=False),
        sa.Column("latency_max", sa.Float(), nullable=False),
        *(sa.Column(f"lat_{k}", sa.Integer(), nullable=False) for k in range(_BUCKETS)),
    )


def upgrade() -> None:
    _rollup("usage_hourly")
    _rollup("usage_daily")
    state = op.create_table(
        "usage_rollup_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(state, [{"id": 1, "last_id": 0}])
    from llmgw.usage.rollup import refresh_in

    conn = op.get_bind()
    # every existing row, in chunks, in the migration's transaction (usage_hourly_models comes
    # with 0007, which fills it from usage_hourly)
    while refresh_in(conn, slim=False):
        pass
    if conn.dialect.name == "postgresql":  # plans for the first reports, before autovacuum
        op.execute("ANALYZE usage_hourly")
        op.execute("ANALYZE usage_daily")


def downgrade() -> None:
    op.drop_table("usage_rollup_state")
    op.drop_table("usage_daily")
    op.drop_table("usage_hourly")
