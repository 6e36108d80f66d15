"""Storing a webhook delivery: one transaction, idempotent, so 2xx means durably stored.

``AlertStore.ingest`` keeps the raw delivery once (a retry or the second Alertmanager of an HA
pair only counts ``copies`` up and changes nothing else), creates an occurrence per new
(``fingerprint``, ``startsAt``) with a ``fired`` event and a ``classify`` job, and moves a
firing occurrence to ``resolved`` exactly once (a conditional update: two concurrent copies
cannot both win). A resolved occurrence never fires again: Alertmanager gives a re-fire a new
``startsAt``, so a late ``firing`` copy of a resolved occurrence is stale and only counted.
On PostgreSQL all of it is one statement (``llmgw.alerts.store_pg``); this module's statements
serve SQLite and the rare race that statement hands back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmgw.alerts.payload import Delivery, IncomingAlert
from llmgw.config import AlertsSettings
from llmgw.storage.alert_tables import Alert, AlertDelivery, AlertEvent, AlertJob

__all__ = [
    "ALERTS",
    "DELIVERIES",
    "EVENTS",
    "FIRE_STEPS",
    "JOBS",
    "AlertStore",
    "IngestResult",
    "search_text",
    "upsert_job",
    "upsert_jobs",
]

ALERTS: sa.Table = Alert.__table__  # type: ignore[attr-defined]
DELIVERIES: sa.Table = AlertDelivery.__table__  # type: ignore[attr-defined]
EVENTS: sa.Table = AlertEvent.__table__  # type: ignore[attr-defined]
JOBS: sa.Table = AlertJob.__table__  # type: ignore[attr-defined]

FIRE_STEPS: tuple[str, ...] = ("classify",)
"""Jobs queued for a new occurrence (``publish`` follows classify's first attempt:
``worker.FOLLOW_UPS``); the worker runs each step as its own job on the same queue."""
RESOLVE_STEPS: tuple[str, ...] = ("publish_resolve",)
"""Jobs queued when an occurrence resolves (it waits for the fire's publication)."""


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


_STATEMENTS: dict[tuple[str, str], Any] = {}
"""Statements built once per dialect and run with parameter lists (``executemany``): SQLAlchemy
compiles each once and batches the rows into one multi-row statement (``insertmanyvalues``),
where ``.values([...])`` compiled the whole statement again on every delivery."""


def _statement(conn: Connection, name: str) -> Any:
    key = (conn.dialect.name, name)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        stmt = _STATEMENTS[key] = _BUILDERS[name](conn)
    return stmt


def _jobs_upsert(conn: Connection) -> Any:
    stmt = _insert(conn, JOBS)
    return stmt.on_conflict_do_update(
        index_elements=["alert_id", "step"],
        set_={
            "state": "pending",
            "attempts": 0,
            "run_after": stmt.excluded.run_after,
            "lease_owner": None,
            "lease_until": None,
            "updated_at": stmt.excluded.updated_at,
        },
    )


def _alerts_insert(conn: Connection) -> Any:
    c = ALERTS.c
    return (
        _insert(conn, ALERTS)
        .on_conflict_do_nothing(index_elements=["fingerprint", "starts_at"])
        .returning(c.id, c.fingerprint, c.starts_at)
    )


def _touch_update(conn: Connection, *, refresh: bool) -> Any:
    c = ALERTS.c
    values: dict[str, Any] = {
        "last_seen": sa.bindparam("b_now", type_=c.last_seen.type),
        "notifications": c.notifications + 1,
        "last_delivery_id": sa.bindparam("b_delivery"),
    }
    if refresh:  # the newest copy of the alert wins (annotations may be re-templated)
        values["annotations"] = sa.bindparam("b_annotations", type_=c.annotations.type)
    return sa.update(ALERTS).where(c.id == sa.bindparam("b_id")).values(**values)


_LOOKUP_SQL: dict[tuple[str, int], sa.TextClause] = {}


def _lookup_sql(conn: Connection, n: int) -> sa.TextClause:
    """For ``n`` occurrences (binds ``f<i>``, ``s<i>``, ``w<i>``): per occurrence ``k``, its id
    and status if it exists, else how many of its label set started before it (``earlier``) and
    since ``w<i>`` (``recent``): index-only ranges on the unique key, counted for new ones only."""
    key = (conn.dialect.name, n)
    stmt = _LOOKUP_SQL.get(key)
    if stmt is None:
        branches = [  # only integers go into the text: the values are bound
            f"SELECT {i} AS k, e.id, e.status,"  # noqa: S608
            f" CASE WHEN e.id IS NULL THEN (SELECT count(*) FROM alerts b"
            f"  WHERE b.fingerprint = :f{i} AND b.starts_at < :s{i}) ELSE 0 END AS earlier,"
            f" CASE WHEN e.id IS NULL THEN (SELECT count(*) FROM alerts b"
            f"  WHERE b.fingerprint = :f{i} AND b.starts_at < :s{i} AND b.starts_at >= :w{i})"
            f"  ELSE 0 END AS recent"
            f" FROM (SELECT 1 AS one) AS o"
            f" LEFT JOIN alerts e ON e.fingerprint = :f{i} AND e.starts_at = :s{i}"
            for i in range(n)
        ]
        when = ALERTS.c.starts_at.type
        stmt = sa.text("\nUNION ALL\n".join(branches)).bindparams(
            *(sa.bindparam(f"{p}{i}", type_=when) for i in range(n) for p in ("s", "w"))
        )
        _LOOKUP_SQL[key] = stmt
    return stmt


def _resolve_details(conn: Connection) -> Any:
    c = ALERTS.c
    return (
        sa.update(ALERTS)
        .where(c.id == sa.bindparam("b_id"))
        .values(
            ends_at=sa.bindparam("b_ends", type_=c.ends_at.type),
            annotations=sa.bindparam("b_annotations", type_=c.annotations.type),
        )
    )


_BUILDERS: dict[str, Callable[[Connection], Any]] = {
    "resolve_details": _resolve_details,
    "jobs_upsert": _jobs_upsert,
    "alerts_insert": _alerts_insert,
    "touch": lambda conn: _touch_update(conn, refresh=False),
    "touch_refresh": lambda conn: _touch_update(conn, refresh=True),
}


def search_text(alertname: str, labels: dict[str, str], annotations: dict[str, str]) -> str:
    """The lower-cased text free-text search looks in: name, label pairs, annotation values."""
    parts = [alertname]
    parts += [f"{k}={v}" for k, v in sorted(labels.items())]
    parts += [v for _, v in sorted(annotations.items())]
    return "\n".join(parts).lower()[:20_000]


def upsert_job(conn: Connection, alert_id: int, step: str, now: datetime) -> None:
    """Queue ``step`` for ``alert_id`` (again): pending now, attempts reset."""
    upsert_jobs(conn, [(alert_id, step)], now)


def upsert_jobs(conn: Connection, jobs: Sequence[tuple[int, str]], now: datetime) -> None:
    """``upsert_job`` for every (alert id, step) of ``jobs``, in one statement."""
    if not jobs:
        return
    rows = [
        {"alert_id": alert_id, "step": step, "state": "pending", "attempts": 0,
         "run_after": now, "created_at": now, "updated_at": now}
        for alert_id, step in dict.fromkeys(jobs)  # one row per job: ON CONFLICT needs it
    ]  # fmt: skip
    conn.execute(_statement(conn, "jobs_upsert"), rows)


@dataclass(slots=True)
class IngestResult:
    """What one delivery changed."""

    delivery_id: int
    duplicate: bool
    new: int = 0
    resolved: int = 0
    updated: int = 0
    stale: int = 0
    new_ids: list[int] = field(default_factory=list)


class AlertStore:
    """Writes deliveries into the history (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        settings: AlertsSettings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.now = now
        self.notify = True
        """PostgreSQL: whether a delivery's transaction sends the job queue's ``NOTIFY`` (the
        trigger of migration 0018). ``llmgw serve`` turns it off and announces the jobs itself
        after the commit (``wakeups.JobAnnouncer``): a notifying commit waits for every other
        notifying commit in the cluster."""
        self._held: Any = None
        """``store_pg.HeldConnections`` once ``hold_connections`` was called."""

    def hold_connections(self) -> None:
        """On PostgreSQL, let ``ingest_many`` keep one connection per calling thread and store
        each delivery in one round trip (``store_pg.ingest_held``); ``close`` gives them back.
        For a few long-lived threads (the webhook's); elsewhere a no-op."""
        if self.engine.dialect.name == "postgresql" and self._held is None:
            from llmgw.alerts.store_pg import HeldConnections

            self._held = HeldConnections(self.engine)

    def close(self) -> None:
        """Give back the connections ``hold_connections`` kept."""
        if self._held is not None:
            self._held.close()

    def ingest(self, d: Delivery) -> IngestResult:
        """Store ``d`` in one transaction; raises the database's error if it could not commit."""
        now = self.now()
        with self.engine.begin() as conn:
            return self.ingest_in(conn, d, now)

    def ingest_many(self, ds: Sequence[Delivery]) -> list[IngestResult | Exception]:
        """Store the deliveries ``ds`` in one transaction (one commit: a group commit), in the
        order of their digests, so that two instances storing the same deliveries at once (an HA
        pair) take their locks in the same order; a delivery seen twice counts as a copy the
        second time. Returns each delivery's result, or the error that kept it from being
        stored. If the transaction fails for any reason but a lost connection (one delivery's
        statement failed, a deadlock with another instance), it rolled back as a whole and each
        delivery is stored again in its own transaction: one bad delivery fails alone."""
        if self._held is not None:  # one round trip; else (a race, a refusal) as below
            try:
                return list(self._held.ingest(self, ds, self.now()))
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    return [exc] * len(ds)
            except sa.exc.ResourceClosedError as exc:
                return [exc] * len(ds)
        if len(ds) == 1:
            try:
                return [self.ingest(ds[0])]
            except Exception as exc:  # handed to that delivery's request
                return [exc]
        now = self.now()
        order = sorted(range(len(ds)), key=lambda i: ds[i].digest)
        done: dict[int, IngestResult | Exception] = {}
        try:
            with self.engine.begin() as conn:
                for i in order:
                    done[i] = self.ingest_in(conn, ds[i], now)
            return [done[i] for i in range(len(ds))]
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                return [exc] * len(ds)
        except Exception as exc:
            return [exc] * len(ds)
        out: list[IngestResult | Exception] = []
        for d in ds:
            try:
                out.append(self.ingest(d))
            except Exception as exc:
                out.append(exc)
        return out

    def ingest_in(self, conn: Connection, d: Delivery, now: datetime) -> IngestResult:
        """Store ``d`` through ``conn`` (in a transaction the caller commits)."""
        if conn.dialect.name == "postgresql":  # one statement (``store_pg``)
            from llmgw.alerts.store_pg import as_sqlalchemy_error, ingest_pg

            dbapi: Any = conn.dialect.dbapi
            try:
                return ingest_pg(self, conn, d, now)
            except dbapi.Error as exc:  # its own cursor: wrap as SQLAlchemy would (a 503)
                err = as_sqlalchemy_error(conn.dialect, exc, conn.connection.dbapi_connection)
                if err.connection_invalidated:
                    conn.invalidate(exc)
                raise err from exc
        stmt = (
            _insert(conn, DELIVERIES)
            .values(
                digest=d.digest,
                received_at=now,
                last_received_at=now,
                copies=1,
                receiver=d.receiver,
                group_key=d.group_key,
                status=d.status,
                alert_count=len(d.alerts),
                truncated=d.truncated,
                external_url=d.external_url,
                payload=d.payload,
            )
            .on_conflict_do_nothing(index_elements=["digest"])
            .returning(DELIVERIES.c.id)
        )
        delivery_id = conn.execute(stmt).scalar()
        if delivery_id is None:
            row = conn.execute(
                sa.update(DELIVERIES)
                .where(DELIVERIES.c.digest == d.digest)
                .values(copies=DELIVERIES.c.copies + 1, last_received_at=now)
                .returning(DELIVERIES.c.id)
            ).scalar_one()
            return IngestResult(int(row), duplicate=True)
        result = IngestResult(int(delivery_id), duplicate=False)
        self._apply(conn, d, result, now)
        return result

    def _apply(self, conn: Connection, d: Delivery, result: IngestResult, now: datetime) -> None:
        latest: dict[tuple[str, datetime], IncomingAlert] = {}
        for a in d.alerts:  # the same occurrence twice in one delivery: the last copy wins
            latest[(a.fingerprint, a.starts_at)] = a
        if not latest:
            return
        events: list[dict[str, Any]] = []
        jobs: list[tuple[int, str]] = []
        found = self._lookup(conn, list(latest))
        fresh = [key for key in latest if found[key][0] is None]
        if fresh:
            created = self._create(conn, fresh, found, latest, d, result, now, events, jobs)
            lost = [key for key in fresh if key not in created]
            if lost:  # another delivery created them a moment ago: update them instead
                found.update(self._existing(conn, lost))
        self._update(conn, latest, found, result, now, events, jobs)

    def apply_existing(
        self, conn: Connection, alerts: Sequence[IncomingAlert], result: IngestResult,
        now: datetime,
    ) -> None:  # fmt: skip
        """Apply ``alerts``, occurrences that exist (created by another delivery meanwhile), as
        updates: resolve or mark seen, with their events and jobs."""
        latest = {(a.fingerprint, a.starts_at): a for a in alerts}
        found = self._existing(conn, list(latest))
        self._update(conn, latest, found, result, now, [], [])

    def _update(
        self,
        conn: Connection,
        latest: dict[tuple[str, datetime], IncomingAlert],
        found: dict[tuple[str, datetime], tuple[int | None, str | None, int, int]],
        result: IngestResult,
        now: datetime,
        events: list[dict[str, Any]],
        jobs: list[tuple[int, str]],
    ) -> None:
        resolving = [
            (found[key][0], a)
            for key, a in latest.items()
            if found[key][1] == "firing" and a.status == "resolved"
        ]
        won = self._resolve(conn, resolving, result.delivery_id, now) if resolving else set()
        touched: list[tuple[int, IncomingAlert, bool]] = []
        for key, a in latest.items():
            alert_id, status = found[key][:2]
            if alert_id is None or status is None:  # new (or created and deleted in between)
                continue
            if alert_id in won:
                result.resolved += 1
                events.append(_event(alert_id, now, "resolved", {"ends_at": _iso(a.ends_at)}))
                jobs += [(alert_id, step) for step in RESOLVE_STEPS]
                continue
            if status == "resolved" and a.status == "firing":
                result.stale += 1
            touched.append((alert_id, a, status == a.status))
            result.updated += 1
        self._touch(conn, touched, result.delivery_id, now)
        if events:
            conn.execute(sa.insert(EVENTS), events)
        upsert_jobs(conn, jobs, now)

    def _lookup(
        self, conn: Connection, keys: Sequence[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], tuple[int | None, str | None, int, int]]:
        """Per occurrence in one statement: its id and status when it exists, else how many
        occurrences of its label set started before it and how many of those in the flapping
        window (counted only for a new one: an index-only range on the unique key)."""
        window = timedelta(seconds=self.settings.flapping_window)
        stmt = _lookup_sql(conn, len(keys))
        params: dict[str, Any] = {}
        for i, (fp, start) in enumerate(keys):
            params[f"f{i}"] = fp
            params[f"s{i}"] = start
            params[f"w{i}"] = start - window
        out: dict[tuple[str, datetime], tuple[int | None, str | None, int, int]] = {}
        for k, ident, status, earlier, recent in conn.execute(stmt, params):
            ident = None if ident is None else int(ident)
            out[keys[int(k)]] = (ident, status, int(earlier or 0), int(recent or 0))
        return out

    def _existing(
        self, conn: Connection, keys: Sequence[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], tuple[int | None, str | None, int, int]]:
        c = ALERTS.c
        rows = conn.execute(
            sa.select(c.id, c.fingerprint, c.starts_at, c.status).where(
                sa.tuple_(c.fingerprint, c.starts_at).in_(keys)
            )
        )
        out: dict[tuple[str, datetime], tuple[int | None, str | None, int, int]] = dict.fromkeys(
            keys, (None, None, 0, 0)
        )
        out.update({(r.fingerprint, r.starts_at): (int(r.id), r.status, 0, 0) for r in rows})
        return out

    def _create(
        self,
        conn: Connection,
        fresh: list[tuple[str, datetime]],
        found: dict[tuple[str, datetime], tuple[int | None, str | None, int, int]],
        latest: dict[tuple[str, datetime], IncomingAlert],
        d: Delivery,
        result: IngestResult,
        now: datetime,
        events: list[dict[str, Any]],
        jobs: list[tuple[int, str]],
    ) -> set[tuple[str, datetime]]:
        """One multi-row insert of the new occurrences; the keys it created."""
        s = self.settings
        window = timedelta(seconds=s.flapping_window)
        rows: list[dict[str, Any]] = []
        recent_of: dict[tuple[str, datetime], int] = {}
        for key in fresh:
            a = latest[key]
            fp, start = key
            earlier, recent = found[key][2:]
            for other_fp, other_start in fresh:  # new in this delivery and earlier: count too
                if other_fp == fp and other_start < start:
                    earlier += 1
                    recent += other_start >= start - window
            recent_of[key] = recent
            alertname = a.labels.get("alertname", "")[:200]
            rows.append(
                {
                    "fingerprint": fp,
                    "starts_at": start,
                    "ends_at": a.ends_at if a.status == "resolved" else None,
                    "source": d.source,
                    "alertname": alertname,
                    "status": a.status,
                    "severity": a.severity,
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "generator_url": a.generator_url,
                    "receiver": d.receiver,
                    "first_seen": now,
                    "last_seen": now,
                    "notifications": 1,
                    "fire_count": earlier + 1,
                    "flapping": recent + 1 >= s.flapping_count,
                    "last_delivery_id": result.delivery_id,
                    "cls_status": "pending",
                    "search": search_text(alertname, a.labels, a.annotations),
                }
            )
        found_rows = conn.execute(_statement(conn, "alerts_insert"), rows)
        ids = {(r.fingerprint, r.starts_at): int(r.id) for r in found_rows}
        for key in fresh:  # in delivery order
            alert_id = ids.get(key)
            if alert_id is None:
                continue
            a = latest[key]
            result.new += 1
            result.new_ids.append(alert_id)
            events.append(_event(alert_id, now, "fired", {"starts_at": _iso(a.starts_at)}))
            recent = recent_of[key]
            if recent + 1 >= s.flapping_count:
                events.append(_event(alert_id, now, "flapping", {"fires_in_window": recent + 1}))
            jobs += [(alert_id, step) for step in FIRE_STEPS]
            if a.status == "resolved":
                events.append(_event(alert_id, now, "resolved", {"ends_at": _iso(a.ends_at)}))
                jobs += [(alert_id, step) for step in RESOLVE_STEPS]
        return set(ids)

    def _resolve(
        self,
        conn: Connection,
        resolving: Sequence[tuple[int | None, IncomingAlert]],
        delivery_id: int,
        now: datetime,
    ) -> set[int]:
        """Move firing occurrences to resolved; the ids this delivery moved. The status change
        is one conditional update (two concurrent copies cannot both win), then the winners'
        end times and annotations in one executemany."""
        c = ALERTS.c
        ids = [alert_id for alert_id, _ in resolving if alert_id is not None]
        won = {
            int(r[0])
            for r in conn.execute(
                sa.update(ALERTS)
                .where(c.id.in_(ids), c.status == "firing")
                .values(
                    status="resolved",
                    last_seen=now,
                    notifications=c.notifications + 1,
                    last_delivery_id=delivery_id,
                )
                .returning(c.id)
            )
        }
        rows = [
            {"b_id": alert_id, "b_ends": a.ends_at or now, "b_annotations": a.annotations}
            for alert_id, a in resolving
            if alert_id in won
        ]
        if rows:
            conn.execute(_statement(conn, "resolve_details"), rows)
        return won

    def _touch(
        self,
        conn: Connection,
        touched: Sequence[tuple[int, IncomingAlert, bool]],
        delivery_id: int,
        now: datetime,
    ) -> None:
        """Mark occurrences seen again, one executemany per kind; with ``refresh`` the newest
        copy's annotations win (Alertmanager may re-template them)."""
        plain = [
            {"b_id": alert_id, "b_now": now, "b_delivery": delivery_id}
            for alert_id, _, refresh in touched
            if not refresh
        ]
        fresh = [
            {"b_id": alert_id, "b_now": now, "b_delivery": delivery_id,
             "b_annotations": a.annotations}
            for alert_id, a, refresh in touched
            if refresh
        ]  # fmt: skip
        if plain:
            conn.execute(_statement(conn, "touch"), plain)
        if fresh:
            conn.execute(_statement(conn, "touch_refresh"), fresh)


def _event(alert_id: int, at: datetime, kind: str, detail: dict[str, Any] | None) -> dict[str, Any]:
    return {"alert_id": alert_id, "at": at, "kind": kind, "actor": None, "detail": detail}


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None
