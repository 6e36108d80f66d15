"""The ``alert_publications`` rows: one per (occurrence, target, action), written before each
request (``sending``) and after its answer, plus the timeline events they add."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.alerts.store import EVENTS, _insert
from llmgw.storage.alert_tables import AlertPublication

__all__ = ["FINAL", "PUBLICATIONS", "begin", "load", "publications", "settle"]

PUBLICATIONS: sa.Table = AlertPublication.__table__  # type: ignore[attr-defined]
FINAL = frozenset({"sent", "failed", "unknown"})
"""States no attempt follows."""


def load(engine: Engine, alert_id: int, action: str) -> dict[str, Any]:
    """Target name -> its row for ``action`` of ``alert_id``."""
    c = PUBLICATIONS.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(PUBLICATIONS).where(c.alert_id == alert_id, c.action == action)
        ).all()
    return {r.target: r for r in rows}


def begin(
    engine: Engine, alert_id: int, target: str, target_type: str, action: str, now: datetime
) -> int:
    """Record that a request is about to go out (``sending``, one more attempt); the attempt's
    number. Committed before the request, so a crash leaves ``sending`` behind."""
    c = PUBLICATIONS.c
    with engine.begin() as conn:
        stmt = _insert(conn, PUBLICATIONS).values(
            alert_id=alert_id, target=target, target_type=target_type, action=action,
            state="sending", attempts=1, created_at=now, updated_at=now,
        )  # fmt: skip
        stmt = stmt.on_conflict_do_update(
            index_elements=["alert_id", "target", "action"],
            set_={"state": "sending", "attempts": c.attempts + 1, "updated_at": now,
                  "next_at": None},
        )  # fmt: skip
        conn.execute(stmt)
        return int(
            conn.execute(
                sa.select(c.attempts).where(
                    c.alert_id == alert_id, c.target == target, c.action == action
                )
            ).scalar_one()
        )


def settle(
    engine: Engine,
    alert_id: int,
    target: str,
    target_type: str,
    action: str,
    now: datetime,
    *,
    state: str,
    external_id: str | None = None,
    http_status: int | None = None,
    error: str | None = None,
    next_at: datetime | None = None,
) -> None:
    """Record an attempt's result; a final one also goes to the occurrence's timeline."""
    values: dict[str, Any] = {
        "state": state, "http_status": http_status, "error": error[:500] if error else None,
        "next_at": next_at, "updated_at": now,
    }  # fmt: skip
    if external_id is not None:
        values["external_id"] = external_id[:300]
    with engine.begin() as conn:
        stmt = _insert(conn, PUBLICATIONS).values(
            alert_id=alert_id, target=target, target_type=target_type, action=action,
            attempts=0, created_at=now, **values,
        )  # fmt: skip
        conn.execute(
            stmt.on_conflict_do_update(index_elements=["alert_id", "target", "action"], set_=values)
        )
        if state in FINAL:
            detail = {"target": target, "type": target_type, "action": action, "state": state}
            if external_id:
                detail["external_id"] = external_id
            if error:
                detail["error"] = error[:300]
            kind = "published" if state == "sent" else "publish_failed"
            conn.execute(
                sa.insert(EVENTS).values(
                    alert_id=alert_id, at=now, kind=kind, actor=None, detail=detail
                )
            )


def publications(engine: Engine, alert_id: int) -> list[dict[str, Any]]:
    """Every publication of ``alert_id`` as JSON-ready records (fire before resolve)."""
    c = PUBLICATIONS.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(PUBLICATIONS).where(c.alert_id == alert_id).order_by(c.id)
        ).all()
    return [
        {
            "target": r.target, "type": r.target_type, "action": r.action, "state": r.state,
            "external_id": r.external_id, "http_status": r.http_status, "attempts": r.attempts,
            "error": r.error, "next_at": _iso(r.next_at), "updated_at": _iso(r.updated_at),
        }
        for r in rows
    ]  # fmt: skip


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None
