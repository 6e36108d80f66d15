"""The alert history: what Alertmanager says about a firing occurrence's silences and inhibitions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmgw.storage.types import JSONType

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("suppressed", JSONType))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("suppressed")
