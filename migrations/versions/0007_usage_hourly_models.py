"""``usage_hourly_models``: the hourly usage rollup without key and user (issue 10).

Reports that neither filter nor group by key or user (the hourly series, by model, version,
provider or status) read about 20 rows per hour here instead of one per key as well: on 1M rows
over 30 days, 30 days by hour read 166,000 rows of ``usage_hourly`` and 150 ms of PostgreSQL CPU.
Filled from ``usage_hourly`` (which holds exactly the rows up to ``usage_rollup_state.last_id``,
so both stay in step), under the lock a refresh takes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmgw.storage.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BUCKETS = 32
_SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_units",
    "latency_sum",
    *(f"lat_{k}" for k in range(_BUCKETS)),
)


def upgrade() -> None:
    op.create_table(
        "usage_hourly_models",
        sa.Column("bucket", UTCDateTime(), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
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
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":  # no refresh folds rows in while we copy
        op.execute("LOCK TABLE usage IN SHARE ROW EXCLUSIVE MODE")
    dims = "bucket, provider, model, model_version, status"
    sums = ", ".join(f"sum({c})" for c in _SUMS)
    insert = (  # every name comes from this file
        f"INSERT INTO usage_hourly_models ({dims}, {', '.join(_SUMS)}, latency_min, latency_max) "  # noqa: S608
        f"SELECT {dims}, {sums}, min(latency_min), max(latency_max) "
        f"FROM usage_hourly GROUP BY {dims}"
    )
    op.execute(insert)
    if conn.dialect.name == "postgresql":
        op.execute("ANALYZE usage_hourly_models")


def downgrade() -> None:
    op.drop_table("usage_hourly_models")
