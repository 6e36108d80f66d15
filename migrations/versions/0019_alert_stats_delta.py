"""Alert counts without a shared row: PostgreSQL's triggers append to ``alert_stats_delta``.

Migration 0018's statement triggers upserted ``alert_stats_hourly`` in the writer's
transaction, so every writer of new alerts in the same hour, status and severity updated the
same row and held its lock until it committed: concurrent webhook deliveries committed one
after another, and a delivery waited behind a worker's settlement (a transaction of several
statements per job) until it committed. The triggers now insert their grouped changes into
``alert_stats_delta`` (append only: no shared row, no lock to wait for), and
``llmgw.alerts.summary.fold`` moves the changes into ``alert_stats_hourly`` (the worker every
few seconds; one folder at a time). ``stats()`` reads both, so it is exact whenever the fold
ran. On SQLite the row triggers keep ``alert_stats_hourly`` as before (SQLite serialises its
writers anyway) and the table stays empty.

The ``NOTIFY`` trigger on ``alert_jobs`` stays silent in a transaction that set
``llmgw.alert_notify`` to ``off``: a notifying transaction takes a cluster-wide lock from just
before its commit until the commit is flushed, so deliveries that each notified committed one
at a time. ``llmgw serve`` stores its webhook's deliveries that way and sends one notification
itself after they committed (``llmgw.alerts.wakeups.JobAnnouncer``); every other writer still
notifies from the trigger.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

# ruff: noqa: S608  (the statements are built from this module's constants only)

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from llmgw.storage.types import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

KEY = "seen_hour, start_hour, status, severity, category, cls_status"
_COLS = "last_seen, starts_at, status, severity, category, cls_status"
_GROUPED = (
    "SELECT date_trunc('hour', last_seen, 'UTC'), date_trunc('hour', starts_at, 'UTC'),"
    " status, COALESCE(severity, ''), COALESCE(category, ''), cls_status, sum(k)"
    " FROM ({rows}) AS r GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(k) <> 0"
)


def _append(rows: str) -> str:
    return f"INSERT INTO alert_stats_delta ({KEY}, n) " + _GROUPED.format(rows=rows)


def _upsert(rows: str) -> str:  # 0018's form (downgrade)
    return (
        f"INSERT INTO alert_stats_hourly AS h ({KEY}, n) "
        + _GROUPED.format(rows=rows)
        + f" ORDER BY 1, 2, 3, 4, 5, 6 ON CONFLICT ({KEY}) DO UPDATE SET n = h.n + EXCLUDED.n"
    )


_NEW = f"SELECT {_COLS}, 1 AS k FROM new_rows"
_OLD = f"SELECT {_COLS}, -1 AS k FROM old_rows"


def _function(write: Callable[[str], str]) -> str:
    return f"""
CREATE OR REPLACE FUNCTION alert_stats_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('llmgw.alert_stats', true) = 'off' THEN
    RETURN NULL;  -- `llmgw db migrate` copies the tables itself, with the occurrences
  ELSIF TG_OP = 'INSERT' THEN
    {write(_NEW)};
  ELSIF TG_OP = 'DELETE' THEN
    {write(_OLD)};
  ELSE
    {write(_NEW + " UNION ALL " + _OLD)};
  END IF;
  RETURN NULL;
END
$$
"""


PG_FUNCTION = _function(_append)
PG_FUNCTION_0018 = _function(_upsert)

FOLD = (
    f"WITH moved AS (DELETE FROM alert_stats_delta RETURNING {KEY}, n)"
    f" INSERT INTO alert_stats_hourly AS h ({KEY}, n)"
    f" SELECT {KEY}, sum(n) FROM moved GROUP BY {KEY} HAVING sum(n) <> 0 ORDER BY {KEY}"
    " ON CONFLICT (seen_hour, start_hour, status, severity, category, cls_status)"
    " DO UPDATE SET n = h.n + EXCLUDED.n"
)
"""The changes appended so far, moved into the hourly counts (``llmgw.alerts.summary``)."""

PG_NOTIFY = (
    "CREATE OR REPLACE FUNCTION alert_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN IF current_setting('llmgw.alert_notify', true) IS DISTINCT FROM 'off' THEN"
    " PERFORM pg_notify('llmgw_alert_jobs', ''); END IF; RETURN NULL; END $$"
)
PG_NOTIFY_0018 = (
    "CREATE OR REPLACE FUNCTION alert_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN PERFORM pg_notify('llmgw_alert_jobs', ''); RETURN NULL; END $$"
)


def upgrade() -> None:
    op.create_table(
        "alert_stats_delta",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("seen_hour", UTCDateTime(), nullable=False),
        sa.Column("start_hour", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("cls_status", sa.String(16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_NOTIFY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FOLD)
        op.execute(PG_FUNCTION_0018)
        op.execute(PG_NOTIFY_0018)
    op.drop_table("alert_stats_delta")
