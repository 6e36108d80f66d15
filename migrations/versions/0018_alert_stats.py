"""Alert counts kept as they change (issue 14: ``stats`` over 1M occurrences must not scan).

``alert_stats_hourly`` holds how many occurrences there are per (hour last seen, hour started,
status, severity, category, classification status); triggers on ``alerts`` keep it in the
same transaction as every insert, update and delete (a delivery, a transition, a
classification, a re-classify, a retention batch), so no writer can forget it. On PostgreSQL
they are statement-level triggers over transition tables: one grouped upsert per statement,
not one per row (a delivery of 10 new alerts adds one row or a few); the rows are upserted in
key order, so two writers take their row locks in the same order. On SQLite they are row
triggers (SQLite has no other kind), and an update fires only when a counted value changed.
A missing severity or category is stored as ``''`` (a key column cannot be NULL).
``llmgw db migrate`` copies ``alert_stats_hourly`` like any table, so its connections set
``llmgw.alert_stats = off`` and the PostgreSQL triggers count nothing for them.

``ix_alerts_refired`` (partial: ``fire_count > 1``) serves ``stats()``'s most-fired list:
only occurrences of a label set that fired before can belong to one that fired twice.

The existing occurrences are counted into the table by the upgrade (one pass over ``alerts``).

On PostgreSQL a statement trigger on ``alert_jobs`` also sends ``NOTIFY llmgw_alert_jobs``
when jobs are queued (by any writer: a webhook on another instance, ``llmgw alerts
reclassify``, a follow-up), so the workers listening (``llmgw.alerts.wakeups``) look at the
queue at once instead of at their next poll; notifications of one transaction are sent once,
at its commit.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

# ruff: noqa: S608  (the statements are built from this module's constants only)

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmgw.storage.types import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

KEY = "seen_hour, start_hour, status, severity, category, cls_status"

_PG_GROUPED = (
    "SELECT date_trunc('hour', last_seen, 'UTC'), date_trunc('hour', starts_at, 'UTC'),"
    " status, COALESCE(severity, ''), COALESCE(category, ''), cls_status, sum(k)"
    " FROM ({rows}) AS r GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(k) <> 0 ORDER BY 1, 2, 3, 4, 5, 6"
)
_COLS = "last_seen, starts_at, status, severity, category, cls_status"
_PG_UPSERT = (
    f"INSERT INTO alert_stats_hourly AS h ({KEY}, n) {{grouped}}"
    f" ON CONFLICT ({KEY}) DO UPDATE SET n = h.n + EXCLUDED.n"
)


def _pg_upsert(rows: str) -> str:
    return _PG_UPSERT.format(grouped=_PG_GROUPED.format(rows=rows))


PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION alert_stats_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('llmgw.alert_stats', true) = 'off' THEN
    RETURN NULL;  -- `llmgw db migrate` copies the table itself, with the occurrences
  ELSIF TG_OP = 'INSERT' THEN
    {_pg_upsert(f"SELECT {_COLS}, 1 AS k FROM new_rows")};
  ELSIF TG_OP = 'DELETE' THEN
    {_pg_upsert(f"SELECT {_COLS}, -1 AS k FROM old_rows")};
  ELSE
    {_pg_upsert(f"SELECT {_COLS}, 1 AS k FROM new_rows UNION ALL SELECT {_COLS}, -1 FROM old_rows")};
  END IF;
  RETURN NULL;
END
$$
"""
PG_NOTIFY = (
    "CREATE OR REPLACE FUNCTION alert_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN PERFORM pg_notify('llmgw_alert_jobs', ''); RETURN NULL; END $$",
    "CREATE TRIGGER alert_jobs_notify AFTER INSERT ON alert_jobs"
    " FOR EACH STATEMENT EXECUTE FUNCTION alert_jobs_notify()",
)
PG_TRIGGERS = (
    "CREATE TRIGGER alerts_stats_insert AFTER INSERT ON alerts REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION alert_stats_count()",
    "CREATE TRIGGER alerts_stats_update AFTER UPDATE ON alerts"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION alert_stats_count()",
    "CREATE TRIGGER alerts_stats_delete AFTER DELETE ON alerts REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION alert_stats_count()",
)

_HOUR = "strftime('%Y-%m-%d %H:00:00.000000', {r}.{col})"


def _sqlite_add(r: str, k: int) -> str:
    values = (
        f"{_HOUR.format(r=r, col='last_seen')}, {_HOUR.format(r=r, col='starts_at')},"
        f" {r}.status, COALESCE({r}.severity, ''), COALESCE({r}.category, ''), {r}.cls_status"
    )
    return (
        f"INSERT INTO alert_stats_hourly ({KEY}, n) VALUES ({values}, {k})"
        f" ON CONFLICT ({KEY}) DO UPDATE SET n = n + ({k});"
    )


_CHANGED = " OR ".join(
    [
        f"{_HOUR.format(r='OLD', col=c)} IS NOT {_HOUR.format(r='NEW', col=c)}"
        for c in ("last_seen", "starts_at")
    ]
    + [f"OLD.{c} IS NOT NEW.{c}" for c in ("status", "severity", "category", "cls_status")]
)
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER alerts_stats_insert AFTER INSERT ON alerts BEGIN {_sqlite_add('NEW', 1)} END",
    f"CREATE TRIGGER alerts_stats_update AFTER UPDATE ON alerts WHEN {_CHANGED}"
    f" BEGIN {_sqlite_add('OLD', -1)} {_sqlite_add('NEW', 1)} END",
    f"CREATE TRIGGER alerts_stats_delete AFTER DELETE ON alerts BEGIN {_sqlite_add('OLD', -1)} END",
)


def upgrade() -> None:
    op.create_table(
        "alert_stats_hourly",
        sa.Column("seen_hour", UTCDateTime(), nullable=False),
        sa.Column("start_hour", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("cls_status", sa.String(16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "seen_hour", "start_hour", "status", "severity", "category", "cls_status"
        ),
    )
    op.execute("CREATE INDEX ix_alerts_refired ON alerts (last_seen) WHERE fire_count > 1")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"INSERT INTO alert_stats_hourly ({KEY}, n) "
            + _PG_GROUPED.format(rows=f"SELECT {_COLS}, 1 AS k FROM alerts")
        )
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS + PG_NOTIFY:
            op.execute(statement)
        return
    op.execute(
        f"INSERT INTO alert_stats_hourly ({KEY}, n)"
        f" SELECT {_HOUR.format(r='a', col='last_seen')}, {_HOUR.format(r='a', col='starts_at')},"
        " a.status, COALESCE(a.severity, ''), COALESCE(a.category, ''), a.cls_status, count(*)"
        " FROM alerts AS a GROUP BY 1, 2, 3, 4, 5, 6"
    )
    for statement in SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for name in ("alerts_stats_insert", "alerts_stats_update", "alerts_stats_delete"):
        op.execute(
            f"DROP TRIGGER IF EXISTS {name}"
            + (" ON alerts" if op.get_bind().dialect.name == "postgresql" else "")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS alert_jobs_notify ON alert_jobs")
        op.execute("DROP FUNCTION IF EXISTS alert_jobs_notify()")
        op.execute("DROP FUNCTION IF EXISTS alert_stats_count()")
    op.execute("DROP INDEX IF EXISTS ix_alerts_refired")
    op.drop_table("alert_stats_hourly")
