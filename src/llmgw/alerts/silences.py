"""Silence-aware history: which firing occurrences Alertmanager silences or inhibits.

A webhook never says so: Alertmanager simply stops notifying a silenced alert (its resolution
included). So every ``alerts.silence_interval`` the worker asks each of ``alerts.alertmanager_urls``
(API v2: ``GET /api/v2/alerts?active=false&silenced=true&inhibited=true`` for the suppressed
alerts, ``GET /api/v2/silences`` for who silenced them, until when and why) and writes the
answer on the firing occurrence with the same (fingerprint, ``startsAt``) as ``suppressed``:
``{"state": "silenced" | "inhibited", "silenced_by": [{id, created_by, comment, ends_at}],
"inhibited_by": [fingerprint...], "checked_at"}`` (``startsAt`` compared to the millisecond:
the API rounds what the webhook sends in nanoseconds). A firing occurrence no longer suppressed
gets ``None`` back. Changes go to the timeline (``silenced``, ``unsilenced``). When no
Alertmanager answers nothing changes (no answer is not "nothing is silenced").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.alerts.payload import _time
from llmgw.alerts.store import ALERTS, EVENTS
from llmgw.errors import InvalidRequest
from llmgw.tasks import stop_task

__all__ = ["SilenceSync"]

log = logging.getLogger("llmgw.alerts")


class SilenceSync:
    """One look at Alertmanager's suppressed alerts, written onto the history."""

    def __init__(
        self,
        engine: Engine,
        urls: Sequence[str],
        *,
        timeout: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout = timeout
        self.now = now
        self._failing: set[str] = set()

    def fetch(self) -> dict[tuple[str, datetime], dict[str, Any]] | None:
        """(fingerprint, startsAt) -> what suppresses it, over every Alertmanager that answered;
        ``None`` when none did."""
        found: dict[tuple[str, datetime], dict[str, Any]] = {}
        answered = False
        with httpx.Client(timeout=self.timeout) as http:
            for url in self.urls:
                try:
                    alerts = http.get(
                        f"{url}/api/v2/alerts",
                        params={"active": "false", "silenced": "true", "inhibited": "true",
                                "unprocessed": "false"},
                    )  # fmt: skip
                    alerts.raise_for_status()
                    silences = http.get(f"{url}/api/v2/silences")
                    silences.raise_for_status()
                    items, known = alerts.json(), silences.json()
                except (httpx.HTTPError, ValueError) as exc:
                    if url not in self._failing:  # the URL may carry credentials: never logged
                        log.warning("alertmanager #%d of alerts.alertmanager_urls: %s",
                                    self.urls.index(url) + 1, type(exc).__name__)  # fmt: skip
                    self._failing.add(url)
                    continue
                self._failing.discard(url)
                answered = True
                by_id = {s.get("id"): s for s in known if isinstance(s, dict)}
                for item in items if isinstance(items, list) else []:
                    self._merge(found, item, by_id)
        return found if answered else None

    @staticmethod
    def _merge(
        found: dict[tuple[str, datetime], dict[str, Any]],
        item: Any,
        silences: dict[Any, dict[str, Any]],
    ) -> None:
        if not isinstance(item, dict):
            return
        status = item.get("status") or {}
        silenced, inhibited = status.get("silencedBy") or [], status.get("inhibitedBy") or []
        if status.get("state") != "suppressed" or not (silenced or inhibited):
            return
        try:
            starts = _time(item.get("startsAt"), "startsAt")
        except InvalidRequest:
            return
        fp = item.get("fingerprint")
        if not isinstance(fp, str) or starts is None:
            return
        entry = found.setdefault((fp, starts), {"state": "", "silenced_by": [], "inhibited_by": []})
        for sid in silenced:
            if any(s["id"] == sid for s in entry["silenced_by"]):
                continue  # the other Alertmanager of the pair knows it too
            s = silences.get(sid, {})
            entry["silenced_by"].append({
                "id": sid, "created_by": s.get("createdBy"), "comment": s.get("comment"),
                "ends_at": s.get("endsAt"),
            })  # fmt: skip
        for fp_by in inhibited:
            if fp_by not in entry["inhibited_by"]:
                entry["inhibited_by"].append(fp_by)
        entry["state"] = "silenced" if entry["silenced_by"] else "inhibited"

    def apply(self, found: dict[tuple[str, datetime], dict[str, Any]]) -> dict[str, int]:
        """Write ``found`` onto the firing occurrences; counts of ``silenced`` and ``unsilenced``."""
        now = self.now()
        c = ALERTS.c
        out = {"silenced": 0, "unsilenced": 0, "updated": 0}
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(c.id, c.fingerprint, c.starts_at, c.suppressed).where(
                    c.status == "firing",
                    sa.or_(
                        c.suppressed.is_not(None),
                        c.fingerprint.in_({fp for fp, _ in found}) if found else sa.false(),
                    ),
                )
            ).all()  # fmt: skip
            events: list[dict[str, Any]] = []
            for r in rows:
                new = found.get((r.fingerprint, _ms(r.starts_at)))
                old = r.suppressed
                if new is None and old is None:
                    continue
                if new is not None and old is not None and _same(new, old):
                    continue
                # sa.null(): a JSON column would store None as the JSON text 'null'
                value = sa.null() if new is None else {**new, "checked_at": now.isoformat()}
                conn.execute(sa.update(ALERTS).where(c.id == r.id).values(suppressed=value))
                if new is None:
                    out["unsilenced"] += 1
                    kind, detail = "unsilenced", None
                elif old is None:
                    out["silenced"] += 1
                    kind, detail = (
                        "silenced",
                        {k: new[k] for k in ("state", "silenced_by", "inhibited_by")},
                    )
                else:
                    out["updated"] += 1
                    continue
                events.append({"alert_id": r.id, "at": now, "kind": kind, "actor": "alertmanager",
                               "detail": detail})  # fmt: skip
            if events:
                conn.execute(sa.insert(EVENTS), events)
        return out

    def run_once(self) -> dict[str, int] | None:
        """Ask, then write; ``None`` when no Alertmanager answered (nothing changed)."""
        found = self.fetch()
        return None if found is None else self.apply(found)

    async def run(self, interval: float) -> None:
        """``run_once`` in a thread every ``interval`` seconds until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database may be down: next time
                log.warning("silence sync: %s (retrying)", type(exc).__name__)
            await asyncio.sleep(interval)

    def start(self, interval: float) -> None:
        """Run ``run`` as a task on the current event loop."""
        self._task = asyncio.get_running_loop().create_task(
            self.run(interval), name="llmgw-alert-silences"
        )

    async def aclose(self) -> None:
        """Stop the task (a look in progress finishes in its thread)."""
        task = getattr(self, "_task", None)
        if task is not None:
            await stop_task(task, 10.0, "the silence watcher")


def _ms(when: datetime) -> datetime:
    """``when`` to the millisecond: the API gives milliseconds, the webhook nanoseconds."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("state", "silenced_by", "inhibited_by")
    return all(a.get(k) == b.get(k) for k in keys)
