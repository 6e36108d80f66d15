"""Publishing as steps of the alert job queue: ``publish`` (fire) and ``publish_resolve``.

``publish`` is queued after an occurrence's first classification attempt (so it never waits on
the LLM), ``publish_resolve`` when the occurrence resolves; the resolve goes to every target the
fire went to, after the fire is settled there. Each (occurrence, target, action) is one row of
``alert_publications``:

1. a row that is ``sent``, ``failed`` or ``unknown`` is done;
2. before a request the row becomes ``sending`` (committed), after the answer ``sent``,
   ``retrying`` (with ``next_at``), or ``failed``;
3. a row found ``sending`` means the process stopped mid-request (``kill -9``): where the
   target deduplicates (PagerDuty's ``dedup_key``, a Rootly resolve) the request is sent again;
   otherwise the target is asked whether it has it (Rootly's alert list, Slack's channel
   history via the message metadata) and it is sent only if not; a target that cannot be asked
   (a Slack webhook) leaves the row ``unknown``: never a second message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.alerts.publishers import records
from llmgw.alerts.publishers.base import Action, Outcome, Publisher, TokenBucket, jittered
from llmgw.alerts.publishers.targets import LiveTarget, TargetSet
from llmgw.alerts.queue import ClaimedJob
from llmgw.alerts.stats import AlertStats
from llmgw.alerts.store import JOBS
from llmgw.alerts.worker import Done, Retry, StepResult
from llmgw.config import AlertsSettings
from llmgw.errors import NotFound

if TYPE_CHECKING:
    import httpx

__all__ = ["PublishStep", "Publishing", "dedup_key"]

log = logging.getLogger("llmgw.alerts")

_DEFAULT_RPM = {"slack": 60.0, "pagerduty": 120.0, "rootly": 3000.0}
_MAX_WAIT = 5.0
"""Longest rate-limit wait inside a step; a longer one re-queues the job."""


def dedup_key(alert: dict[str, Any]) -> str:
    """``am-<fingerprint>-<startsAt as Unix seconds>``: one key per occurrence, so a re-fire
    after a resolve opens a new incident while retries and crashes never do."""
    starts = alert.get("starts_at")
    stamp = int(datetime.fromisoformat(starts).timestamp()) if starts else 0
    return f"am-{alert['fingerprint']}-{stamp}"


class Publishing:
    """The targets, one publisher and one rate bucket per target, and the HTTP client."""

    def __init__(
        self,
        engine: Engine,
        settings: AlertsSettings,
        stats: AlertStats,
        *,
        client: httpx.AsyncClient | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.stats = stats
        self.targets = TargetSet(settings.targets, settings.routes)
        self._client = client
        self.now = now
        self._publishers: dict[str, tuple[str, Publisher, TokenBucket]] = {}
        self._inflight: set[tuple[int, str, str]] = set()
        self.wake: Callable[[], None] = lambda: None
        """Tells the worker to look at the queue now (set by the server)."""

    def parts(self, live: LiveTarget) -> tuple[Publisher, TokenBucket]:
        """``live``'s publisher and rate bucket (new ones when its data changed)."""
        have = self._publishers.get(live.name)
        if have is not None and have[0] == live.digest:
            return have[1], have[2]
        t = live.target
        pub: Publisher
        # Here, not at the top: the publishers need httpx (with its CLI, rich and pygments: about
        # 0.1 s of start-up), which a gateway that publishes nothing never loads.
        if t.type == "pagerduty":
            from llmgw.alerts.publishers.pagerduty import PagerDutyPublisher

            pub = PagerDutyPublisher(t, self.client)
        elif t.type == "rootly":
            from llmgw.alerts.publishers.rootly import RootlyPublisher

            pub = RootlyPublisher(t, self.client)
        else:
            from llmgw.alerts.publishers.slack import SlackPublisher

            pub = SlackPublisher(t, self.client)
        rpm = t.rate_per_minute or _DEFAULT_RPM[t.type]
        bucket = TokenBucket(rpm / 60.0, burst=max(1.0, min(5.0, rpm / 60.0)))
        self._publishers[live.name] = (live.digest, pub, bucket)
        return pub, bucket

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client, made on first use (a TLS context costs start-up time and memory
        that a gateway without targets never needs)."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                timeout=self.settings.publish_timeout, follow_redirects=False
            )
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()

    def describe(self) -> dict[str, Any]:
        """Every target in effect (no credential), and the discovered entries refused."""
        return {
            "object": "list",
            "data": [live.describe() for live in self.targets.all()],
            "refused": dict(self.targets.problems),
        }

    async def test(self, name: str) -> dict[str, Any]:
        """Publish a test alert (``LlmgwPublishTest``, severity info) to the target ``name``,
        then resolve it; nothing is recorded in the history. ``NotFound`` without such a target."""
        live = self.targets.get(name)
        if live is None:
            raise NotFound(
                f"no publishing target {name!r}", hint="list them with `llmgw alerts targets`"
            )
        from llmgw.alerts.modes import present
        from llmgw.alerts.payload import am_fingerprint

        labels = {"alertname": "LlmgwPublishTest", "severity": "info", "instance": "llmgw"}
        now = self.now().replace(microsecond=0)
        alert: dict[str, Any] = {
            "id": 0, "fingerprint": am_fingerprint(labels), "alertname": labels["alertname"],
            "status": "firing", "severity": "info", "labels": labels, "source": "llmgw",
            "annotations": {"summary": f"test publication to {name} from llmgw"},
            "starts_at": now.isoformat(), "ends_at": None, "generator_url": "",
            "classification": {"status": "skipped"},
        }  # fmt: skip
        pub, _bucket = self.parts(live)
        key = dedup_key(alert)
        view = present(alert, "transparent")
        out: dict[str, Any] = {"target": name, "type": live.target.type, "dedup_key": key}
        fired = await pub.fire(alert, view, key)
        out["fire"] = _outcome(fired)
        if fired.kind == "sent":
            alert.update(status="resolved", ends_at=self.now().isoformat())
            out["resolve"] = _outcome(
                await pub.resolve(alert, present(alert, "transparent"), key, fired.external_id)
            )
        ok = all(
            part["state"] == "sent" for part in (out["fire"], out.get("resolve", {"state": "x"}))
        )
        out["ok"] = ok
        if ok:
            live.last_ok = self.now()
        else:
            live.last_error = (out.get("resolve") or out["fire"])["error"] or out["fire"]["error"]
            live.last_error_at = self.now()
        return out

    async def send(
        self,
        alert: dict[str, Any],
        live: LiveTarget,
        mode: str,
        action: Action,
        row: Any,
        fired: str | None,
    ) -> float | None:
        """One publication's next step; ``None`` when it is settled, else seconds until it is
        due again."""
        name, aid = live.name, int(alert["id"])
        if row is not None and row.state in records.FINAL:
            return None
        now = self.now()
        if live.disabled:
            await self._settle(
                aid, live, action, "failed", error=f"target disabled: {live.disabled}"
            )
            return None
        if row is not None and row.state == "retrying" and row.next_at and row.next_at > now:
            return float((row.next_at - now).total_seconds())
        flight = (aid, name, action)
        if flight in self._inflight:
            return 1.0
        self._inflight.add(flight)
        try:
            return await self._send(alert, live, mode, action, row, fired)
        finally:
            self._inflight.discard(flight)

    async def _send(
        self,
        alert: dict[str, Any],
        live: LiveTarget,
        mode: str,
        action: Action,
        row: Any,
        fired: str | None,
    ) -> float | None:
        from llmgw.alerts.modes import present

        pub, bucket = self.parts(live)
        key = dedup_key(alert)
        aid = int(alert["id"])
        view = present(alert, mode)
        if row is not None and row.state == "sending" and action not in pub.idempotent:
            found = await pub.find(action, key, fired)
            if found is None:
                await self._settle(aid, live, action, "unknown", error=(
                    "the process stopped during an earlier request and this target cannot be"
                    " asked whether it arrived: not sent again"))  # fmt: skip
                return None
            if found.kind == "sent":
                await self._settle(aid, live, action, "sent", found)
                return None
        wait = bucket.reserve()
        if wait > _MAX_WAIT:
            bucket.give_back()
            return wait
        if wait > 0:
            await asyncio.sleep(wait)
        attempts = await asyncio.to_thread(
            records.begin, self.engine, aid, live.name, live.target.type, action, self.now()
        )
        try:
            if action == "fire":
                out = await pub.fire(alert, view, key)
            else:
                out = await pub.resolve(alert, view, key, fired)
        except Exception as exc:  # noqa: BLE001 - a bug or odd answer: retried, never lost
            log.exception("publishing alert %s to %s failed", aid, live.name)
            out = Outcome("retry", None, error=f"internal error: {type(exc).__name__}")
        s = self.settings
        if out.kind == "retry" and attempts >= s.publish_max_attempts:
            out = Outcome("failed", out.status, out.external_id,
                          f"gave up after {attempts} attempts: {out.error}")  # fmt: skip
        if out.kind == "retry":
            delay = max(
                out.retry_after or 0.0, jittered(s.publish_backoff, s.publish_backoff_max, attempts)
            )
            await self._settle(aid, live, action, "retrying", out,
                               next_at=self.now() + timedelta(seconds=delay))  # fmt: skip
            return delay
        if out.kind == "disable":
            self.targets.disable(live, out.error or "gone")
        state = "sent" if out.kind == "sent" else "failed"
        await self._settle(aid, live, action, state, out)
        return None

    async def _settle(
        self,
        aid: int,
        live: LiveTarget,
        action: Action,
        state: str,
        out: Outcome | None = None,
        *,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> None:
        now = self.now()
        err = error or (out.error if out else None)
        await asyncio.to_thread(
            records.settle, self.engine, aid, live.name, live.target.type, action, now,
            state=state, external_id=out.external_id if out else None,
            http_status=out.status if out else None, error=err, next_at=next_at,
        )  # fmt: skip
        result = {"sent": "sent", "retrying": "retry", "unknown": "unknown"}.get(state, "failed")
        if out is not None and out.kind == "disable":
            result = "disabled"
        k = (live.target.type, result)
        self.stats.publications[k] = self.stats.publications.get(k, 0) + 1
        if state == "sent":
            live.last_ok = now
            live.counts["sent"] += 1
        else:
            live.last_error, live.last_error_at = err, now
            live.counts["retry" if state == "retrying" else "failed"] += 1
            if state != "retrying":
                log.warning("alert %s: %s to %s %s: %s", aid, action, live.name, state, err)


def _outcome(out: Outcome) -> dict[str, Any]:
    state = {"sent": "sent", "retry": "retryable", "disable": "gone"}.get(out.kind, "failed")
    return {"state": state, "http_status": out.status, "external_id": out.external_id,
            "error": out.error}  # fmt: skip


class PublishStep:
    """The ``publish`` (``action="fire"``) or ``publish_resolve`` job of one occurrence."""

    def __init__(self, publishing: Publishing, history: Any, action: Action) -> None:
        self.publishing = publishing
        self.history = history
        self.action: Action = action

    def idle(self) -> bool:
        """Nowhere to publish: the worker does not queue ``publish`` after a classification
        (a job that would find no target anyway)."""
        return not self.publishing.targets.all()

    async def __call__(self, job: ClaimedJob) -> StepResult:
        """One pass over the occurrence's targets."""
        from llmgw.alerts.modes import present

        p = self.publishing
        if not p.targets.all():
            return Done()  # nowhere to publish (the common case without targets): no reads
        try:
            alert = await asyncio.to_thread(self.history.get, job.alert_id)
        except NotFound:
            return Done()
        jobs: list[tuple[LiveTarget, str, Any, str | None]] = []
        if self.action == "fire":
            rows = await asyncio.to_thread(records.load, p.engine, job.alert_id, "fire")
            routed = p.targets.route(alert, lambda m: present(alert, m), p.settings.mode)
            jobs = [(live, mode, rows.get(live.name), None) for live, mode in routed]
        else:
            waiting = await asyncio.to_thread(self._fire_pending, job.alert_id)
            if waiting:
                return Retry("waiting for the fire to be published", 1.0)
            fired = await asyncio.to_thread(records.load, p.engine, job.alert_id, "fire")
            done = await asyncio.to_thread(records.load, p.engine, job.alert_id, "resolve")
            for name, frow in fired.items():
                if frow.state not in ("sent", "unknown"):
                    continue  # never published there: nothing to resolve
                live = p.targets.get(name)
                if live is None:
                    continue  # the target is gone
                jobs.append(
                    (live, live.target.mode or p.settings.mode, done.get(name), frow.external_id)
                )
        delays = await asyncio.gather(
            *(p.send(alert, live, mode, self.action, row, ext) for live, mode, row, ext in jobs)
        )
        pending = [d for d in delays if d is not None]
        if not pending:
            if self.action == "fire" and alert.get("status") == "resolved":
                await asyncio.to_thread(self._resolve_now, job.alert_id)
            return Done()
        return Retry("publications still retrying", max(0.2, min(pending)))

    def _resolve_now(self, alert_id: int) -> None:
        """The fire is settled: a resolve waiting for it is due now (and the worker looks)."""
        c = JOBS.c
        with self.publishing.engine.begin() as conn:
            conn.execute(
                sa.update(JOBS)
                .where(c.alert_id == alert_id, c.step == "publish_resolve", c.state == "pending")
                .values(run_after=self.publishing.now())
            )
        self.publishing.wake()

    def _fire_pending(self, alert_id: int) -> bool:
        """Whether the fire may still be published (its job is queued or running, or its rows
        are not settled)."""
        c = JOBS.c
        with self.publishing.engine.connect() as conn:
            states = dict(
                conn.execute(
                    sa.select(c.step, c.state).where(
                        c.alert_id == alert_id, c.step.in_(("classify", "publish"))
                    )
                ).all()
            )
        fire = states.get("publish")
        if fire is None:
            return states.get("classify") in ("pending", "running")
        if fire in ("pending", "running"):
            return True
        rows = records.load(self.publishing.engine, alert_id, "fire")
        return any(r.state not in records.FINAL for r in rows.values())
