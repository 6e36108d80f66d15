"""Token callers in usage and rate limits (issue 11): ``usage.token_id``, ``oauth_tokens.rpm/tpm``.

A call made with an access token or a personal access token used to be recorded with the token's
``jti`` (as a UUID) in ``usage.key_id``. It now goes to ``usage.token_id`` (the ``jti`` as
``oauth_tokens`` spells it) with ``key_id`` NULL; the user stays in ``user_id``. Rows written
before are moved over, and so are the rollups' rows of those tokens (summed into the rows
without a key, as the rollups spell a NULL key: the nil UUID).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_NO_ID = uuid.UUID(int=0)
_CHUNK = 500
_EXTREMES = ("latency_min", "latency_max")


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("token_id", sa.String(64)))
    with op.batch_alter_table("oauth_tokens") as batch:
        batch.add_column(sa.Column("rpm", sa.Integer()))
        batch.add_column(sa.Column("tpm", sa.Integer()))
    _move_token_ids(op.get_bind())


def _move_token_ids(conn: sa.Connection) -> None:
    """Move the ``jti`` of token calls from ``key_id`` to ``token_id``, rollups included."""
    from llmgw.storage.tables import ApiKey, OAuthToken, UsageRecord, usage_daily, usage_hourly

    usage: sa.Table = UsageRecord.__table__  # type: ignore[attr-defined]
    keys: sa.Table = ApiKey.__table__  # type: ignore[attr-defined]
    tokens: sa.Table = OAuthToken.__table__  # type: ignore[attr-defined]
    # What a key column holds and no key has is a candidate (keys are never deleted).
    used = set(conn.execute(sa.select(usage.c.key_id).distinct()).scalars())
    used.discard(None)
    suspects = sorted(u.hex for u in used - set(conn.execute(sa.select(keys.c.id)).scalars()))
    jtis: list[str] = []
    for i in range(0, len(suspects), _CHUNK):
        part = suspects[i : i + _CHUNK]
        jtis += conn.execute(sa.select(tokens.c.jti).where(tokens.c.jti.in_(part))).scalars()
    if not jtis:
        return
    ids = [uuid.UUID(hex=j) for j in jtis]
    conn.execute(
        sa.update(usage)
        .where(usage.c.key_id == sa.bindparam("old"))
        .values(key_id=None, token_id=sa.bindparam("jti")),
        [{"old": i, "jti": j} for i, j in zip(ids, jtis, strict=True)],
    )
    for table in (usage_hourly, usage_daily):
        for i in range(0, len(ids), _CHUNK):
            _merge_into_no_key(conn, table, ids[i : i + _CHUNK])


def _merge_into_no_key(conn: sa.Connection, table: sa.Table, ids: list[uuid.UUID]) -> None:
    """Sum ``table``'s rows of the keys ``ids`` into the rows without a key, and delete them."""
    # the columns this revision knows (0013 adds more to the table's current definition)
    cols = [c for c in table.c if c.name not in ("streamed", "truncated")]
    rows = conn.execute(sa.select(*cols).where(table.c.key_id.in_(ids))).mappings().all()
    if not rows:
        return
    pk = [c.name for c in table.primary_key.columns]
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        r = {**row, "key_id": _NO_ID}
        k = tuple(r[c] for c in pk)
        have = merged.get(k)
        if have is None:
            merged[k] = r
            continue
        for name, value in r.items():
            if name in pk:
                continue
            if name == "latency_min":
                have[name] = min(have[name], value)
            elif name == "latency_max":
                have[name] = max(have[name], value)
            else:
                have[name] += value
    conn.execute(sa.delete(table).where(table.c.key_id.in_(ids)))
    insert: Any
    least: Any
    greatest: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        least, greatest = sa.func.least, sa.func.greatest
    else:
        from sqlalchemy.dialects.sqlite import insert

        least, greatest = sa.func.min, sa.func.max
    stmt = insert(table)
    ex = stmt.excluded
    updates: dict[str, Any] = {
        c.name: table.c[c.name] + ex[c.name]
        for c in cols
        if c.name not in pk and c.name not in _EXTREMES
    }
    updates["latency_min"] = least(table.c.latency_min, ex.latency_min)
    updates["latency_max"] = greatest(table.c.latency_max, ex.latency_max)
    for values in merged.values():
        conn.execute(stmt.values(values).on_conflict_do_update(index_elements=pk, set_=updates))


def downgrade() -> None:
    # The jti of token calls goes with token_id (their user stays in user_id).
    with op.batch_alter_table("oauth_tokens") as batch:
        batch.drop_column("tpm")
        batch.drop_column("rpm")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("token_id")
