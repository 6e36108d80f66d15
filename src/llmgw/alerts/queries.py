"""Reading and changing the alert history: what the API, the CLI, the dashboard and the worker use.

Records are JSON-ready dicts (ISO 8601 UTC times): the API's answers and the CLI's ``--json``.
A classification is always shown with ``ai_generated: true`` and the model, prompt version and
time it came from.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from llmgw.alerts.store import ALERTS, DELIVERIES, EVENTS, JOBS, upsert_job
from llmgw.alerts.summary import summarize
from llmgw.errors import InvalidRequest, NotFound

__all__ = [
    "AlertFilter",
    "AlertHistory",
    "ClassificationWrite",
    "alert_record",
    "decode_cursor",
    "encode_cursor",
]

_STATUSES = {"firing", "resolved"}
_CLS = {"pending", "ok", "invalid_output", "timeout", "error", "skipped"}
MAX_LIMIT = 500


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when is not None else None


def alert_record(row: Row[Any] | dict[str, Any]) -> dict[str, Any]:
    """One occurrence as a JSON-ready record."""
    r = dict(row._mapping) if isinstance(row, Row) else row
    cls: dict[str, Any] = {"status": r["cls_status"]}
    if r.get("classification"):
        cls.update(r["classification"])
    if cls.get("severity") or cls["status"] == "ok":
        cls["ai_generated"] = True
    return {
        "id": r["id"],
        "fingerprint": r["fingerprint"],
        "source": r["source"],
        "alertname": r["alertname"],
        "status": r["status"],
        "severity": r["severity"],
        "labels": r["labels"],
        "annotations": r["annotations"],
        "starts_at": _iso(r["starts_at"]),
        "ends_at": _iso(r["ends_at"]),
        "first_seen": _iso(r["first_seen"]),
        "last_seen": _iso(r["last_seen"]),
        "generator_url": r["generator_url"],
        "receiver": r["receiver"],
        "notifications": r["notifications"],
        "fire_count": r["fire_count"],
        "flapping": bool(r["flapping"]),
        "acked_at": _iso(r["acked_at"]),
        "acked_by": r["acked_by"],
        "note": r["note"],
        "suppressed": r.get("suppressed"),
        "classification": cls,
    }


def encode_cursor(last_seen: datetime, alert_id: int) -> str:
    """An opaque position after (``last_seen``, ``alert_id``) in newest-first order."""
    raw = f"{last_seen.astimezone(UTC).isoformat()}|{alert_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The position an ``encode_cursor`` string names; ``InvalidRequest`` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        return datetime.fromisoformat(when), int(ident)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(
            "invalid cursor: pass back next_cursor as given", param="cursor"
        ) from None


@dataclass(slots=True)
class AlertFilter:
    """What a listing keeps (every field optional)."""

    status: str | None = None
    severity: str | None = None
    alertname: str | None = None
    category: str | None = None
    classification: str | None = None
    """``cls_status``: pending, ok, invalid_output, timeout, error, skipped."""
    q: str | None = None
    """Text in the name, labels (``key=value``) or annotations, case-insensitive."""
    labels: tuple[str, ...] = ()
    """``key=value`` pairs that must all be among the labels."""
    since: datetime | None = None
    until: datetime | None = None
    flapping: bool | None = None
    acked: bool | None = None
    source: str | None = None

    def check(self) -> None:
        """``InvalidRequest`` naming the first bad field."""
        if self.status is not None and self.status not in _STATUSES:
            raise InvalidRequest("invalid status: firing or resolved", param="status")
        if self.classification is not None and self.classification not in _CLS:
            raise InvalidRequest(
                f"invalid classification: one of {', '.join(sorted(_CLS))}", param="classification"
            )
        for pair in self.labels:
            if "=" not in pair:
                raise InvalidRequest("invalid label: use key=value", param="label")

    def where(self, dialect: str = "postgresql") -> list[sa.ColumnElement[bool]]:
        """The SQL conditions (``dialect``: the database's, ``postgresql`` or ``sqlite``)."""
        c = ALERTS.c
        out: list[sa.ColumnElement[bool]] = []
        if self.status:
            out.append(c.status == self.status)
        if self.severity:
            out.append(c.severity == self.severity)
        if self.alertname:
            out.append(c.alertname == self.alertname)
        if self.category:
            out.append(c.category == self.category)
        if self.classification:
            out.append(c.cls_status == self.classification)
        if self.source:
            out.append(c.source == self.source)
        if self.q:  # a trigram index on PostgreSQL (migration 0009), a scan on SQLite
            out.append(c.search.like(f"%{_escape_like(self.q.lower())}%", escape="/"))
        for pair in self.labels:
            key, _, value = pair.partition("=")
            if dialect == "postgresql":  # JSONB containment: the GIN index (migration 0009)
                out.append(
                    c.labels.op("@>", return_type=sa.Boolean)(sa.cast({key: value}, c.labels.type))
                )
            elif re.fullmatch(r"[A-Za-z0-9_.:-]+", key):  # Prometheus label names and more
                out.append(sa.func.json_extract(c.labels, f'$."{key}"') == value)
            else:  # a name a JSON path cannot quote: the pair in the search text
                out.append(c.search.like(f"%{_escape_like(pair.lower())}%", escape="/"))
        if self.since is not None:
            out.append(c.last_seen >= self.since)
        if self.until is not None:
            out.append(c.starts_at < self.until)
        if self.flapping is not None:
            out.append(c.flapping == self.flapping)
        if self.acked is not None:
            out.append(c.acked_at.is_not(None) if self.acked else c.acked_at.is_(None))
        return out


def _active() -> Any:
    """``tstzrange(LEAST(starts_at, last_seen), GREATEST(starts_at, last_seen), '[]')``: the
    expression of ``ix_alerts_active``, written the same way so the planner matches it."""
    c = ALERTS.c
    return sa.func.tstzrange(
        sa.func.least(c.starts_at, c.last_seen),
        sa.func.greatest(c.starts_at, c.last_seen),
        sa.literal_column("'[]'"),
    )


def _escape_like(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


class AlertHistory:
    """Queries and changes on one database (blocking: call from a thread on an event loop)."""

    def __init__(
        self, engine: Engine, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.engine = engine
        self.now = now

    # -- reading ----------------------------------------------------------------------------
    def get(self, alert_id: int) -> dict[str, Any]:
        """One occurrence; ``NotFound`` when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ALERTS).where(ALERTS.c.id == alert_id)).first()
        if row is None:
            raise NotFound(f"no alert {alert_id}", hint="list them with `llmgw alerts list`")
        return alert_record(row)

    def get_many(self, alert_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The occurrences of ``alert_ids`` that exist, in one query (the worker's batch)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ALERTS).where(ALERTS.c.id.in_(list(alert_ids)))).all()
        return {int(r.id): alert_record(r) for r in rows}

    def show(self, alert_id: int) -> dict[str, Any]:
        """One occurrence with its timeline and its jobs."""
        record = self.get(alert_id)
        with self.engine.connect() as conn:
            events = conn.execute(
                sa.select(EVENTS)
                .where(EVENTS.c.alert_id == alert_id)
                .order_by(EVENTS.c.at, EVENTS.c.id)
            ).all()
            jobs = conn.execute(
                sa.select(JOBS).where(JOBS.c.alert_id == alert_id).order_by(JOBS.c.id)
            ).all()
        record["timeline"] = [
            {"at": _iso(e.at), "kind": e.kind, "actor": e.actor, "detail": e.detail} for e in events
        ]
        record["jobs"] = [
            {
                "step": j.step,
                "state": j.state,
                "attempts": j.attempts,
                "run_after": _iso(j.run_after),
                "last_error": j.last_error,
            }
            for j in jobs
        ]
        from llmgw.alerts.publishers.records import publications

        record["publications"] = publications(self.engine, alert_id)
        return record

    def list(self, f: AlertFilter, *, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """Newest first (by last delivery): ``{"object": "list", "data", "next_cursor"}``."""
        f.check()
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"invalid limit: use 1 to {MAX_LIMIT}", param="limit")
        c = ALERTS.c
        where = f.where(self.engine.dialect.name)
        if cursor:
            when, ident = decode_cursor(cursor)
            where.append(sa.or_(c.last_seen < when, sa.and_(c.last_seen == when, c.id < ident)))
        stmt = (
            sa.select(ALERTS)
            .where(*where)
            .order_by(c.last_seen.desc(), c.id.desc())
            .limit(limit + 1)
        )
        if f.until is not None and self.engine.dialect.name == "postgresql":
            stmt = self._split_at_until(where, f.until, limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1].last_seen, rows[-1].id) if more and rows else None
        return {"object": "list", "data": [alert_record(r) for r in rows], "next_cursor": nxt}

    @staticmethod
    def _split_at_until(where: Sequence[sa.ColumnElement[bool]], until: datetime, n: int) -> Any:
        """The newest ``n`` of a listing that ends at ``until`` (PostgreSQL), in two parts that
        each stop after ``n`` rows: the occurrences still active at ``until`` (``ix_alerts_active``
        contains the instant: few), then those last seen before it (``ix_alerts_last_seen``
        backwards from ``until``). Walking ``last_seen`` back from now instead passed every
        newer occurrence first: 0.35-0.5 s for a day a week back on 1M."""
        c = ALERTS.c
        order = (c.last_seen.desc(), c.id.desc())
        at = sa.literal(until, c.last_seen.type)
        across = (
            sa.select(c.id, c.last_seen)
            .where(*where, c.last_seen >= until, _active().op("@>", return_type=sa.Boolean)(at))
            .order_by(*order)
            .limit(n)
        )
        before = sa.select(c.id, c.last_seen).where(*where, c.last_seen < until)
        both = sa.union_all(across, before.order_by(*order).limit(n)).subquery()
        top = (
            sa.select(both.c.id)
            .order_by(both.c.last_seen.desc(), both.c.id.desc())
            .limit(n)
            .subquery()
        )
        return sa.select(ALERTS).join(top, c.id == top.c.id).order_by(*order)

    def delivery(self, alert_id: int) -> dict[str, Any]:
        """The raw webhook delivery that last mentioned the occurrence."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(DELIVERIES)
                .join(ALERTS, ALERTS.c.last_delivery_id == DELIVERIES.c.id)
                .where(ALERTS.c.id == alert_id)
            ).first()
        if row is None:
            raise NotFound(f"no delivery kept for alert {alert_id}")
        return {
            "id": row.id,
            "received_at": _iso(row.received_at),
            "last_received_at": _iso(row.last_received_at),
            "copies": row.copies,
            "receiver": row.receiver,
            "group_key": row.group_key,
            "status": row.status,
            "external_url": row.external_url,
            "payload": row.payload,
        }

    def stats(self, *, since: datetime | None = None, by: str = "hour") -> dict[str, Any]:
        """Over the occurrences delivered since ``since`` (default: a day): counts by status,
        severity, category and classification; how many started per ``hour``/``day``; the
        fingerprints that fired most. Read from the hourly counts (``llmgw.alerts.summary``)."""
        if by not in ("hour", "day"):
            raise InvalidRequest("invalid by: hour or day", param="by")
        since = (since or self.now() - timedelta(days=1)).astimezone(UTC)
        out: dict[str, Any] = {"since": _iso(since), "by": by}
        with self.engine.connect() as conn:
            summarize(conn, since, by, out)
        return out

    # -- changing ---------------------------------------------------------------------------
    def _exists(self, conn: Connection, alert_id: int) -> None:
        if conn.execute(sa.select(ALERTS.c.id).where(ALERTS.c.id == alert_id)).first() is None:
            raise NotFound(f"no alert {alert_id}", hint="list them with `llmgw alerts list`")

    def ack(self, alert_id: int, actor: str, note: str | None = None) -> dict[str, Any]:
        """Acknowledge (idempotent: the first acknowledgement's time and person stay)."""
        now = self.now()
        with self.engine.begin() as conn:
            self._exists(conn, alert_id)
            done = conn.execute(
                sa.update(ALERTS)
                .where(ALERTS.c.id == alert_id, ALERTS.c.acked_at.is_(None))
                .values(acked_at=now, acked_by=actor[:320])
            )
            if done.rowcount:
                conn.execute(
                    sa.insert(EVENTS).values(
                        alert_id=alert_id, at=now, kind="acknowledged", actor=actor[:320],
                        detail={"note": note} if note else None,
                    )
                )  # fmt: skip
            if note:
                self._note(conn, alert_id, actor, note, now, event=not done.rowcount)
        return self.get(alert_id)

    def annotate(self, alert_id: int, actor: str, note: str) -> dict[str, Any]:
        """Set the occurrence's note (the timeline keeps every earlier one)."""
        if not note.strip():
            raise InvalidRequest("the note is empty", param="note")
        with self.engine.begin() as conn:
            self._exists(conn, alert_id)
            self._note(conn, alert_id, actor, note, self.now(), event=True)
        return self.get(alert_id)

    def _note(
        self, conn: Connection, alert_id: int, actor: str, note: str, now: datetime, *, event: bool
    ) -> None:
        note = note[:4000]
        conn.execute(sa.update(ALERTS).where(ALERTS.c.id == alert_id).values(note=note))
        if event:
            conn.execute(
                sa.insert(EVENTS).values(
                    alert_id=alert_id, at=now, kind="annotated", actor=actor[:320],
                    detail={"note": note},
                )
            )  # fmt: skip

    def reclassify(self, alert_id: int, actor: str) -> dict[str, Any]:
        """Queue a fresh classification (the cache is bypassed)."""
        now = self.now()
        with self.engine.begin() as conn:
            self._exists(conn, alert_id)
            upsert_job(conn, alert_id, "reclassify", now)
            conn.execute(
                sa.update(ALERTS).where(ALERTS.c.id == alert_id).values(cls_status="pending")
            )
            conn.execute(
                sa.insert(EVENTS).values(
                    alert_id=alert_id, at=now, kind="reclassify_requested", actor=actor[:320],
                    detail=None,
                )
            )  # fmt: skip
        return self.get(alert_id)

    def save_classification(
        self, alert_id: int, status: str, result: dict[str, Any] | None, error: str | None
    ) -> None:
        """Store one classification attempt's outcome and its timeline event (its own
        transaction; the worker writes it in the job's settling transaction instead)."""
        with self.engine.begin() as conn:
            self.write_classification(conn, alert_id, status, result, error)

    def write_classification(
        self,
        conn: Connection,
        alert_id: int,
        status: str,
        result: dict[str, Any] | None,
        error: str | None,
    ) -> None:
        """``save_classification`` on ``conn`` (in the caller's transaction).

        A failed attempt never replaces an earlier good result: the alert keeps it (and its
        status ``ok``) until a new attempt succeeds.
        """
        self.write_classifications(
            conn, [ClassificationWrite(self, alert_id, status, result, error)]
        )

    def write_classifications(self, conn: Connection, items: Sequence[ClassificationWrite]) -> None:
        """``write_classification`` for several occurrences at once: a statement per kind of
        outcome and one for the events, not two statements per occurrence (the worker settles
        a batch of jobs this way; issue 14). The events keep the order of ``items``."""
        if not items:
            return
        now = self.now()
        at = now.isoformat()
        results: list[dict[str, Any]] = []
        bare: list[dict[str, Any]] = []
        failed: dict[str, list[int]] = {}
        events: list[dict[str, Any]] = []
        for w in items:
            status, result = w.status, w.result
            if status in ("ok", "skipped"):
                if result is not None:
                    results.append({"b_id": w.alert_id, "b_status": status,
                                    "b_cls": {**result, "classified_at": at},
                                    "b_cat": result.get("category")})  # fmt: skip
                else:
                    bare.append({"b_id": w.alert_id, "b_status": status})
            else:
                failed.setdefault(status, []).append(w.alert_id)
            detail: dict[str, Any] = {"status": status}
            if result is not None:
                detail.update(
                    {k: result.get(k) for k in ("severity", "category", "model", "cache_hit")}
                )
            if w.error:
                detail["error"] = w.error
            events.append({
                "alert_id": w.alert_id, "at": now,
                "kind": "classified" if status in ("ok", "skipped") else "classification_failed",
                "actor": "llm" if status == "ok" else None, "detail": detail,
            })  # fmt: skip
        if results:
            conn.execute(_CLS_RESULT, results)
        if bare:
            conn.execute(_CLS_STATUS, bare)
        for status, ids in failed.items():  # a failed attempt never replaces a good result
            conn.execute(_CLS_FAILED, {"b_status": status, "b_ids": ids})
        conn.execute(_EVENTS_INSERT, events)


@dataclass(frozen=True, slots=True)
class ClassificationWrite:
    """One classification attempt's outcome to store (``AlertHistory.write_classifications``).
    Called with a connection it writes itself; the worker writes those of a settlement together."""

    history: AlertHistory
    alert_id: int
    status: str
    result: dict[str, Any] | None
    error: str | None

    def __call__(self, conn: Connection) -> None:
        self.history.write_classifications(conn, [self])


_C = ALERTS.c
_CLS_RESULT = (
    sa.update(ALERTS)
    .where(_C.id == sa.bindparam("b_id"))
    .values(
        cls_status=sa.bindparam("b_status"),
        classification=sa.bindparam("b_cls", type_=_C.classification.type),
        category=sa.bindparam("b_cat"),
    )
)
_CLS_STATUS = (
    sa.update(ALERTS)
    .where(_C.id == sa.bindparam("b_id"))
    .values(cls_status=sa.bindparam("b_status"))
)
_CLS_FAILED = (
    sa.update(ALERTS)
    .where(_C.id.in_(sa.bindparam("b_ids", expanding=True)), _C.cls_status != "ok")
    .values(cls_status=sa.bindparam("b_status"))
)
_EVENTS_INSERT = sa.insert(EVENTS)
