"""``usage.finish_reason`` and the rollups' ``streamed`` and ``truncated`` counts (issue 13).

``finish_reason`` is the one the client got (``stop``, ``length``, ``tool_calls``...; NULL for a
failed call or an endpoint without one). The rollups count per bucket how many requests were
streamed and how many stopped at ``max_tokens`` (``finish_reason = 'length'``), so usage
patterns (share of streaming) and ``llmgw usage recommend`` (prompts that hit ``max_tokens``)
read rollups, not raw rows. Rows written before have no finish reason (counted as not
truncated); their stream flag was recorded, so the rollups are rebuilt from the raw rows
(``llmgw.usage.rollup.rebuild_in``; ``llmgw usage rebuild-rollups`` does the same online).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_ROLLUPS = ("usage_hourly", "usage_hourly_models", "usage_daily")
_COUNTS = ("streamed", "truncated")


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("finish_reason", sa.String(32)))
    for table in _ROLLUPS:
        with op.batch_alter_table(table) as batch:
            for name in _COUNTS:
                batch.add_column(
                    sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
                )
    from llmgw.usage.rollup import rebuild_in, refresh_in

    conn = op.get_bind()
    rebuild_in(conn)  # the stream counts of every row folded in so far
    while refresh_in(conn):
        pass
    if conn.dialect.name == "postgresql":
        for table in _ROLLUPS:
            op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    for table in _ROLLUPS:
        with op.batch_alter_table(table) as batch:
            for name in _COUNTS:
                batch.drop_column(name)
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("finish_reason")
