"""Alert search on PostgreSQL: trigram and JSONB indexes (issue 14: search over 1M occurrences).

``ix_alerts_search_trgm`` (GIN, ``gin_trgm_ops`` from the ``pg_trgm`` extension) serves the
free-text search (``search LIKE '%text%'``: name, labels, annotations); ``ix_alerts_labels``
(GIN, ``jsonb_path_ops``) serves the label filter (``labels @> '{"job": "node"}'``);
``ix_alerts_active`` (GiST over the range an occurrence was active, ``starts_at`` to
``last_seen``) serves a time window (``since`` and ``until`` together: without it a window
weeks back walked every newer row, about 1 s on 1M). Where
``pg_trgm`` cannot be created (a role without the right, an extension not installed) the
trigram index is left out with a warning and text search stays a scan; SQLite gets neither (it
has no such index types; its search is a scan, fine at the sizes SQLite is used for).

The indexes are built inside the migration's transaction: writes to ``alerts`` wait while they
build (about a minute on 1M occurrences); webhook deliveries wait, not fail.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

ACTIVE = "tstzrange(LEAST(starts_at, last_seen), GREATEST(starts_at, last_seen), '[]')"
"""The indexed expression; ``llmgw.alerts.queries`` writes the same one (the planner matches it)."""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.create_index(
        "ix_alerts_labels", "alerts", ["labels"],
        postgresql_using="gin", postgresql_ops={"labels": "jsonb_path_ops"},
    )  # fmt: skip
    op.execute(f"CREATE INDEX ix_alerts_active ON alerts USING gist ({ACTIVE})")
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        log.warning(
            "pg_trgm is not available (%s): alert text search works without its index"
            " (slower on large histories); create the extension and run `llmgw db upgrade`"
            " after a downgrade to 0008 to add it",
            type(exc.orig).__name__,
        )
        return
    savepoint.commit()
    op.create_index(
        "ix_alerts_search_trgm", "alerts", ["search"],
        postgresql_using="gin", postgresql_ops={"search": "gin_trgm_ops"},
    )  # fmt: skip


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_alerts_search_trgm")
    op.execute("DROP INDEX IF EXISTS ix_alerts_active")
    op.drop_index("ix_alerts_labels", table_name="alerts")
