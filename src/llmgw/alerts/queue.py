"""The durable job queue (``alert_jobs``): claim under a lease, finish, retry, give up.

On PostgreSQL a claim is one statement for the whole batch: an ``UPDATE ... RETURNING`` of the
due rows (pending and due, or running with an expired lease) picked by a materialised ``WITH``
sub-select ``FOR UPDATE SKIP LOCKED``, so two workers (two instances, or two processes) never run
the same job: rows another worker is claiming are skipped, not waited for, and the update
re-checks that each row is still due. Elsewhere (SQLite, whose writes are serialised anyway) it is
a conditional ``UPDATE`` per candidate row. A worker that dies mid-job leaves the row ``running``;
its lease runs out and another worker takes it over (``attempts`` counts every claim, so a job
that crashes its worker every time still reaches ``alerts.max_attempts``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmgw.alerts.store import JOBS, upsert_job

__all__ = ["ClaimedJob", "JobQueue"]


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker holds until ``lease_until``."""

    id: int
    alert_id: int
    step: str
    attempts: int
    """Claims so far, this one included."""


class JobQueue:
    """Operations on ``alert_jobs`` for one worker (``owner``)."""

    def __init__(
        self,
        engine: Engine,
        *,
        owner: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.owner = owner or f"w-{uuid.uuid4().hex[:12]}"
        self.now = now

    def claim(self, limit: int, lease_seconds: float) -> list[ClaimedJob]:
        """Up to ``limit`` due jobs, now leased to this worker for ``lease_seconds``."""
        now = self.now()
        c = JOBS.c
        due = sa.or_(
            sa.and_(c.state == "pending", c.run_after <= now),
            sa.and_(c.state == "running", c.lease_until < now),
        )
        until = now + timedelta(seconds=lease_seconds)
        values = {
            "state": "running",
            "lease_owner": self.owner,
            "lease_until": until,
            "attempts": c.attempts + 1,
            "updated_at": now,
        }
        if self.engine.dialect.name == "postgresql":
            pick = (
                sa.select(c.id)
                .where(due)
                .order_by(c.run_after, c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .cte("pick")
                .prefix_with("MATERIALIZED")  # run once: ``IN (sub-select)`` may re-run it
            )
            with self.engine.begin() as conn:
                rows = conn.execute(
                    sa.update(JOBS)
                    .where(c.id == pick.c.id, due)
                    .values(**values)
                    .returning(c.id, c.alert_id, c.step, c.attempts, c.run_after)
                ).all()
            got = sorted(rows, key=lambda r: (r.run_after, r.id))
            return [ClaimedJob(int(r.id), int(r.alert_id), r.step, int(r.attempts)) for r in got]
        claimed: list[ClaimedJob] = []
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(c.id, c.alert_id, c.step, c.attempts)
                .where(due)
                .order_by(c.run_after, c.id)
                .limit(limit)
            ).all()
            for r in rows:
                done = conn.execute(sa.update(JOBS).where(c.id == r.id, due).values(**values))
                if done.rowcount:
                    claimed.append(ClaimedJob(int(r.id), int(r.alert_id), r.step, r.attempts + 1))
        return claimed

    def _settle(self, job: ClaimedJob, **values: object) -> bool:
        with self.engine.begin() as conn:
            return self._settle_in(conn, job, **values)

    def _settle_in(self, conn: Connection, job: ClaimedJob, **values: object) -> bool:
        c = JOBS.c
        done = conn.execute(
            sa.update(JOBS)
            .where(c.id == job.id, c.lease_owner == self.owner, c.state == "running")
            .values(lease_owner=None, lease_until=None, updated_at=self.now(), **values)
        )
        return bool(done.rowcount)

    def settle_in(
        self, conn: Connection, job: ClaimedJob, state: str, error: str | None = None,
        delay: float = 0.0, refund: bool = False,
    ) -> bool:  # fmt: skip
        """Settle ``job`` on ``conn`` (the caller's transaction): ``done``, ``pending`` again
        after ``delay`` seconds (a retry; ``refund``: this claim does not count as an attempt)
        or ``failed``; False if its lease was lost."""
        if state == "pending":
            when = self.now() + timedelta(seconds=delay)
            extra = {"attempts": JOBS.c.attempts - 1} if refund else {}
            return self._settle_in(conn, job, state=state, run_after=when,
                                   last_error=(error or "")[:500], **extra)  # fmt: skip
        return self._settle_in(conn, job, state=state, last_error=error[:500] if error else None)

    def follow_up_in(self, conn: Connection, alert_id: int, steps: tuple[str, ...]) -> None:
        """Queue each of ``steps`` for ``alert_id`` on ``conn`` unless it was queued before."""
        now = self.now()
        for step in steps:
            exists = conn.execute(
                sa.select(JOBS.c.id).where(JOBS.c.alert_id == alert_id, JOBS.c.step == step)
            ).first()
            if exists is None:
                conn.execute(
                    sa.insert(JOBS).values(
                        alert_id=alert_id, step=step, state="pending", attempts=0,
                        run_after=now, created_at=now, updated_at=now,
                    )
                )  # fmt: skip

    def finish(self, job: ClaimedJob) -> bool:
        """The job is done (False if its lease was lost to another worker meanwhile)."""
        return self._settle(job, state="done", last_error=None)

    def retry(self, job: ClaimedJob, error: str, delay: float) -> bool:
        """Run the job again after ``delay`` seconds."""
        when = self.now() + timedelta(seconds=delay)
        return self._settle(job, state="pending", run_after=when, last_error=error[:500])

    def give_up(self, job: ClaimedJob, error: str) -> bool:
        """No more automatic attempts (re-queued on demand, e.g. re-classify)."""
        return self._settle(job, state="failed", last_error=error[:500])

    def enqueue(self, alert_id: int, step: str) -> None:
        """Queue ``step`` for ``alert_id`` now (again, if it ran before)."""
        with self.engine.begin() as conn:
            upsert_job(conn, alert_id, step, self.now())

    def depth(self) -> dict[str, int]:
        """Jobs per state that still need work or attention (pending, running, failed)."""
        c = JOBS.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.state, sa.func.count())
                .where(c.state.in_(("pending", "running", "failed")))
                .group_by(c.state)
            ).all()
        out = dict.fromkeys(("pending", "running", "failed"), 0)
        out.update({str(state): int(n) for state, n in rows})
        return out
