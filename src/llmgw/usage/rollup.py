"""Usage rollups: the ``usage`` rows aggregated per UTC hour and per UTC day, kept exact.

``usage_hourly``, ``usage_hourly_models`` (the same without key and user) and ``usage_daily``
hold sums (requests, tokens, cost in 1e-10 units, latency),
the latency extremes and a latency histogram per time bucket and (provider, model, version, key,
user, status); ``usage_rollup_state.last_id`` says which rows they hold: exactly those with
``id <= last_id``. They lag on purpose (the usage writer never touches them, so the request path
and the writer pay nothing): a report adds the rows with ``id > last_id`` from the ``usage`` table
itself, in the same statement, so every answer is exact however far the rollups lag.
``refresh`` folds new rows in; ``llmgw.usage.reports`` calls it when the tail grows past
``REFRESH_AT`` rows, and migration 0005 runs it once to fill the rollups.

Why ids and not times: rows can arrive late (a replayed journal, a spool), with old
``created_at`` values; ``id`` says what was folded in, whatever the row's time. On PostgreSQL,
``refresh`` takes ``SHARE ROW EXCLUSIVE`` on ``usage`` (it waits for writers' open transactions,
so no row with a smaller id can commit later, and two refreshes never overlap) for the few
milliseconds of the fold; a refresh that cannot get the lock within ``LOCK_TIMEOUT`` skips (the
answer stays exact, the tail is read instead). On SQLite one writer at a time gives the same,
and ``refresh`` reads the new rows into a temporary table before it takes the write lock
(``_step_sqlite``): writers wait only for the few groups to be added. Both fold under a
compare-and-set of ``last_id``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from llmgw.storage.tables import (
    LATENCY_BUCKETS,
    UsageRecord,
    usage_daily,
    usage_hourly,
    usage_hourly_models,
    usage_rollup_state,
)
from llmgw.usage.stats_sql import BOUNDS, NO_ID, REFRESH_AT, p95

__all__ = [
    "BOUNDS",
    "FoldLease",
    "LEASE_KEY",
    "CHUNK",
    "DIMENSIONS",
    "NO_ID",
    "REFRESH_AT",
    "bucket_expr",
    "count_columns",
    "histogram_columns",
    "latency_bucket",
    "p95",
    "rebuild",
    "rebuild_in",
    "refresh",
    "tail",
]

log = logging.getLogger("llmgw.usage.rollup")

_u: sa.Table = UsageRecord.__table__  # type: ignore[attr-defined]
DIMENSIONS = ("provider", "model", "model_version", "key_id", "user_id", "status")
CHUNK = 250_000
"""Ids folded per transaction (a first fill of a large table runs in several)."""
LOCK_TIMEOUT = "2s"


def bucket_expr(dialect: str, span: str, created: ColumnElement[Any]) -> ColumnElement[Any]:
    """The start of the UTC hour or day of ``created``, as the rollups store it."""
    if dialect == "postgresql":
        utc = sa.func.timezone("UTC", created)
        return sa.func.timezone("UTC", sa.func.date_trunc(span, utc))
    # SQLite keeps naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's format).
    text = sa.cast(created, sa.String)
    if span == "hour":
        return sa.func.substr(text, 1, 13) + ":00:00.000000"
    return sa.func.substr(text, 1, 10) + " 00:00:00.000000"


@functools.cache
def histogram_columns(latency: ColumnElement[Any]) -> tuple[ColumnElement[Any], ...]:
    """``lat_0`` .. ``lat_31`` of one group of raw rows: how many fall in each bucket.

    Built once (SQLAlchemy expressions are immutable), with the bounds as SQL literals: a
    report's statement stays short and has few parameters (psycopg parses every statement's
    text for its placeholders, and it caches only short ones).
    """
    one: ColumnElement[Any] = sa.literal_column("1")
    zero: ColumnElement[Any] = sa.literal_column("0")
    bound: list[ColumnElement[Any]] = [sa.literal_column(repr(b)) for b in BOUNDS]
    out: list[ColumnElement[Any]] = []
    for k in range(LATENCY_BUCKETS):
        if k == 0:
            cond = latency < bound[0]
        elif k == LATENCY_BUCKETS - 1:
            cond = latency >= bound[-1]
        else:
            cond = sa.and_(latency >= bound[k - 1], latency < bound[k])
        out.append(sa.func.sum(sa.case((cond, one), else_=zero)).label(f"lat_{k}"))
    return tuple(out)


@functools.cache
def count_columns() -> tuple[ColumnElement[Any], ...]:
    """``streamed`` and ``truncated`` of one group of raw rows: how many were streamed, how
    many stopped at ``max_tokens`` (``finish_reason = 'length'``)."""
    one: ColumnElement[Any] = sa.literal_column("1")
    zero: ColumnElement[Any] = sa.literal_column("0")
    return (
        sa.func.sum(sa.case((_u.c.stream == sa.true(), one), else_=zero)).label("streamed"),
        sa.func.sum(sa.case((_u.c.finish_reason == "length", one), else_=zero)).label("truncated"),
    )


def cost_units(dialect: str) -> ColumnElement[Any]:
    """A usage row's cost in whole 1e-10 units (exact: the column has ten decimal places)."""
    if dialect == "postgresql":
        return sa.cast(_u.c.cost * 10_000_000_000, sa.BigInteger)
    return sa.cast(sa.func.round(sa.cast(_u.c.cost, sa.Float) * 10_000_000_000), sa.Integer)


def dimension_columns(table: sa.Table | None = None) -> list[ColumnElement[Any]]:
    """A usage row's dimensions in ``table`` (default: all; NULLs as the rollups spell them)."""
    cols = [
        sa.func.coalesce(_u.c.provider, "").label("provider"),
        sa.func.coalesce(_u.c.model, "").label("model"),
        sa.func.coalesce(_u.c.model_version, "").label("model_version"),
        sa.func.coalesce(_u.c.key_id, NO_ID).label("key_id"),
        sa.func.coalesce(_u.c.user_id, NO_ID).label("user_id"),
        _u.c.status.label("status"),
    ]
    return [c for c in cols if table is None or c.name in table.c]


@functools.cache
def latency_bucket(latency: ColumnElement[Any]) -> ColumnElement[Any]:
    """The histogram bucket (0..31) of ``latency``: a binary search over ``BOUNDS`` (five
    comparisons a row, with the bounds as SQL literals; the same bucket as
    ``histogram_columns``, whose 32 cases test every bound)."""

    def node(lo: int, hi: int) -> ColumnElement[Any]:
        if lo == hi:
            return sa.literal_column(str(lo))
        mid = (lo + hi + 1) // 2  # bucket ``mid`` starts at BOUNDS[mid - 1]
        return sa.case(
            (latency < sa.literal_column(repr(BOUNDS[mid - 1])), node(lo, mid - 1)),
            else_=node(mid, hi),
        )

    return node(0, LATENCY_BUCKETS - 1)


def _raw_measures(dialect: str, *, counts: bool, grouped: bool) -> list[ColumnElement[Any]]:
    """A fold's measures of the usage rows: aggregated per group (``grouped``) or one row's
    own (for the SQLite delta's per-row upsert, which adds them up itself)."""
    one: ColumnElement[Any] = sa.literal_column("1")
    if grouped:
        return [
            sa.func.count().label("requests"),
            sa.func.sum(_u.c.prompt_tokens).label("prompt_tokens"),
            sa.func.sum(_u.c.completion_tokens).label("completion_tokens"),
            sa.func.sum(_u.c.total_tokens).label("total_tokens"),
            sa.func.sum(cost_units(dialect)).label("cost_units"),
            sa.func.sum(_u.c.latency_ms).label("latency_sum"),
            sa.func.min(_u.c.latency_ms).label("latency_min"),
            sa.func.max(_u.c.latency_ms).label("latency_max"),
            *(count_columns() if counts else ()),
        ]
    zero: ColumnElement[Any] = sa.literal_column("0")
    flags = [
        sa.case((_u.c.stream == sa.true(), one), else_=zero).label("streamed"),
        sa.case((_u.c.finish_reason == "length", one), else_=zero).label("truncated"),
    ]
    return [
        one.label("requests"),
        _u.c.prompt_tokens.label("prompt_tokens"),
        _u.c.completion_tokens.label("completion_tokens"),
        _u.c.total_tokens.label("total_tokens"),
        cost_units(dialect).label("cost_units"),
        _u.c.latency_ms.label("latency_sum"),
        _u.c.latency_ms.label("latency_min"),
        _u.c.latency_ms.label("latency_max"),
        *(flags if counts else ()),
    ]


def _select_raw(dialect: str, *, counts: bool, grouped: bool) -> sa.Select[Any]:
    """The usage rows with ``:lo < id <= :hi`` with their UTC hour, dimensions and latency
    bucket ``lat``: the one pass over raw rows of a fold, aggregated per (hour, dimensions,
    ``lat``) when ``grouped``. Per row it computes the bucket (five comparisons) instead of
    32 histogram cases, and on SQLite the hour as the 13-character prefix of the stored time
    (``_hour_key``); the histogram columns and the rollups' spelling of the hour are made from
    the (far fewer) groups later."""
    dims = dimension_columns()
    bucket = _hour_key(dialect, _u.c.created_at).label("bucket")
    lat = latency_bucket(_u.c.latency_ms).label("lat")
    select = sa.select(
        bucket, *dims, lat, *_raw_measures(dialect, counts=counts, grouped=grouped)
    ).where(_u.c.id > sa.bindparam("lo"), _u.c.id <= sa.bindparam("hi"))
    return select.group_by(bucket, *dims, lat) if grouped else select


_DELTA = "usage_fold_delta"
_KEYS = ("bucket", *DIMENSIONS, "lat")
_KEY_ORDER = ("bucket", "status", "lat", "key_id", "model", "provider", "model_version", "user_id")
"""The delta's primary key: the hour first (rows come in time order: each look-up lands near
the last), then the small integers, then the texts that tell groups apart most often. SQLite's
per-row look-up compares keys column by column; in the SQLite fold's profile this order took
7-8 % less CPU per row than the hour, texts, status and bucket in ``_KEYS``' order, on one
gateway's rows (19 groups) and on varied ones (64,000 groups)."""


def _hour_key(dialect: str, created: ColumnElement[Any]) -> ColumnElement[Any]:
    """What the fold groups a row's time by: on SQLite the first 13 characters of the stored
    text (``YYYY-MM-DD HH``), made into the rollups' hour (``_hour_of_key``) once per group,
    not per row; on PostgreSQL the hour itself (``bucket_expr``)."""
    if dialect == "postgresql":
        return bucket_expr(dialect, "hour", created)
    return sa.func.substr(sa.type_coerce(created, sa.String), 1, 13)


def _hour_of_key(dialect: str, key: ColumnElement[Any]) -> ColumnElement[Any]:
    """The start of the UTC hour as the rollups store it, from ``_hour_key``'s value."""
    if dialect == "postgresql":
        return key
    return sa.type_coerce(key, sa.String) + ":00:00.000000"


@functools.cache
def _fold_statements(dialect: str, counts: bool, slim: bool) -> tuple[sa.Table, list[Any]]:
    """The delta table (a temporary table for one fold's groups: typed as in
    ``usage_hourly``, ``lat`` an integer, keyed by hour, dimensions and ``lat``) and a fold's
    statements after its creation, built once per (dialect, schema): SQLAlchemy then finds
    them compiled in its cache, and a fold spends its CPU in the database, not in building
    and compiling about 300 expressions (about 60 ms a fold, every fold, before).

    Filling the delta reads the new raw rows once. PostgreSQL groups them (a hash
    aggregate). SQLite has no hash aggregate: its ``GROUP BY`` sorts every row on all the
    dimensions, so there each row is upserted into the delta instead (a look-up in a tree of
    a few groups), about a third less CPU per row."""
    grouped = dialect == "postgresql"
    raw = _select_raw(dialect, counts=counts, grouped=grouped)
    names = [c.name for c in raw.selected_columns]

    def typed(n: str) -> Any:
        if n == "lat":
            return sa.Integer()
        if n == "bucket" and dialect != "postgresql":
            return sa.String()  # ``_hour_key``: text
        return usage_hourly.c[n].type

    delta = sa.Table(
        _DELTA,
        sa.MetaData(),
        *(sa.Column(n, typed(n), nullable=n not in _KEYS, autoincrement=False) for n in names),
        sa.PrimaryKeyConstraint(*_KEY_ORDER),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
        sqlite_with_rowid=False,
    )
    fill: Any
    if grouped:
        fill = sa.insert(delta).from_select(names, raw)
    else:
        from sqlalchemy.dialects.sqlite import insert

        fill = insert(delta).from_select(names, raw)
        ex = fill.excluded
        updates: dict[str, Any] = {
            n: delta.c[n] + ex[n] for n in names if n not in (*_KEYS, "latency_min", "latency_max")
        }
        updates["latency_min"] = sa.func.min(delta.c.latency_min, ex.latency_min)
        updates["latency_max"] = sa.func.max(delta.c.latency_max, ex.latency_max)
        fill = fill.on_conflict_do_update(index_elements=list(_KEYS), set_=updates)
    tables = [(usage_hourly, "hour")]
    if slim:
        tables.append((usage_hourly_models, "hour"))
    tables.append((usage_daily, "day"))
    return delta, [fill, *(_upsert(dialect, t, span, delta, names) for t, span in tables)]


def _fold_all(conn: Connection, lo: int, hi: int, *, counts: bool, slim: bool) -> None:
    """Add the usage rows with ``lo < id <= hi`` to the rollups (``slim``: also
    ``usage_hourly_models``).

    The raw rows are read once, into groups per hour, dimensions and latency bucket in a
    temporary table; every rollup (the daily one too) is upserted from those groups (sums of
    sums, min of minima, max of maxima, each histogram column the requests of its bucket:
    exactly what a fold of the raw rows gives). The raw pass is what costs: ``llmgw serve``
    folds every row it records (docs/performance.md)."""
    dialect = conn.dialect.name
    delta, statements = _fold_statements(dialect, counts, slim)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_DELTA}")
    delta.create(conn)
    for stmt in statements:
        conn.execute(stmt, {"lo": lo, "hi": hi})
    if dialect != "postgresql":
        conn.exec_driver_sql(f"DROP TABLE {_DELTA}")


def _upsert(dialect: str, table: sa.Table, span: str, delta: sa.Table, names: list[str]) -> Any:
    """The statement adding ``delta``'s groups to ``table`` (per ``span``: ``hour`` or
    ``day``), one upsert per bucket and dimensions; the histogram is pivoted here, from
    ``lat`` and ``requests``."""
    dims = [delta.c[d] for d in DIMENSIONS if d in table.c]
    bucket = (
        _hour_of_key(dialect, delta.c.bucket)
        if span == "hour"
        else bucket_expr(dialect, span, delta.c.bucket)
    ).label("bucket")
    keys = ["bucket", *(d.name for d in dims)]
    hist = [f"lat_{k}" for k in range(LATENCY_BUCKETS)]
    measures = [n for n in names if n not in ("bucket", "lat", *DIMENSIONS)]
    summed = [n for n in measures if n not in ("latency_min", "latency_max")] + hist
    least: Any
    greatest: Any
    insert: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        least, greatest = sa.func.least, sa.func.greatest
    else:
        from sqlalchemy.dialects.sqlite import insert

        least, greatest = sa.func.min, sa.func.max
    cols: list[ColumnElement[Any]] = []
    for n in measures:
        if n == "latency_min":
            cols.append(sa.func.min(delta.c[n]).label(n))
        elif n == "latency_max":
            cols.append(sa.func.max(delta.c[n]).label(n))
        else:
            cols.append(sa.func.sum(delta.c[n]).label(n))
    zero: ColumnElement[Any] = sa.literal_column("0")
    for k, n in enumerate(hist):
        hit = delta.c.lat == sa.literal_column(str(k))
        cols.append(sa.func.sum(sa.case((hit, delta.c.requests), else_=zero)).label(n))
    select = sa.select(bucket, *dims, *cols).group_by(bucket, *dims)
    stmt = insert(table).from_select([*keys, *measures, *hist], select)
    ex = stmt.excluded
    updates: dict[str, Any] = {n: table.c[n] + ex[n] for n in summed}
    updates["latency_min"] = least(table.c.latency_min, ex.latency_min)
    updates["latency_max"] = greatest(table.c.latency_max, ex.latency_max)
    return stmt.on_conflict_do_update(index_elements=keys, set_=updates)


def tail(conn: Connection) -> tuple[int, int]:
    """(``last_id``, the newest usage id): the rollups lag by the rows in between."""
    row = conn.execute(
        sa.select(
            sa.select(usage_rollup_state.c.last_id)
            .where(usage_rollup_state.c.id == 1)
            .scalar_subquery(),
            sa.select(sa.func.max(_u.c.id)).scalar_subquery(),
        )
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


def refresh_in(
    conn: Connection, *, chunk: int = CHUNK, slim: bool = True, counts: bool | None = None
) -> int:
    """Fold at most ``chunk`` new rows in, inside the caller's transaction on ``conn``;
    returns how many ids were folded (0: nothing to do, or another refresh won).

    ``slim=False`` is for the schema of migration 0005, which runs this: it leaves
    ``usage_hourly_models`` alone (0007 creates it and fills it from ``usage_hourly``) and the
    counts 0013 adds (0013 rebuilds the rollups); ``counts=False`` only the latter (the schema
    from 0007 to 0011)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        conn.exec_driver_sql("LOCK TABLE usage IN SHARE ROW EXCLUSIVE MODE")
    last, newest = tail(conn)
    hi = min(newest, last + chunk)
    if hi <= last or not _claim(conn, last, hi):
        return 0
    _fold_all(conn, last, hi, counts=slim if counts is None else counts, slim=slim)
    return hi - last


def _claim(conn: Connection, last: int, hi: int) -> bool:
    """Move ``last_id`` from ``last`` to ``hi`` (compare-and-set); False if another refresh
    moved it first (leave the rows to that one)."""
    st = usage_rollup_state
    done = conn.execute(
        sa.update(st).where(st.c.id == 1, st.c.last_id == last).values(last_id=hi)
    ).rowcount
    return bool(done == 1)


def _step_sqlite(conn: Connection, chunk: int) -> int:
    """One step of ``refresh`` on SQLite (``conn`` outside a transaction): fold at most
    ``chunk`` new rows in, in two transactions, so that the database's one write lock is held
    only while the few groups are added, not while the raw rows are read.

    1. A read transaction: the new rows, read once, into the delta (``_fold_all``'s temporary
       table, private to the connection: filling it writes nothing to the database file, so
       the usage writer and every other writer go on meanwhile).
    2. A write transaction: the compare-and-set of ``last_id`` (another refresh that moved it
       meanwhile wins: this one adds nothing), then the rollups' upserts from the delta.

    Under load the fold's thread runs at nice 19 and the raw pass can take tens of seconds of
    wall time; before, it held the write lock all along, the usage writer's inserts waited
    past their busy timeout and went to the spool (replayed later), and other writes failed.
    Exact as one transaction is: SQLite commits ids in order, so every row with an id up to
    the newest one read is there in step 1's snapshot; retention deletes only rows with ids
    up to ``last_id``, which step 2 finds unchanged."""
    delta, statements = _fold_statements("sqlite", True, True)
    with conn.begin():
        last, newest = tail(conn)
        hi = min(newest, last + chunk)
        if hi <= last:
            return 0
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_DELTA}")
        delta.create(conn)
        conn.execute(statements[0], {"lo": last, "hi": hi})
    try:
        with conn.begin():
            if not _claim(conn, last, hi):
                return 0
            for stmt in statements[1:]:
                conn.execute(stmt)
    finally:
        # A connection lost in step 2 keeps its error (``refresh`` looks at it); the next step
        # drops a delta left behind before it creates its own.
        if not conn.invalidated:
            with contextlib.suppress(sa.exc.DBAPIError), conn.begin():
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_DELTA}")
    return hi - last


def _step(conn: Connection, chunk: int) -> int:
    """One step of ``refresh`` (``conn`` outside a transaction): at most ``chunk`` ids."""
    if conn.dialect.name == "sqlite":
        return _step_sqlite(conn, chunk)
    with conn.begin():
        return refresh_in(conn, chunk=chunk)


def rebuild_in(conn: Connection) -> None:
    """Empty the rollups and mark no row folded in (``last_id = 0``), inside the caller's
    transaction; the next refreshes fold every row in again. Reports stay exact meanwhile
    (they read the rows not folded in from ``usage``), only slower."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE usage IN SHARE ROW EXCLUSIVE MODE")
    for table in (usage_hourly, usage_hourly_models, usage_daily):
        conn.execute(sa.delete(table))
    st = usage_rollup_state
    conn.execute(sa.update(st).where(st.c.id == 1).values(last_id=0))


def rebuild(engine: Engine, *, chunk: int = CHUNK, progress: Any = None) -> int:
    """Recompute the rollups from the raw rows (``llmgw usage rebuild-rollups``): empty them
    in one short transaction, then fold every row in again, ``chunk`` ids per step as
    ``refresh`` does (on PostgreSQL writers wait only for one chunk at a time, on SQLite only
    while a chunk's groups are added). Returns how many ids were folded;
    ``progress(folded, newest)`` is called after each chunk. Raw rows already deleted by
    retention are gone from the rebuilt rollups too: rebuild only what you still hold."""
    with engine.begin() as conn:
        rebuild_in(conn)
    total = 0
    while True:
        with engine.connect() as conn:
            n = _step(conn, chunk)
            last, newest = tail(conn)
        total += n
        if progress is not None:
            progress(last, newest)
        if n < chunk:
            break
    if engine.dialect.name == "postgresql":
        # fresh planner statistics: analysed empty, a month of usage_daily looks like 90 rows
        # and reports sort it on disk until autovacuum gets to it
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE usage_hourly, usage_hourly_models, usage_daily")
    return total


def refresh(bind: Engine | Connection, *, chunk: int = CHUNK) -> int:
    """Fold every new usage row into the rollups, ``chunk`` ids per transaction; returns how
    many ids were folded. A refresh that cannot lock ``usage`` in time or hits another one
    stops early (the rollups stay exact, only the tail stays longer). ``bind`` is an engine
    or a connection outside a transaction (the server's fold lease, ``FoldLease``)."""
    total = 0
    while True:
        try:
            if isinstance(bind, Engine):
                with bind.connect() as conn:
                    n = _step(conn, chunk)
            else:
                n = _step(bind, chunk)
        except sa.exc.OperationalError as exc:  # lock timeout, database busy
            if isinstance(bind, Connection) and bind.invalidated:
                raise  # the lease's connection is gone: its holder must know
            log.info("usage rollup refresh skipped: %s", str(exc.orig).splitlines()[0])
            return total
        total += n
        if n < chunk:
            return total


LEASE_KEY = 0x6C6C6D6777_0001
"""The PostgreSQL advisory lock (``pg_try_advisory_lock``) whose holder is the one instance
that folds (``FoldLease``); 'llmgw' and 1 in hexadecimal."""


class FoldLease:
    """Which of several ``llmgw serve`` instances on one database folds: on PostgreSQL the one
    that holds a session advisory lock (``LEASE_KEY``) on a connection of its own, kept while
    the instance lives; the others try to take it on every pass and fold nothing meanwhile.
    When the holder stops, dies or loses its connection, PostgreSQL releases the lock and the
    next instance to try takes over. With SQLite (one database, one process) there is nothing
    to share: every pass folds. A report still folds a long tail itself, on any instance.

    A pooler in transaction mode (PgBouncer) does not keep session locks: there several
    instances may hold the lease at once, which costs only the work the lease saves (a fold is
    safe with several instances, serialised by the lock on ``usage``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    @property
    def held(self) -> bool:
        """Whether this instance folds (always on SQLite)."""
        return self.engine.dialect.name != "postgresql" or self.conn is not None

    def fold(self) -> int | None:
        """Fold the new rows if this instance holds (or now takes) the lease; ``None`` if
        another instance holds it. A lost connection gives the lease up and raises."""
        if self.engine.dialect.name != "postgresql":
            return refresh(self.engine)
        if self.conn is None:
            conn = self.engine.connect()
            try:
                got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({LEASE_KEY})").scalar()
                conn.commit()
            except Exception:
                conn.invalidate()
                conn.close()
                raise
            if not got:
                conn.close()
                return None
            self.conn = conn
            log.info("usage rollups: this instance folds (lease taken)")
        try:
            return refresh(self.conn)
        except Exception:
            self.release()
            raise

    def release(self) -> None:
        """Give the lease up: close its connection (not back to the pool: the session lock
        must end with it)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.invalidate()
            conn.close()
