"""Storing a webhook delivery: one transaction, idempotent, so 2xx means durably stored.

``AlertStore.ingest`` keeps the raw delivery once (a retry or the second Alertmanager of an HA
pair only counts ``copies`` up and changes nothing else), creates an occurrence per new
(``fingerprint``, ``startsAt``) with a ``fired`` event and a ``classify`` job, and moves a
firing occurrence to ``resolved`` exactly once (a conditional update: two concurrent copies
cannot both win). A resolved occurrence never fires again: Alertmanager gives a re-fire a new
``startsAt``, so a late ``firing`` copy of a resolved occurrence is stale and only counted.
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
"""Jobs queued for a new occurrence. Publishing (issue 15) adds its own step names here and in
``RESOLVE_STEPS``; the worker runs each step as its own job on the same queue."""
RESOLVE_STEPS: tuple[str, ...] = ()
"""Jobs queued when an occurrence resolves."""


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


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
    stmt = _insert(conn, JOBS).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["alert_id", "step"],
        set_={
            "state": "pending",
            "attempts": 0,
            "run_after": now,
            "lease_owner": None,
            "lease_until": None,
            "updated_at": now,
        },
    )
    conn.execute(stmt)


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

    def ingest(self, d: Delivery) -> IngestResult:
        """Store ``d`` in one transaction; raises the database's error if it could not commit."""
        now = self.now()
        with self.engine.begin() as conn:
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
        existing = self._existing(conn, list(latest))
        events: list[dict[str, Any]] = []
        jobs: list[tuple[int, str]] = []
        for key, a in latest.items():
            found = existing.get(key)
            if found is None:
                alert_id = self._create(conn, a, d, result, now, events)
                if alert_id is None:  # another delivery created it a moment ago
                    found = self._existing(conn, [key]).get(key)
                else:
                    jobs += [(alert_id, step) for step in FIRE_STEPS]
                    if a.status == "resolved":
                        jobs += [(alert_id, step) for step in RESOLVE_STEPS]
                    continue
            if found is None:  # pragma: no cover - created and deleted in between
                continue
            alert_id, status = found
            if (
                status == "firing"
                and a.status == "resolved"
                and self._resolve(conn, alert_id, a, result.delivery_id, now)
            ):
                result.resolved += 1
                events.append(_event(alert_id, now, "resolved", {"ends_at": _iso(a.ends_at)}))
                jobs += [(alert_id, step) for step in RESOLVE_STEPS]
                continue
            if status == "resolved" and a.status == "firing":
                result.stale += 1
            self._touch(conn, alert_id, a, result.delivery_id, now, refresh=status == a.status)
            result.updated += 1
        if events:
            conn.execute(sa.insert(EVENTS), events)
        upsert_jobs(conn, jobs, now)

    def _existing(
        self, conn: Connection, keys: Sequence[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], tuple[int, str]]:
        c = ALERTS.c
        rows = conn.execute(
            sa.select(c.id, c.fingerprint, c.starts_at, c.status).where(
                sa.tuple_(c.fingerprint, c.starts_at).in_(keys)
            )
        )
        return {(r.fingerprint, r.starts_at): (int(r.id), r.status) for r in rows}

    def _create(
        self,
        conn: Connection,
        a: IncomingAlert,
        d: Delivery,
        result: IngestResult,
        now: datetime,
        events: list[dict[str, Any]],
    ) -> int | None:
        s = self.settings
        c = ALERTS.c
        since = a.starts_at - timedelta(seconds=s.flapping_window)
        earlier, recent = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(sa.case((c.starts_at >= since, 1), else_=0)), 0),
            ).where(c.fingerprint == a.fingerprint, c.starts_at < a.starts_at)
        ).one()
        flapping = int(recent) + 1 >= s.flapping_count
        alertname = a.labels.get("alertname", "")[:200]
        stmt = (
            _insert(conn, ALERTS)
            .values(
                fingerprint=a.fingerprint,
                starts_at=a.starts_at,
                ends_at=a.ends_at if a.status == "resolved" else None,
                source=d.source,
                alertname=alertname,
                status=a.status,
                severity=(a.labels.get("severity") or None),
                labels=a.labels,
                annotations=a.annotations,
                generator_url=a.generator_url,
                receiver=d.receiver,
                first_seen=now,
                last_seen=now,
                notifications=1,
                fire_count=int(earlier) + 1,
                flapping=flapping,
                last_delivery_id=result.delivery_id,
                cls_status="pending",
                search=search_text(alertname, a.labels, a.annotations),
            )
            .on_conflict_do_nothing(index_elements=["fingerprint", "starts_at"])
            .returning(c.id)
        )
        alert_id = conn.execute(stmt).scalar()
        if alert_id is None:
            return None
        alert_id = int(alert_id)
        result.new += 1
        result.new_ids.append(alert_id)
        events.append(_event(alert_id, now, "fired", {"starts_at": _iso(a.starts_at)}))
        if flapping:
            events.append(_event(alert_id, now, "flapping", {"fires_in_window": int(recent) + 1}))
        if a.status == "resolved":
            events.append(_event(alert_id, now, "resolved", {"ends_at": _iso(a.ends_at)}))
        return alert_id

    def _resolve(
        self, conn: Connection, alert_id: int, a: IncomingAlert, delivery_id: int, now: datetime
    ) -> bool:
        c = ALERTS.c
        done = conn.execute(
            sa.update(ALERTS)
            .where(c.id == alert_id, c.status == "firing")
            .values(
                status="resolved",
                ends_at=a.ends_at or now,
                last_seen=now,
                notifications=c.notifications + 1,
                annotations=a.annotations,
                last_delivery_id=delivery_id,
            )
        )
        return bool(done.rowcount)

    def _touch(
        self,
        conn: Connection,
        alert_id: int,
        a: IncomingAlert,
        delivery_id: int,
        now: datetime,
        *,
        refresh: bool,
    ) -> None:
        c = ALERTS.c
        values: dict[str, Any] = {
            "last_seen": now,
            "notifications": c.notifications + 1,
            "last_delivery_id": delivery_id,
        }
        if refresh:  # the newest copy of the alert wins (annotations may be re-templated)
            values["annotations"] = a.annotations
        conn.execute(sa.update(ALERTS).where(c.id == alert_id).values(**values))


def _event(alert_id: int, at: datetime, kind: str, detail: dict[str, Any] | None) -> dict[str, Any]:
    return {"alert_id": alert_id, "at": at, "kind": kind, "actor": None, "detail": detail}


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None
