"""The durable job queue (``alert_jobs``): claim under a lease, finish, retry, give up.

On PostgreSQL a claim is one statement for the whole batch: an ``UPDATE ... RETURNING`` of the
due rows (pending and due, or running with an expired lease) picked by a materialised ``WITH``
sub-select ``FOR UPDATE SKIP LOCKED``, so two workers (two instances, or two processes) never run
the same job: rows another worker is claiming are skipped, not waited for, and the update
re-checks that each row is still due; a lock held on the table by another session (DDL) is
waited for at most ``CLAIM_LOCK_TIMEOUT``, then the claim fails and is tried again. Elsewhere (SQLite, whose writes are serialised anyway) it is
a conditional ``UPDATE`` per candidate row. A worker that dies mid-job leaves the row ``running``;
its lease runs out and another worker takes it over (``attempts`` counts every claim, so a job
that crashes its worker every time still reaches ``alerts.max_attempts``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmgw.alerts.store import ALERTS, JOBS, upsert_job

__all__ = ["ClaimedJob", "JobQueue", "no_flush_wait"]


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker holds until ``lease_until``."""

    id: int
    alert_id: int
    step: str
    attempts: int
    """Claims so far, this one included."""


_DEFER_PG = (
    "UPDATE alert_jobs j SET run_after = v.ra, last_error = %(error)s, updated_at = %(now)s"
    " FROM unnest(%(ids)s::bigint[], %(whens)s::timestamptz[]) AS v(id, ra)"
    " WHERE j.id = v.id AND j.state = 'pending' AND j.run_after <= %(now)s"
)
_SETTLE_PG = (
    "UPDATE alert_jobs j SET state = v.st, last_error = v.err,"
    " run_after = COALESCE(v.ra, j.run_after), attempts = j.attempts - v.rf,"
    " lease_owner = NULL, lease_until = NULL, updated_at = %(now)s"
    " FROM unnest(%(ids)s::bigint[], %(states)s::text[], %(whens)s::timestamptz[],"
    " %(errors)s::text[], %(refunds)s::int[]) AS v(id, st, ra, err, rf)"
    " WHERE j.id = v.id AND j.lease_owner = %(owner)s AND j.state = 'running'"
)


CLAIM_LOCK_TIMEOUT = "2s"
"""How long a claim on PostgreSQL waits for a lock another session holds on ``alert_jobs`` (a
migration's ``ALTER TABLE``, a ``CREATE INDEX``, a ``LOCK TABLE``; rows other workers are
claiming are skipped, never waited for). Past it the claim fails (``LockNotAvailable``): the
worker counts the error and claims again at its next look at the queue instead of hanging."""


def _claiming(conn: Connection) -> None:
    """``no_flush_wait`` and ``CLAIM_LOCK_TIMEOUT`` for a claim's transaction, in one round trip."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"SET LOCAL synchronous_commit = off; SET LOCAL lock_timeout = '{CLAIM_LOCK_TIMEOUT}'"
        )


def no_flush_wait(conn: Connection) -> None:
    """This transaction's commit does not wait for its WAL to reach the disk (PostgreSQL's
    ``synchronous_commit = off``, for this transaction only). For the worker's claims and
    settlements: a crash of PostgreSQL can lose only the last fraction of a second of them, which
    leaves a job pending or leased as before (claimed again, or taken over when its lease runs
    out), never an alert lost; the webhook's deliveries still commit durably before their 2xx.
    Their commits stop queueing for the disk beside the deliveries' (issue 14)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")


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

    def claim(
        self, limit: int, lease_seconds: float, steps: tuple[str, ...] | None = None,
        skip_new: str | None = None,
    ) -> list[ClaimedJob]:  # fmt: skip
        """Up to ``limit`` due jobs (of ``steps`` only, when given; without the never tried
        jobs of step ``skip_new``), now leased to this worker for ``lease_seconds``."""
        now = self.now()
        c = JOBS.c
        only: tuple[sa.ColumnElement[bool], ...] = ()
        if steps is not None:
            only += (c.step.in_(steps),)
        if skip_new is not None:
            only += (sa.not_(sa.and_(c.step == skip_new, c.last_error.is_(None))),)
        due = sa.or_(
            sa.and_(c.state == "pending", c.run_after <= now, *only),
            sa.and_(c.state == "running", c.lease_until < now, *only),
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
            # Each kind of due row picked by its own range of ``(state, run_after)``, then the
            # first ``limit`` of both: one ``OR`` of the two made PostgreSQL read and sort every
            # pending row, 45 ms of its CPU per claim behind a backlog of 50,000 (issue 14).
            kinds = [
                sa.select(c.id, c.run_after)
                .where(*where)
                .order_by(c.run_after, c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .subquery()
                for where in (
                    (c.state == "pending", c.run_after <= now, *only),
                    (c.state == "running", c.lease_until < now, *only),
                )
            ]
            both = sa.union_all(*(sa.select(k.c.id, k.c.run_after) for k in kinds)).subquery()
            pick = (
                sa.select(both.c.id)
                .order_by(both.c.run_after, both.c.id)
                .limit(limit)
                .cte("pick")
                .prefix_with("MATERIALIZED")  # run once: ``IN (sub-select)`` may re-run it
            )
            with self.engine.begin() as conn:
                _claiming(conn)
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

    def peek_new(self, step: str, limit: int) -> list[tuple[int, dict[str, str]]]:
        """Up to ``limit`` due jobs of ``step`` never tried yet (no attempt, no error), oldest
        first, as (job id, the occurrence's labels); nothing is locked or changed."""
        c = JOBS.c
        rows = (
            sa.select(c.id, ALERTS.c.labels)
            .join(ALERTS, ALERTS.c.id == c.alert_id)
            .where(
                c.state == "pending",
                c.run_after <= self.now(),
                c.step == step,
                c.attempts == 0,
                c.last_error.is_(None),
            )  # fmt: skip
            .order_by(c.run_after, c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(int(r.id), r.labels or {}) for r in conn.execute(rows)]

    def defer_many(self, deferrals: list[tuple[int, float]], error: str) -> None:
        """Each pending, due job (id, delay) of ``deferrals`` waits ``delay`` seconds more with
        ``error`` noted, unclaimed and without an attempt; a job another worker claimed or
        deferred meanwhile is left as it is."""
        if not deferrals:
            return
        c = JOBS.c
        now = self.now()
        rows = [{"b_id": i, "b_when": now + timedelta(seconds=d)} for i, d in deferrals]
        with self.engine.begin() as conn:
            no_flush_wait(conn)
            if conn.dialect.name == "postgresql":  # one statement for all (arrays)
                raw: Any = conn.connection.driver_connection
                with raw.cursor() as cur:
                    cur.execute(_DEFER_PG, {"ids": [r["b_id"] for r in rows],
                                            "whens": [r["b_when"] for r in rows],
                                            "error": error[:500], "now": now}, prepare=True)  # fmt: skip
                return
            conn.execute(
                sa.update(JOBS)
                .where(c.id == sa.bindparam("b_id"), c.state == "pending", c.run_after <= now)
                .values(run_after=sa.bindparam("b_when"), last_error=error[:500], updated_at=now),
                rows,
            )

    def claim_ids(self, ids: list[int], lease_seconds: float) -> list[ClaimedJob]:
        """The jobs of ``ids`` that are still pending and due, now leased to this worker."""
        if not ids:
            return []
        c = JOBS.c
        now = self.now()
        with self.engine.begin() as conn:
            _claiming(conn)
            rows = conn.execute(
                sa.update(JOBS)
                .where(c.id.in_(ids), c.state == "pending", c.run_after <= now)
                .values(
                    state="running",
                    lease_owner=self.owner,
                    lease_until=now + timedelta(seconds=lease_seconds),
                    attempts=c.attempts + 1,
                    updated_at=now,
                )  # fmt: skip
                .returning(c.id, c.alert_id, c.step, c.attempts, c.run_after)
            ).all()
        got = sorted(rows, key=lambda r: (r.run_after, r.id))
        return [ClaimedJob(int(r.id), int(r.alert_id), r.step, int(r.attempts)) for r in got]

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

    def settle_many_in(
        self, conn: Connection, settlements: list[tuple[ClaimedJob, str, str | None, float, bool]]
    ) -> None:
        """``settle_in`` for each (job, state, error, delay, refund) of ``settlements``, one
        ``executemany`` per kind of settlement (done or failed; pending; pending refunded)
        instead of a statement per job: a backlog refused by ``alerts.rpm`` settles a batch of
        jobs in one to three round trips (issue 14)."""
        if not settlements:
            return
        c = JOBS.c
        now = self.now()
        if conn.dialect.name == "postgresql":
            self._settle_pg(conn, settlements, now)
            return
        groups: dict[tuple[bool, bool], list[dict[str, object]]] = {}
        for job, state, error, delay, refund in settlements:
            pending = state == "pending"
            row: dict[str, object] = {"b_id": job.id, "b_state": state}
            if pending:
                row["b_run_after"] = now + timedelta(seconds=delay)
                row["b_error"] = (error or "")[:500]
            else:
                row["b_error"] = error[:500] if error else None
            groups.setdefault((pending, pending and refund), []).append(row)
        for (pending, refund), rows in groups.items():
            values: dict[str, object] = {
                "lease_owner": None, "lease_until": None, "updated_at": now,
                "state": sa.bindparam("b_state"), "last_error": sa.bindparam("b_error"),
            }  # fmt: skip
            if pending:
                values["run_after"] = sa.bindparam("b_run_after")
            if refund:
                values["attempts"] = c.attempts - 1
            conn.execute(
                sa.update(JOBS)
                .where(
                    c.id == sa.bindparam("b_id"), c.lease_owner == self.owner, c.state == "running"
                )  # fmt: skip
                .values(**values),
                rows,
            )

    def _settle_pg(
        self, conn: Connection, settlements: list[tuple[ClaimedJob, str, str | None, float, bool]],
        now: datetime,
    ) -> None:  # fmt: skip
        """``settle_many_in`` on PostgreSQL: the whole group in one statement over arrays (an
        ``executemany`` ran a statement per job in the server; issue 14)."""
        ids: list[int] = []
        states: list[str] = []
        whens: list[datetime | None] = []
        errors: list[str | None] = []
        refunds: list[int] = []
        for job, state, error, delay, refund in settlements:
            pending = state == "pending"
            ids.append(job.id)
            states.append(state)
            whens.append(now + timedelta(seconds=delay) if pending else None)
            errors.append((error or "")[:500] if pending else (error[:500] if error else None))
            refunds.append(1 if pending and refund else 0)
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute(_SETTLE_PG, {"ids": ids, "states": states, "whens": whens,
                                     "errors": errors, "refunds": refunds, "owner": self.owner,
                                     "now": now}, prepare=True)  # fmt: skip

    def follow_up_many_in(self, conn: Connection, follow: list[tuple[int, str]]) -> None:
        """``follow_up_in`` for each (alert id, step) of ``follow``: one look-up of the jobs
        that exist and one insert of the others."""
        if not follow:
            return
        wanted = list(dict.fromkeys(follow))
        c = JOBS.c
        ids = sorted({a for a, _ in wanted})
        steps = sorted({s for _, s in wanted})
        have = {
            (int(r.alert_id), r.step)
            for r in conn.execute(
                sa.select(c.alert_id, c.step).where(c.alert_id.in_(ids), c.step.in_(steps))
            )
        }
        now = self.now()
        rows = [
            {"alert_id": a, "step": s, "state": "pending", "attempts": 0, "run_after": now,
             "created_at": now, "updated_at": now}
            for a, s in wanted if (a, s) not in have
        ]  # fmt: skip
        if rows:
            conn.execute(sa.insert(JOBS), rows)

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
