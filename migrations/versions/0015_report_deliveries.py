"""``report_deliveries``: which scheduled report was sent (issue 13).

One row per report period (``daily:2026-12-02``, ``weekly:2026-W48``, ``monthly:2026-11``),
inserted by the instance that claims it before it sends: the primary key makes the claim the
lock, so with several ``llmgw serve`` instances on one database each report is sent once.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmgw.storage.types import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_deliveries",
        sa.Column("period", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("report_deliveries")
