"""A webhook delivery into PostgreSQL in one statement (``AlertStore.ingest`` on PostgreSQL).

One ``WITH`` statement does what the portable path (``llmgw.alerts.store``) does in five to
seven: it inserts the delivery (``ON CONFLICT (digest) DO UPDATE``: a retry or the HA peer's
copy changes nothing but ``copies``; ``xmax = 0`` tells a new row), looks up every occurrence,
inserts the new ones with their fire counts and flapping flags, moves firing ones to resolved
(a conditional ``UPDATE``: two concurrent copies cannot both win), marks the others seen, and
writes their events and jobs (its jobs' ``NOTIFY`` only when ``AlertStore.notify``: the
setting it makes is read by migration 0019's trigger at the statement's end). The occurrences travel as one JSON document
(``jsonb_to_recordset``): orjson writes it in C, the statement text never changes (psycopg
prepares it once per connection), and nothing is dumped per value in Python, where the array
form spent a fifth of the store's CPU on escaping text. Semantics are the portable path's; an
occurrence another delivery created between this statement's look-up and its insert (a race
of two deliveries) is handed back and updated by the portable code in the same transaction
(``ingest_pg``), or, on the webhook's kept connections, where the statement is its own
transaction, makes it fail so that the delivery is stored that way (``ingest_held``).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from llmgw.alerts.payload import IncomingAlert

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.exc import DBAPIError

    from llmgw.alerts.payload import Delivery
    from llmgw.alerts.store import AlertStore, IngestResult

__all__ = [
    "HeldConnections",
    "TEND_INTERVAL",
    "analyze_young",
    "flush_gin_pending",
    "ingest_pg",
    "ingest_held",
    "tend",
]

TEND_INTERVAL = 0.25
"""Seconds between the worker's turns at ``tend``. The flush of the GIN indexes' pending lists
set it: at 2,000 new alerts/s a flush of a second's entries took 25-65 ms of PostgreSQL's CPU,
and the deliveries that ran meanwhile were late; a quarter of that each time is spread thinner."""

# The ``%(name)s`` parameters are psycopg's; the JSON rows (``r``) carry per occurrence its
# index in the delivery, fingerprint, starts_at/ends_at (ISO 8601, kept as text for the events'
# details), the flapping window's start, name, status, severity, labels, annotations, generator
# URL and search text. Each is looked up by a ``LATERAL ... LIMIT 1`` on the unique key: the
# planner guesses 100 rows for ``jsonb_to_recordset``, and with a plain join it chose a hash join
# over a sequential scan of ``alerts`` until ANALYZE had seen the table grow (a delivery's CPU
# then grew with the table: 3.6 ms of 5 at 11,000 occurrences); the limit keeps the index probe.
INGEST_SQL = """
WITH d AS (
  INSERT INTO alert_deliveries AS t (digest, received_at, last_received_at, copies, receiver,
    group_key, status, alert_count, truncated, external_url, payload)
  VALUES (%(digest)s, %(now)s, %(now)s, 1, %(receiver)s, %(group_key)s, %(dstatus)s,
    %(alert_count)s, %(truncated)s, %(external_url)s, %(payload)s::jsonb)
  ON CONFLICT (digest) DO UPDATE SET copies = t.copies + 1, last_received_at = %(now)s
  RETURNING id, xmax = 0 AS fresh
),
x AS (
  SELECT r.*, r.s::timestamptz ts, r.w::timestamptz tw, a.*
  FROM jsonb_to_recordset(%(rows)s::jsonb) r(i int, f text, s text, e text, w text,
    name text, st text, sev text, labels jsonb, ann jsonb, gen text, search text)
  LEFT JOIN LATERAL (SELECT id aid, status ast FROM alerts
    WHERE fingerprint = r.f AND starts_at = r.s::timestamptz LIMIT 1) a ON true
  WHERE EXISTS (SELECT 1 FROM d WHERE d.fresh)
),
n AS (
  SELECT x.*,
    (SELECT count(*) FROM alerts b WHERE b.fingerprint = x.f AND b.starts_at < x.ts)
    + (SELECT count(*) FROM x o WHERE o.aid IS NULL AND o.f = x.f AND o.ts < x.ts) earlier,
    (SELECT count(*) FROM alerts b
      WHERE b.fingerprint = x.f AND b.starts_at < x.ts AND b.starts_at >= x.tw)
    + (SELECT count(*) FROM x o
      WHERE o.aid IS NULL AND o.f = x.f AND o.ts < x.ts AND o.ts >= x.tw) recent
  FROM x WHERE x.aid IS NULL
),
ins AS (
  INSERT INTO alerts (source, receiver, first_seen, last_seen, notifications, last_delivery_id,
    cls_status, fingerprint, starts_at, ends_at, alertname, status, severity, labels,
    annotations, generator_url, fire_count, flapping, search)
  SELECT %(source)s, %(receiver)s, %(now)s, %(now)s, 1, (SELECT id FROM d), 'pending', n.f,
    n.ts, CASE WHEN n.st = 'resolved' THEN n.e::timestamptz END, n.name, n.st, n.sev,
    n.labels, n.ann, n.gen, n.earlier + 1, n.recent + 1 >= %(flap)s, n.search
  FROM n ORDER BY n.i
  ON CONFLICT (fingerprint, starts_at) DO NOTHING
  RETURNING id, fingerprint, starts_at
),
m AS (
  SELECT ins.id, n.i, n.s, n.e, n.st, n.recent
  FROM ins JOIN n ON n.f = ins.fingerprint AND n.ts = ins.starts_at
),
res AS (
  UPDATE alerts a SET status = 'resolved', last_seen = %(now)s,
    notifications = a.notifications + 1, last_delivery_id = (SELECT id FROM d),
    ends_at = COALESCE(x.e::timestamptz, %(now)s), annotations = x.ann
  FROM x
  WHERE a.id = x.aid AND x.ast = 'firing' AND x.st = 'resolved' AND a.status = 'firing'
  RETURNING a.id
),
seen AS (
  UPDATE alerts a SET last_seen = %(now)s, notifications = a.notifications + 1,
    last_delivery_id = (SELECT id FROM d),
    annotations = CASE WHEN x.ast = x.st THEN x.ann ELSE a.annotations END
  FROM x
  WHERE a.id = x.aid AND x.ast IS NOT NULL AND x.aid NOT IN (SELECT id FROM res)
  RETURNING a.id, x.ast = 'resolved' AND x.st = 'firing' AS stale
),
ev AS (
  INSERT INTO alert_events (alert_id, at, kind, detail)
  SELECT q.id, %(now)s, q.k, q.v FROM (
    SELECT m.i, 1 o, m.id, 'fired' k, jsonb_build_object('starts_at', m.s) v FROM m
    UNION ALL SELECT m.i, 2, m.id, 'flapping', jsonb_build_object('fires_in_window', m.recent + 1)
      FROM m WHERE m.recent + 1 >= %(flap)s
    UNION ALL SELECT m.i, 3, m.id, 'resolved', jsonb_build_object('ends_at', m.e)
      FROM m WHERE m.st = 'resolved'
    UNION ALL SELECT 1000000 + x.i, 4, res.id, 'resolved', jsonb_build_object('ends_at', x.e)
      FROM res JOIN x ON x.aid = res.id
  ) q ORDER BY q.i, q.o
),
jb AS (
  INSERT INTO alert_jobs (alert_id, step, state, attempts, run_after, created_at, updated_at)
  SELECT DISTINCT q.id, q.step, 'pending', 0, %(now)s, %(now)s, %(now)s FROM (
    SELECT m.id, unnest(%(fsteps)s::text[]) AS step FROM m
    UNION ALL SELECT m.id, unnest(%(rsteps)s::text[]) FROM m WHERE m.st = 'resolved'
    UNION ALL SELECT res.id, unnest(%(rsteps)s::text[]) FROM res
  ) q
  ON CONFLICT (alert_id, step) DO UPDATE SET state = 'pending', attempts = 0,
    run_after = %(now)s, lease_owner = NULL, lease_until = NULL, updated_at = %(now)s
),
l AS (SELECT i FROM n EXCEPT SELECT i FROM m)
SELECT (SELECT id FROM d), (SELECT fresh FROM d),
  (SELECT array_agg(id ORDER BY i) FROM m),
  set_config('llmgw.alert_notify', %(notify)s, true),
  (SELECT count(*) FROM res),
  (SELECT count(*) FROM seen),
  (SELECT count(*) FROM seen WHERE stale),
  (SELECT array_agg(CASE WHEN %(strict)s THEN (i || ' was stored concurrently')::int ELSE i END)
    FROM l),
  pg_relation_size('alerts')
"""


def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with its ``%(name)s`` placeholders as PostgreSQL's own ``$1``, ``$2``... and the
    names in that order: sent through psycopg's ``RawCursor``, the statement is not parsed in
    Python on each delivery (psycopg's conversion cache holds queries of up to 4 KiB only)."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m[1] not in names:
            names.append(m[1])
        return f"${names.index(m[1]) + 1}"

    return re.sub(r"%\((\w+)\)s", number, " ".join(sql.split())), tuple(names)


INGEST_SQL, INGEST_PARAMS = _numbered(INGEST_SQL)


def _rows(latest: list[IncomingAlert], window: timedelta) -> bytes:
    from llmgw.alerts.store import search_text

    out: list[dict[str, Any]] = []
    for i, a in enumerate(latest):
        name = a.labels.get("alertname", "")[:200]
        out.append(
            {
                "i": i, "f": a.fingerprint, "s": a.starts_at, "e": a.ends_at,
                "w": a.starts_at - window, "name": name, "st": a.status,
                "sev": a.severity, "labels": a.labels,
                "ann": a.annotations, "gen": a.generator_url,
                "search": search_text(name, a.labels, a.annotations),
            }
        )  # fmt: skip
    return orjson.dumps(out)


def _params(
    store: AlertStore, d: Delivery, now: datetime, *, strict: bool
) -> tuple[tuple[Any, ...], list[IncomingAlert]]:
    """The statement's parameters for ``d`` (in ``INGEST_PARAMS``' order), and its occurrences
    (the last copy of each)."""
    from llmgw.alerts.store import FIRE_STEPS, RESOLVE_STEPS

    by_key: dict[tuple[str, datetime], IncomingAlert] = {}
    for a in d.alerts:  # the same occurrence twice in one delivery: the last copy wins
        by_key[(a.fingerprint, a.starts_at)] = a
    latest = list(by_key.values())
    s = store.settings
    params = {
        "digest": d.digest, "now": now, "receiver": d.receiver, "group_key": d.group_key,
        "dstatus": d.status, "alert_count": len(d.alerts), "truncated": d.truncated,
        "external_url": d.external_url, "payload": orjson.dumps(d.payload).decode(),
        "rows": _rows(latest, timedelta(seconds=s.flapping_window)).decode(),
        "source": d.source, "flap": s.flapping_count,
        "fsteps": list(FIRE_STEPS), "rsteps": list(RESOLVE_STEPS),
        "notify": "on" if store.notify else "off", "strict": strict,
    }  # fmt: skip
    return tuple(params[name] for name in INGEST_PARAMS), latest


def _result(row: Any) -> tuple[IngestResult, list[int]]:
    """The statement's row as the delivery's result, and the indexes of its occurrences that
    another transaction created after the statement's look-up (``lost``)."""
    from llmgw.alerts.store import IngestResult

    delivery_id, fresh, new_ids, _, resolved, updated, stale, lost, _ = row
    if not fresh:  # a retry or the HA peer's copy: only ``copies`` changed
        return IngestResult(int(delivery_id), duplicate=True), []
    result = IngestResult(int(delivery_id), duplicate=False, new=len(new_ids or ()),
                          resolved=int(resolved), updated=int(updated), stale=int(stale),
                          new_ids=[int(i) for i in new_ids or ()])  # fmt: skip
    return result, sorted(lost or ())


def ingest_pg(store: AlertStore, conn: Connection, d: Delivery, now: datetime) -> IngestResult:
    """Store ``d`` through ``conn`` (a PostgreSQL connection in a transaction); see the module
    docstring."""
    import psycopg  # here: the worker imports this module on SQLite too (9 MiB at start-up)

    params, latest = _params(store, d, now, strict=False)
    raw: Any = conn.connection.driver_connection
    with psycopg.RawCursor(raw) as cur:
        cur.execute(INGEST_SQL, params, prepare=True)
        row: Any = cur.fetchone()  # the statement always returns its one row
    result, lost = _result(row)
    follow_table(conn.connection.info, raw, int(row[-1]))
    if lost:  # created by a concurrent delivery after our look-up: update them instead
        store.apply_existing(conn, [latest[i] for i in lost], result, now)
    return result


def ingest_held(
    store: AlertStore, raw: Any, info: dict[Any, Any], ds: Sequence[Delivery], now: datetime
) -> list[IngestResult]:
    """Store ``ds`` through ``raw`` (an idle psycopg connection in autocommit mode, kept by
    ``HeldConnections``) in one transaction. One delivery is one round trip: its statement is
    its own transaction. The portable path takes four (the pool's ping, ``BEGIN``, the
    statement, ``COMMIT``), each a wake-up of PostgreSQL's backend and of this thread; on a
    busy machine the waits for a CPU between them were much of the webhook's tail (issue 14).
    Several deliveries (a group commit) are ``BEGIN``, their statements, ``COMMIT``. Raises the
    database's error with nothing stored, also when an occurrence of a delivery was created by
    another transaction after its statement looked: the statement then fails on purpose
    (``strict``), since that occurrence needs a second statement inside the transaction, and
    the caller stores the deliveries again the portable way (``AlertStore.ingest_many``).
    ``info`` is the connection's pool record (``follow_table``)."""
    import psycopg  # (see ``ingest_pg``)

    with contextlib.ExitStack() as stack:
        if len(ds) > 1:
            stack.enter_context(raw.transaction())
        cur = stack.enter_context(psycopg.RawCursor(raw))
        out: list[IngestResult] = []
        for d in ds:
            cur.execute(INGEST_SQL, _params(store, d, now, strict=True)[0], prepare=True)
            row: Any = cur.fetchone()  # the statement always returns its one row
            out.append(_result(row)[0])
    follow_table(info, raw, int(row[-1]))
    return out


_GIN_INDEXES_SQL = (
    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " JOIN pg_am am ON am.oid = c.relam"
    " WHERE i.indrelid = 'alerts'::regclass AND am.amname = 'gin' ORDER BY 1"
)


def tend(engine: Any) -> int:
    """The worker's care of ``alerts`` on PostgreSQL, every ``TEND_INTERVAL`` seconds, in one
    transaction: the GIN indexes' pending lists flushed (``flush_gin_pending``) and, while the
    table is young, the planner's statistics taken (``analyze_young``); returns the pending
    pages moved. Both need the table's owner (the role that ran ``llmgw db upgrade``) or a
    superuser: without that right the flush raises, and the caller stops calling."""
    from llmgw.alerts.queue import no_flush_wait

    with engine.begin() as conn:
        no_flush_wait(conn)  # a lost flush is redone by the next one or by an insert
        moved = flush_gin_pending(conn)
        analyze_young(conn)
    return moved


def flush_gin_pending(conn: Connection) -> int:
    """Move the pending lists of the GIN indexes on ``alerts`` (labels, search text: migration
    0009) into the indexes (``gin_clean_pending_list``); the pages moved. With ``fastupdate``
    (the default) an insert appends its index entries to a pending list, and the insert that
    finds the list above ``gin_pending_list_limit`` (4 MB) merges all of it into the index in
    its own statement: at 2,000 new alerts/s that was one webhook delivery every 2-5 s held
    100-280 ms on PostgreSQL's CPU (issue 14). Flushed by the worker (``tend``), the list never
    grows that far and the merge runs in the worker's transaction, not a delivery's. Only the
    index's owner may flush it: without that right this raises."""
    moved = 0
    names = [str(r[0]) for r in conn.exec_driver_sql(_GIN_INDEXES_SQL)]
    for name in names:
        got = conn.exec_driver_sql(
            "SELECT gin_clean_pending_list(%(i)s::regclass)", {"i": name}
        ).scalar()
        moved += int(got or 0)
    return moved


ANALYZE_FROM_BYTES = 64 * 1024
"""``analyze_young`` takes the first statistics of ``alerts`` at this size..."""
ANALYZE_GROWTH = 2
"""...and again each time the table has grown this many times over since its last ``ANALYZE``
(or ``VACUUM``: ``pg_class.relpages``)."""
_ANALYZE_DUE_SQL = (
    "SELECT pg_relation_size(c.oid) >= %(least)s AND (c.reltuples < 0 OR pg_relation_size(c.oid)"
    " >= %(growth)s * c.relpages::bigint * current_setting('block_size')::int)"
    " FROM pg_class c WHERE c.oid = 'alerts'::regclass"
)


def analyze_young(conn: Connection) -> bool:
    """``ANALYZE`` the columns of ``alerts`` that the ingest statement looks up and updates by
    (fingerprint, start, status) when the table has no statistics yet and is past
    ``ANALYZE_FROM_BYTES``, or has grown ``ANALYZE_GROWTH`` times over since it last had them;
    whether it was due. Autovacuum takes a table's first statistics only at its next visit to the
    database (``autovacuum_naptime``, a minute): a new deployment's first storm was stored
    meanwhile with plans made for no statistics, which found an occurrence through the index
    on its start alone and read every occurrence sharing that start (a storm's alerts share
    it): a delivery's statement took 5-8 ms instead of 1.8 at 2,000 new alerts/s, and the
    webhook answered the first two seconds of the benchmark late (issue 14). The other
    columns stay autovacuum's (a list of columns leaves its counter of changes as it was), and
    so do the later statistics: once it visits, autovacuum analyzes at every tenth of growth,
    before the table doubles. ``SKIP_LOCKED``: another instance's worker or autovacuum is
    analyzing it already."""
    due = conn.exec_driver_sql(
        _ANALYZE_DUE_SQL, {"least": ANALYZE_FROM_BYTES, "growth": ANALYZE_GROWTH}
    ).scalar()
    if due:
        conn.exec_driver_sql("ANALYZE (SKIP_LOCKED) alerts (fingerprint, starts_at, status)")
    return bool(due)


REPLAN_GROWTH = 2
"""A connection plans the ingest statement again once ``alerts`` is this many times larger than
when it was last planned (``follow_table``)..."""
REPLAN_MIN_BYTES = 128 * 1024
"""...and larger than this."""


def follow_table(info: dict[Any, Any], raw: Any, size: int) -> None:
    """Drop the prepared statements of ``raw`` (a psycopg connection; ``info`` its pool record)
    once ``alerts`` (``size`` bytes now) has grown ``REPLAN_GROWTH`` times over since the ingest
    statement was planned on it, so PostgreSQL plans it again (its estimates scale with the
    table's current size). A statement prepared while ``alerts`` was nearly empty (a new
    deployment's first deliveries) otherwise keeps the plan it got then until an ``ANALYZE``:
    one that found an occurrence through the index on ``starts_at`` alone and read every
    occurrence of that start (a storm's alerts share it), or updated resolving occurrences by
    scanning every firing one. With 28,000 alerts of one start, a delivery took over a second."""
    planned = info.setdefault("llmgw_planned_size", size)
    if size > max(REPLAN_GROWTH * planned, REPLAN_MIN_BYTES):
        raw.execute("DEALLOCATE ALL")  # psycopg forgets its own cache of them too
        info["llmgw_planned_size"] = size


def as_sqlalchemy_error(dialect: Any, exc: Exception, dbapi_connection: Any) -> DBAPIError:
    """``exc``, an error of psycopg from a statement sent on its own cursor, as SQLAlchemy
    raises it (the webhook answers 503), with ``connection_invalidated`` set when the
    connection is gone (the webhook's one retry on a fresh connection)."""
    import sqlalchemy as sa

    gone = dbapi_connection is None or bool(dialect.is_disconnect(exc, dbapi_connection, None))
    err = sa.exc.DBAPIError.instance(
        None, None, exc, dialect.dbapi.Error, connection_invalidated=gone, dialect=dialect
    )
    assert isinstance(err, sa.exc.DBAPIError)  # (exc is one of the driver's)
    return err


class HeldConnections:
    """One pooled PostgreSQL connection per thread, kept checked out while the webhook's
    threads live (``AlertStore.hold_connections``): a checkout pings the server first, a round
    trip per delivery that ``ingest_held`` saves. A connection that broke is invalidated
    (the pool opens a new one next time) and its error raised as SQLAlchemy's, with
    ``connection_invalidated`` set, so the webhook's one retry applies as on the portable
    path."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: set[Any] = set()
        self._closed = False

    def ingest(
        self, store: AlertStore, ds: Sequence[Delivery], now: datetime
    ) -> list[IngestResult]:
        """``ingest_held`` on this thread's connection; raises ``sqlalchemy.exc.DBAPIError``."""
        dialect = self.engine.dialect
        fairy = getattr(self._local, "fairy", None)
        try:
            if fairy is None:
                fairy = self._checkout()
            return ingest_held(store, fairy.driver_connection, fairy.info, ds, now)
        except dialect.dbapi.Error as exc:
            err = as_sqlalchemy_error(
                dialect, exc, None if fairy is None else fairy.driver_connection
            )
            if fairy is not None and err.connection_invalidated:
                self._local.fairy = None
                with self._lock:
                    self._held.discard(fairy)
                fairy.invalidate(exc)
            raise err from exc

    def _checkout(self) -> Any:
        import sqlalchemy as sa

        fairy = self.engine.raw_connection()
        fairy.driver_connection.autocommit = True  # a statement is its own transaction
        with self._lock:
            if self._closed:
                fairy.close()
                raise sa.exc.ResourceClosedError("the alert store was closed")
            self._held.add(fairy)
        self._local.fairy = fairy
        return fairy

    def close(self) -> None:
        """Give the connections back to the pool (at shutdown, once no delivery is in hand)."""
        with self._lock:
            self._closed = True
            held, self._held = self._held, set()
        for fairy in held:
            with contextlib.suppress(Exception):  # a connection that broke meanwhile
                fairy.driver_connection.autocommit = False  # as the pool hands them out
                fairy.close()
