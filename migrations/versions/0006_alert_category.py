"""The alert history: the classification's category as a column (filters and stats by category).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("category", sa.String(32)))
    op.create_index("ix_alerts_category_last_seen", "alerts", ["category", "last_seen"])


def downgrade() -> None:
    op.drop_index("ix_alerts_category_last_seen", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("category")
