"""A webhook delivery into PostgreSQL in one statement (``AlertStore.ingest`` on PostgreSQL).

One ``WITH`` statement does what the portable path (``llmgw.alerts.store``) does in five to
seven: it inserts the delivery (``ON CONFLICT (digest) DO NOTHING``: a retry or the HA peer's
copy changes nothing but ``copies``, in a second statement), looks up every occurrence of it,
inserts the new ones with their fire counts and flapping flags, moves firing ones to resolved
(a conditional ``UPDATE``: two concurrent copies cannot both win), marks the others seen, and
writes their events and jobs (its jobs' ``NOTIFY`` only when ``AlertStore.notify``: the
setting it makes is read by migration 0019's trigger at the statement's end). The occurrences travel as one JSON document
(``jsonb_to_recordset``): orjson writes it in C, the statement text never changes (psycopg
prepares it once per connection), and nothing is dumped per value in Python, where the array
form spent a fifth of the store's CPU on escaping text. Semantics are the portable path's; an
occurrence another delivery created between this statement's look-up and its insert (a race
of two deliveries) is handed back and updated by the portable code in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from llmgw.alerts.payload import IncomingAlert

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from llmgw.alerts.payload import Delivery
    from llmgw.alerts.store import AlertStore, IngestResult

__all__ = ["GIN_FLUSH_INTERVAL", "flush_gin_pending", "ingest_pg"]

GIN_FLUSH_INTERVAL = 0.25
"""Seconds between the worker's flushes of the GIN indexes' pending lists on ``alerts``: at
2,000 new alerts/s a flush of a second's entries took 25-65 ms of PostgreSQL's CPU, and the
deliveries that ran meanwhile were late; a quarter of that each time is spread thinner."""

# The ``%(name)s`` parameters are psycopg's; the JSON rows (``r``) carry per occurrence its
# index in the delivery, fingerprint, starts_at/ends_at (ISO 8601, kept as text for the events'
# details), the flapping window's start, name, status, severity, labels, annotations, generator
# URL and search text. Each is looked up by a ``LATERAL ... LIMIT 1`` on the unique key: the
# planner guesses 100 rows for ``jsonb_to_recordset``, and with a plain join it chose a hash join
# over a sequential scan of ``alerts`` until ANALYZE had seen the table grow (a delivery's CPU
# then grew with the table: 3.6 ms of 5 at 11,000 occurrences); the limit keeps the index probe.
INGEST_SQL = """
WITH d AS (
  INSERT INTO alert_deliveries (digest, received_at, last_received_at, copies, receiver,
    group_key, status, alert_count, truncated, external_url, payload)
  VALUES (%(digest)s, %(now)s, %(now)s, 1, %(receiver)s, %(group_key)s, %(dstatus)s,
    %(alert_count)s, %(truncated)s, %(external_url)s, %(payload)s::jsonb)
  ON CONFLICT (digest) DO NOTHING
  RETURNING id
),
x AS (
  SELECT r.*, r.s::timestamptz ts, r.w::timestamptz tw, a.*
  FROM jsonb_to_recordset(%(rows)s::jsonb) r(i int, f text, s text, e text, w text,
    name text, st text, sev text, labels jsonb, ann jsonb, gen text, search text)
  LEFT JOIN LATERAL (SELECT id aid, status ast FROM alerts
    WHERE fingerprint = r.f AND starts_at = r.s::timestamptz LIMIT 1) a ON true
  WHERE EXISTS (SELECT 1 FROM d)
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
  INSERT INTO alert_events (alert_id, at, kind, actor, detail)
  SELECT q.id, %(now)s, q.k, NULL, q.v FROM (
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
    run_after = EXCLUDED.run_after, lease_owner = NULL, lease_until = NULL,
    updated_at = EXCLUDED.updated_at
)
SELECT (SELECT id FROM d),
  (SELECT COALESCE(array_agg(id ORDER BY i), '{}') FROM m),
  set_config('llmgw.alert_notify', %(notify)s, true),
  (SELECT count(*) FROM res),
  (SELECT count(*) FROM seen),
  (SELECT count(*) FROM seen WHERE stale),
  (SELECT COALESCE(array_agg(n.i), '{}') FROM n
    WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.fingerprint = n.f AND ins.starts_at = n.ts))
"""
INGEST_SQL = " ".join(INGEST_SQL.split())
"""Sent without its layout: psycopg caches the conversion of a query only up to 4 KiB."""

_COPY_SQL = (
    "UPDATE alert_deliveries SET copies = copies + 1, last_received_at = %(now)s"
    " WHERE digest = %(digest)s RETURNING id"
)


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


def ingest_pg(store: AlertStore, conn: Connection, d: Delivery, now: datetime) -> IngestResult:
    """Store ``d`` through ``conn`` (a PostgreSQL connection in a transaction); see the module
    docstring."""
    from llmgw.alerts.store import FIRE_STEPS, RESOLVE_STEPS, IngestResult

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
        "notify": "on" if store.notify else "off",
    }  # fmt: skip
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(INGEST_SQL, params, prepare=True)
        delivery_id, new_ids, _, resolved, updated, stale, lost = cur.fetchone()
        if delivery_id is None:
            cur.execute(_COPY_SQL, {"now": now, "digest": d.digest})
            (row,) = cur.fetchone()
            return IngestResult(int(row), duplicate=True)
    result = IngestResult(int(delivery_id), duplicate=False, new=len(new_ids),
                          resolved=int(resolved), updated=int(updated), stale=int(stale),
                          new_ids=[int(i) for i in new_ids])  # fmt: skip
    if lost:  # created by a concurrent delivery after our look-up: update them instead
        store.apply_existing(conn, [latest[i] for i in sorted(lost)], result, now)
    return result


_GIN_INDEXES_SQL = (
    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " JOIN pg_am am ON am.oid = c.relam"
    " WHERE i.indrelid = 'alerts'::regclass AND am.amname = 'gin' ORDER BY 1"
)


def flush_gin_pending(engine: Any) -> int:
    """Move the pending lists of the GIN indexes on ``alerts`` (labels, search text: migration
    0009) into the indexes (``gin_clean_pending_list``); the pages moved. The worker calls it every
    ``GIN_FLUSH_INTERVAL`` seconds on PostgreSQL. With ``fastupdate`` (the default) an insert
    appends its index entries to a pending list, and the insert that finds the list above
    ``gin_pending_list_limit`` (4 MB) merges all of it into the index in its own statement: at
    2,000 new alerts/s that was one webhook delivery every 2-5 s held 100-280 ms on PostgreSQL's
    CPU (issue 14). Flushed here, the list never grows that far and the merge runs in the
    worker's transaction, not a delivery's. Only the index's owner may flush it: without that
    right this raises, and the caller stops calling (the deliveries merge as before)."""
    from llmgw.alerts.queue import no_flush_wait

    moved = 0
    with engine.begin() as conn:
        no_flush_wait(conn)  # a lost flush is redone by the next one or by an insert
        names = [str(r[0]) for r in conn.exec_driver_sql(_GIN_INDEXES_SQL)]
        for name in names:
            got = conn.exec_driver_sql(
                "SELECT gin_clean_pending_list(%(i)s::regclass)", {"i": name}
            ).scalar()
            moved += int(got or 0)
    return moved
