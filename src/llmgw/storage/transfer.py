"""Copy a SQLite database into PostgreSQL and prove the copy: ``llmgw db migrate``.

Order of a run (docs/migration.md tells the story for people):

1. The source is opened read-only inside one read transaction (``sqlite_source.open_snapshot``),
   so every phase reads the same snapshot, and it is refused while another process has it open
   unless ``live`` is set (MIG-5). It must be at this llmgw's newest Alembic revision.
2. The target gets the same schema through Alembic (an empty database is upgraded to that head,
   on a second thread while step 3 checks the source; any other revision is refused).
3. Rows up to a resumed table's checkpoint are checked against the documented rules and
   counted and checksummed (``check_source``); a value no rule accepts stops the run,
   listing the rows (MIG-3).
4. Tables are copied parents first (the metadata's foreign-key order, so tables added by later
   migrations come along), in rowid order, in batches of ``COPY ... FROM STDIN``; the same
   read applies the rules to every value (SQLite leaves out the rows they refuse, and the
   rows are counted) and gives each row's canonical form, so the source is checked, counted
   and checksummed while PostgreSQL parses the copy. A batch holding a refused value is
   rolled back and the run stops, listing every refused value from that batch on; the
   batches before it stay committed (a run after the fix resumes after them). Each batch
   commits together with its checkpoint in
   ``llmgw_migration`` on the target, so a killed run resumes after its last committed batch
   and a finished one copies nothing (MIG-4). A big table copied from empty gets its indexes
   (its primary key and unique constraints too, unless a foreign key refers to them) after its
   rows. As each table's copy ends, its indexes are built and its target checksum taken on two
   more connections while the next tables are copied.
5. Sequences are set past the largest id (MIG-2); the target's counts and checksums are taken
   inside PostgreSQL and compared (MIG-1).

The source file is never written. Progress goes to a callback as plain dicts (the CLI draws
bars or prints JSON lines).
"""

# SQL here is built only from table and column names of llmgw's own metadata, always quoted
# (quote()); every value goes through a parameter.
# ruff: noqa: S608

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import md5
from pathlib import Path
from typing import Any

import psycopg
from psycopg.copy import QueuedLibpqWriter

from llmgw.errors import Conflict, DatabaseError, DataCheckFailed, UsageError
from llmgw.storage.canonical import (
    ColumnSpec,
    TableSpec,
    TableSum,
    decimal_own_form,
    encode,
    own_timestamp,
    source_canonicalizer,
    table_specs,
    target_canonicalizer,
)
from llmgw.storage.canonical_sql import (
    copy_columns,
    pg_key_text,
    pg_rows_sql,
    pg_sum_sql,
    pg_sum_total,
    python_columns,
    sqlite_check_sql,
    sqlite_copy_sql,
    sqlite_sum_sql,
)
from llmgw.storage.db import normalize_url, redact_url
from llmgw.storage.sqlite_source import (
    Problem,
    holders,
    open_snapshot,
    preview,
    problem_condition,
    quote,
    sql_problems,
)
from llmgw.storage.tcp import with_tcp_checks

__all__ = ["PROGRESS_TABLE", "Migration", "MigrationReport", "Options", "TablePlan"]

PROGRESS_TABLE = "llmgw_migration"
SEED_ROWS = 100  # a table with at most this many rows may hold rows a migration inserted
_SKIP = object()  # marks a row already reported as unreadable
_MAX_ROWID = (1 << 63) - 1
_MIN_ROWID = -(1 << 63)
ESTIMATED_ROWS_PER_S = 50_000
"""For ``--dry-run``'s estimate; docs/performance.md has the measured figures."""

Progress = Callable[[dict[str, Any]], None]
Verify = Callable[["TablePlan", int | None, int | None], None]


@dataclass
class Options:
    """How a migration runs."""

    batch_size: int = 50_000
    strip_nul: bool = False
    live: bool = False
    problem_limit: int = 20
    defer_indexes: int = 50_000
    """A table copied from empty with at least this many rows gets its indexes (primary key
    and unique constraints too, unless a foreign key refers to them) built after its rows
    instead of row by row."""


@dataclass
class TablePlan:
    """One table: what the source holds, what the target holds, where a resume starts."""

    spec: TableSpec
    source_rows: int
    source_max_rowid: int
    target_rows: int
    done_rowid: int
    """Rows of the source up to this rowid are already in the target."""
    to_copy: int = 0
    source_sum: TableSum | None = None
    target_sum: TableSum | None = None
    copied: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The row of the report."""
        src, dst = self.source_sum, self.target_sum
        return {
            "table": self.spec.name,
            "source_rows": self.source_rows,
            "target_rows": dst.rows if dst else self.target_rows,
            "copied": self.copied,
            "source_checksum": src.checksum if src else None,
            "target_checksum": dst.checksum if dst else None,
            "match": bool(src and dst and (src.rows, src.total) == (dst.rows, dst.total)),
        }


@dataclass
class MigrationReport:
    """What a run did and found; ``ok`` is False on any mismatch or refused value."""

    mode: str
    source: str
    target: str
    revision: str | None
    tables: list[TablePlan]
    started_at: datetime
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    live: bool = False
    sequences: dict[str, int] = field(default_factory=dict)
    resynced: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def mismatched(self) -> list[str]:
        """Tables whose count or checksum differ."""
        return [t.spec.name for t in self.tables if not t.as_dict()["match"]]

    @property
    def copied(self) -> int:
        """Rows copied by this run."""
        return sum(t.copied for t in self.tables)

    @property
    def ok(self) -> bool:
        """No refused value and, when the target was checked, every table matches."""
        if self.problem_count:
            return False
        return self.mode == "dry-run" or not self.mismatched

    def as_dict(self) -> dict[str, Any]:
        """The JSON report."""
        out: dict[str, Any] = {
            "event": "report",
            "mode": self.mode,
            "ok": self.ok,
            "source": self.source,
            "target": self.target,
            "revision": self.revision,
            "live_source": self.live,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "rows_copied": self.copied,
            "tables": [t.as_dict() for t in self.tables],
            "mismatched": self.mismatched if self.mode != "dry-run" else [],
            "problem_count": self.problem_count,
            "problems": [p.as_dict() for p in self.problems],
            "sequences": self.sequences,
            "resynced": self.resynced,
        }
        if self.mode == "dry-run":
            rows = sum(t.to_copy for t in self.tables)
            out["rows_to_copy"] = rows
            out["estimated_seconds"] = round(rows / ESTIMATED_ROWS_PER_S, 1)
        return out


def _conninfo(url: str) -> str:
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise UsageError(
            f"the target must be a PostgreSQL URL, not {redact_url(parsed)}",
            hint="--to postgresql://USER@HOST:PORT/DB",
        )
    return with_tcp_checks(
        parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    )


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///`` URL (or a plain path)."""
    if "://" not in url:
        return Path(url).expanduser()
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise UsageError(
            f"the source must be a SQLite file, not {redact_url(parsed)}",
            hint="--from sqlite:///PATH/llmgw.db",
        )
    return Path(parsed.database).expanduser()


class Migration:
    """One run of ``llmgw db migrate`` from ``source`` (a SQLite file) to ``target_url``."""

    def __init__(
        self,
        source: Path,
        target_url: str,
        options: Options | None = None,
        progress: Progress | None = None,
        *,
        specs: list[TableSpec] | None = None,
    ) -> None:
        self.source = source
        self.target_url = target_url
        self.options = options or Options()
        self.emit: Progress = progress or (lambda _event: None)
        self.specs = specs if specs is not None else table_specs()
        self._src: sqlite3.Connection | None = None
        self._pg: psycopg.Connection[Any] | None = None
        self.revision: str | None = None

    # --- connections -----------------------------------------------------------------------

    def __enter__(self) -> Migration:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close both connections (ending the source's read transaction)."""
        if self._src is not None:
            self._src.close()
            self._src = None
        if self._pg is not None:
            self._pg.close()
            self._pg = None

    @property
    def src(self) -> sqlite3.Connection:
        """The source snapshot."""
        assert self._src is not None, "call open() first"
        return self._src

    @property
    def pg(self) -> psycopg.Connection[Any]:
        """The target connection (autocommit; batches open their own transactions)."""
        assert self._pg is not None, "call open() first"
        return self._pg

    def open(self) -> None:
        """Open the source snapshot and the target; refuse an unusable pair."""
        path = self.source
        if not path.is_file():
            raise UsageError(f"no SQLite database at {path}", hint="--from sqlite:///PATH")
        pids = holders(path)
        if pids and not self.options.live:
            raise Conflict(
                f"{path} is open in process {pids[0]} (a running llmgw serve?)",
                hint="stop the gateway for a complete copy, or pass --live to copy a consistent "
                "snapshot now and run again once it is stopped",
            )
        if pids:
            self.emit({"event": "warning", "message": f"{path} is open in process {pids[0]}; "
                       "copying a snapshot, rows written after it are not copied"})  # fmt: skip
        try:
            self._src = open_snapshot(path)
            self.revision = self._source_revision()
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(
                f"cannot read {path}: {exc}", hint="is it a SQLite database?"
            ) from None
        try:
            self._pg = psycopg.connect(
                _conninfo(self.target_url), autocommit=True, connect_timeout=5
            )
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "refused"
            raise DatabaseError(
                f"cannot connect to {redact_url(self.target_url)}: {reason}",
                hint="check the --to URL and that the server is running",
            ) from None
        self.pg.execute("SET TIME ZONE 'UTC'")
        # alert_stats_hourly is copied as a table: the alerts' triggers must not count again
        self.pg.execute("SET llmgw.alert_stats = 'off'")
        enc = self.pg.execute("SHOW server_encoding").fetchone()
        if not enc or enc[0] != "UTF8":
            raise UsageError(
                f"the target database's encoding is {enc[0] if enc else '?'}, not UTF8",
                hint="create it with: createdb -E UTF8 -T template0 NAME",
            )

    def _source_revision(self) -> str | None:
        from llmgw.storage.revisions import VERSION_TABLE, scripted_head

        has = self.src.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (VERSION_TABLE,)
        ).fetchone()
        rev = (
            self.src.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone() if has else None
        )
        head = scripted_head()
        current = rev[0] if rev else None
        if current != head:
            raise UsageError(
                f"the source is at schema revision {current or 'none'}, this llmgw writes {head}",
                hint=f"upgrade the source first: LLMGW_DATABASE_URL=sqlite:///{self.source} llmgw db upgrade",
            )
        return current

    # --- target schema and plan ------------------------------------------------------------

    def _target_revision(self) -> str | None:
        row = self.pg.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return None
        got = self.pg.execute("SELECT version_num FROM alembic_version").fetchone()
        return got[0] if got else None

    def prepare_target(self, *, create: bool) -> bool:
        """Bring an empty target to the source's revision (only with ``create``); refuse any
        other revision. True when the target was empty (without ``create``: still is)."""
        current = self._target_revision()
        if current == self.revision:
            return False
        if current is not None:
            raise Conflict(
                f"the target is at schema revision {current}, the source at {self.revision}",
                hint="use an empty target database, or one this llmgw version migrated",
            )
        tables = self.pg.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
        if tables and tables[0]:
            raise Conflict(
                f"the target {redact_url(self.target_url)} has tables but no llmgw schema",
                hint="use an empty database (createdb NAME)",
            )
        if create:
            self._create_schema()
        return True

    def _create_schema(self) -> None:
        """Alembic's upgrade of the (empty) target to the source's revision."""
        from llmgw.storage.db import make_engine
        from llmgw.storage.schema import upgrade

        engine = make_engine(self.target_url)
        try:
            upgrade(engine, self.revision or "head")
        finally:
            engine.dispose()

    @contextmanager
    def schema_created_alongside(self) -> Iterator[None]:
        """Create the empty target's schema on a second thread (its own connection) while the
        body runs (SQLite lets go of the GIL while it steps, and most of Alembic's time is
        PostgreSQL's DDL and commits); the body's end waits for it, and its error is raised."""
        failed: list[BaseException] = []

        def create() -> None:
            try:
                self._create_schema()
            except BaseException as exc:  # noqa: BLE001 - raised again by the caller's thread
                failed.append(exc)

        worker = threading.Thread(target=create, name="llmgw-migrate-schema", daemon=True)
        worker.start()
        try:
            yield
        finally:
            worker.join()
        if failed:
            raise failed[0]

    def _progress(self) -> dict[str, tuple[int, str]]:
        row = self.pg.execute("SELECT to_regclass(%s) IS NOT NULL", (PROGRESS_TABLE,)).fetchone()
        if not row or not row[0]:
            return {}
        got = self.pg.execute(f"SELECT table_name, last_rowid, source FROM {PROGRESS_TABLE}")
        return {r[0]: (int(r[1]), str(r[2])) for r in got}

    def plan(self) -> list[TablePlan]:
        """Per table: source rows, target rows and where copying starts."""
        schema_ready = self._target_revision() == self.revision
        progress = self._progress() if schema_ready else {}
        plans = []
        for spec in self.specs:
            name = quote(spec.name)
            count, top = self.src.execute(
                f"SELECT count(*), coalesce(max(rowid), 0) FROM {name}"
            ).fetchone()
            target_rows = 0
            if schema_ready:
                got = self.pg.execute(f"SELECT count(*) FROM {name}").fetchone()
                target_rows = int(got[0]) if got else 0
            done, source = progress.get(spec.name, (0, str(self.source.resolve())))
            if source != str(self.source.resolve()):
                done = 0
            left = self.src.execute(
                f"SELECT count(*) FROM {name} WHERE rowid > ?", (done,)
            ).fetchone()[0]
            plans.append(TablePlan(spec, int(count), int(top), target_rows, done, int(left)))
        return plans

    def foreign_rows(self, plans: list[TablePlan]) -> list[str]:
        """Tables of the target holding rows that did not come from this source.

        Rows a migration itself inserts (the built-in OAuth client of 0003) are in the source
        too: a table whose rows all have a primary key the source also has is not foreign; its
        rows are replaced by the source's at the start of the copy (``drop_seeded``).
        """
        progress = self._progress()
        mine = str(self.source.resolve())
        foreign = []
        self._seeded: list[TablePlan] = []
        for p in plans:
            if not p.target_rows or progress.get(p.spec.name, (0, ""))[1] == mine:
                continue
            if p.spec.primary_key and p.target_rows <= SEED_ROWS and self._keys_in_source(p.spec):
                self._seeded.append(p)
            else:
                foreign.append(p.spec.name)
        return foreign

    def _keys_in_source(self, spec: TableSpec) -> bool:
        """Whether every primary key of the target's rows is also in the source."""
        pk = [c for c in spec.columns if c.name in spec.primary_key]
        key_spec = TableSpec(spec.name, tuple(pk))
        cols = ", ".join(quote(c.name) for c in pk)
        theirs = {
            target_canonicalizer(key_spec)(row)
            for row in self.pg.execute(f"SELECT {cols} FROM {quote(spec.name)}")
        }
        canon = source_canonicalizer(key_spec)
        ours = set()
        for row in self.src.execute(
            f"SELECT {cols} FROM {quote(spec.name)} LIMIT ?", (SEED_ROWS * 100,)
        ):
            ours.add(canon(row))
        return theirs <= ours

    def drop_seeded(self) -> None:
        """Delete the rows migrations seeded into a fresh target; the source's copies replace them."""
        seeded = getattr(self, "_seeded", [])
        if not seeded:
            return
        with self.pg.transaction():
            for p in reversed(seeded):
                self.pg.execute(f"DELETE FROM {quote(p.spec.name)}")
                p.target_rows = 0
        self._seeded = []

    def empty_target(self) -> None:
        """Delete every llmgw row of the target (the schema stays); the caller asked first."""
        names = ", ".join(quote(s.name) for s in self.specs)
        with self.pg.transaction():
            self.pg.execute(f"TRUNCATE {names}")
            if self._progress():
                self.pg.execute(f"DELETE FROM {PROGRESS_TABLE}")

    # --- checks and checksums --------------------------------------------------------------

    def check_source(
        self, plans: list[TablePlan], *, copying: bool = False
    ) -> tuple[int, list[Problem]]:
        """Apply every rule to every value, and sum the source; (problem count, first ones).

        With ``copying``, only the rows a resumed copy will not read again (up to each table's
        checkpoint) are checked and summed here; ``copy_table`` checks and sums the rest in
        the same read that feeds ``COPY`` (and stops at a batch holding a refused value), so
        the source is read once and its cost is paid while PostgreSQL parses the copy."""
        total, listed = 0, list[Problem]()
        limit = self.options.problem_limit
        for p in plans:
            upto = p.done_rowid if copying else _MAX_ROWID
            if upto:
                self.emit({"event": "check", "table": p.spec.name, "rows": p.source_rows})
            count, found, p.source_sum = self._sum_source(p.spec, upto=upto)
            total += count
            listed.extend(found[: max(0, limit - len(listed))])
        if total and copying:  # the sums are partial: none is shown
            for p in plans:
                if p.done_rowid < p.source_max_rowid:
                    p.source_sum = None
        return total, listed

    def _refused(self, plans: list[TablePlan], at: TablePlan) -> tuple[int, list[Problem]]:
        """Every refused value from the batch ``copy_table`` stopped at (``at.done_rowid``) on,
        in that table and the ones not copied yet: (count, first ones). The copy stopped at
        the first batch holding one; this lists them all, as a check before the copy did."""
        total, listed = 0, list[Problem]()
        limit = self.options.problem_limit
        for p in plans[next(i for i, p in enumerate(plans) if p is at) :]:
            self.emit({"event": "check", "table": p.spec.name, "rows": p.source_rows})
            count, found = self._check_source(p.spec, after=p.done_rowid)
            total += count
            listed.extend(found[: max(0, limit - len(listed))])
        for p in plans:
            if p.done_rowid < p.source_max_rowid:
                p.source_sum = None  # partial: none is shown
        if not total:  # pragma: no cover - the copy and the check apply the same rules
            raise DataCheckFailed(
                f"a value of {at.spec.name} after rowid {at.done_rowid} was refused while "
                "copying but not when checked again",
                hint="run again; the target holds the batches before it",
            )
        return total, listed

    def _sum_source(
        self, spec: TableSpec, *, upto: int | None = None
    ) -> tuple[int, list[Problem], TableSum]:
        """Check and checksum the rows of one table of the source up to rowid ``upto`` (all:
        the default) in one pass; (problem count, first problems, sum).

        SQLite writes each row's canonical form and flags a row ``sql_problems`` would report
        (``canonical_sql``); Python adds the values of ``PYTHON_KINDS`` and hashes. A flagged batch
        is looked at again by ``sql_problems``; a row whose form is NULL (a value not in
        llmgw's own storage form) or a batch SQLite cannot decode is made canonical in
        Python, value by value."""
        upto = _MAX_ROWID if upto is None else upto
        strip = self.options.strip_nul
        limit = self.options.problem_limit
        total = TableSum()
        problems: list[Problem] = []
        count = 0
        encoders = _python_encoders(spec)
        fast = sqlite_sum_sql(spec, strip_nul=strip, flag=problem_condition(spec, strip_nul=strip))
        cols = ", ".join(quote(c) for c in spec.column_names)
        raw = (
            f"SELECT rowid, {cols} FROM {quote(spec.name)} "
            "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        one = f"SELECT rowid, {cols} FROM {quote(spec.name)} WHERE rowid = ?"
        canon = source_canonicalizer(spec, strip_nul=strip)
        step = max(self.options.batch_size, 50_000)
        h, from_bytes = md5, int.from_bytes
        last = 0
        while True:
            read: dict[int, tuple[Any, ...]] = {}
            try:
                rows = self.src.execute(fast, (last, upto, step)).fetchall()
                flagged = False
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc):
                    raise
                got, bad = self._read_as_bytes(raw, (last, upto, step), spec)
                count += len(bad)
                problems.extend(bad[: max(0, limit - len(problems))])
                read = {r[0]: r for r in got}
                rows = [(r[0], None, 1) for r in got]  # every row of the batch: slow path
                flagged = True
            if not rows:
                break
            acc = 0
            for row in rows:
                form = row[1]
                if row[2]:
                    flagged = True
                try:
                    if form is None:
                        slow = read.get(row[0]) or self.src.execute(one, (row[0],)).fetchone()
                        if len(slow) > 1 and slow[1] is _SKIP:
                            continue
                        form = canon(slow[1:])
                    elif encoders:
                        for enc, v in zip(encoders, row[3:], strict=True):
                            form += enc(v)
                    acc += from_bytes(h(form.encode(), usedforsecurity=False).digest(), "big")
                except ValueError:
                    count += 1
                    if len(problems) < limit:
                        problems.append(
                            self._explain(spec, self.src.execute(one, (row[0],)).fetchone())
                        )
                    continue
                total.rows += 1
            total.merge(0, acc)
            if flagged:  # what SQLite can tell is wrong in this batch, listed
                n, found = sql_problems(
                    self.src, spec, strip_nul=strip, limit=limit, rowids=(last, rows[-1][0])
                )
                count += n
                problems.extend(found[: max(0, limit - len(problems))])
            last = rows[-1][0]
        return count, problems, total

    def _check_source(self, spec: TableSpec, *, after: int) -> tuple[int, list[Problem]]:
        """Apply every rule to the rows after rowid ``after`` without summing them: the same
        problems, counted the same way, as ``_sum_source`` finds, at about half its cost.

        Per batch: SQLite returns only the rows to look at (a value ``sql_problems`` reports,
        or one not in llmgw's own storage form, made canonical in Python as the sum would);
        every text value is decoded once (``group_concat``: invalid UTF-8 sends the batch
        through ``_read_as_bytes``); each distinct JSON value is parsed."""
        strip = self.options.strip_nul
        limit = self.options.problem_limit
        problems: list[Problem] = []
        count = 0
        name = quote(spec.name)
        look, probe = sqlite_check_sql(
            spec, strip_nul=strip, flag=problem_condition(spec, strip_nul=strip)
        )
        cols = ", ".join(quote(c) for c in spec.column_names)
        raw = f"SELECT rowid, {cols} FROM {name} WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
        one = f"SELECT rowid, {cols} FROM {name} WHERE rowid = ?"
        upper = f"SELECT max(rowid) FROM (SELECT rowid FROM {name} WHERE rowid > ? ORDER BY rowid LIMIT ?)"
        canon = source_canonicalizer(spec, strip_nul=strip)
        jsons = [(quote(c.name), _python_encoder(c)) for c in spec.columns if c.kind == "json"]
        step = max(self.options.batch_size, 50_000)

        def refuse(row: tuple[Any, ...]) -> None:
            nonlocal count
            count += 1
            if len(problems) < limit:
                problems.append(self._explain(spec, row))

        last = after
        while True:
            hi = self.src.execute(upper, (last, step)).fetchone()[0]
            if hi is None:
                break
            seen: set[int] = set()  # rows already counted
            try:
                self.src.execute(probe, (last, hi)).fetchall()
                decoded = True
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc):
                    raise
                decoded = False
            if not decoded:  # as _sum_source: every row of the batch through Python
                got, bad = self._read_as_bytes(raw, (last, hi), spec)
                count += len(bad)
                problems.extend(bad[: max(0, limit - len(problems))])
                for r in got:
                    if r[1] is _SKIP:
                        continue
                    try:
                        canon(r[1:])
                    except ValueError:
                        refuse(self.src.execute(one, (r[0],)).fetchone())
                flagged = True
            else:
                flagged = False
                for rowid, flag, own in self.src.execute(look, (last, hi)).fetchall():
                    flagged = flagged or bool(flag)
                    if not own:
                        row = self.src.execute(one, (rowid,)).fetchone()
                        seen.add(rowid)
                        try:
                            canon(row[1:])
                        except ValueError:
                            refuse(row)
                for c, enc in jsons:
                    distinct = (
                        f"SELECT DISTINCT typeof({c}), {c} FROM {name} "
                        f"WHERE rowid > ? AND rowid <= ? AND {c} IS NOT NULL"
                    )
                    for kind, value in self.src.execute(distinct, (last, hi)).fetchall():
                        try:
                            enc(value)
                        except ValueError:
                            rows = self.src.execute(
                                f"{raw.split(' ORDER BY')[0]} AND typeof({c}) = ? AND {c} = ? "
                                "ORDER BY rowid",
                                (last, hi, kind, value),
                            ).fetchall()
                            for row in rows:
                                if row[0] not in seen:
                                    seen.add(row[0])
                                    refuse(row)
            if flagged:  # what SQLite can tell is wrong in this batch, listed
                n, found = sql_problems(
                    self.src, spec, strip_nul=strip, limit=limit, rowids=(last, hi)
                )
                count += n
                problems.extend(found[: max(0, limit - len(problems))])
            last = hi
        return count, problems

    def _read_as_bytes(
        self, sql: str, args: tuple[int, ...], spec: TableSpec
    ) -> tuple[list[tuple[Any, ...]], list[Problem]]:
        """A batch that holds invalid UTF-8, read as bytes: good rows decoded, bad ones listed.

        A bad row comes back as ``(rowid, _SKIP)`` so the caller keeps its place."""
        self.src.text_factory = bytes
        try:
            raw = self.src.execute(sql, args).fetchall()
        finally:
            self.src.text_factory = str
        rows: list[tuple[Any, ...]] = []
        bad: list[Problem] = []
        for row in raw:
            values: list[Any] = [row[0]]
            broken = None
            for col, v in zip(spec.columns, row[1:], strict=True):
                if isinstance(v, bytes) and col.kind != "bytes":
                    try:
                        v = v.decode("utf-8")
                    except UnicodeDecodeError:
                        broken = broken or Problem(
                            spec.name, row[0], col.name, "invalid UTF-8", preview(v)
                        )
                values.append(v)
            if broken is not None:
                bad.append(broken)
                rows.append((row[0], _SKIP))
            else:
                rows.append(tuple(values))
        return rows, bad

    def _explain(self, spec: TableSpec, row: tuple[Any, ...]) -> Problem:
        """The first value of ``row`` that no rule accepts."""
        for col, value in zip(spec.columns, row[1:], strict=True):
            try:
                source_canonicalizer(
                    TableSpec(spec.name, (col,)), strip_nul=self.options.strip_nul
                )([value])
            except ValueError as exc:
                return Problem(spec.name, row[0], col.name, str(exc), preview(value))
        raise AssertionError("a row failed but none of its values does")  # pragma: no cover

    def sum_target(self, plan: TablePlan, conn: psycopg.Connection[Any] | None = None) -> None:
        """Count and checksum the target's copy of one table, inside PostgreSQL (on ``conn``,
        default the target connection)."""
        plan.target_sum = _target_sum(conn or self.pg, pg_sum_sql(plan.spec))

    def _rowid_key(self, spec: TableSpec) -> str | None:
        """The table's primary key column when it is SQLite's rowid (``INTEGER PRIMARY KEY``):
        a batch's rows are then the target's rows with ``last < key <= hi``."""
        if len(spec.primary_key) != 1:
            return None
        for _cid, name, decl, _notnull, _default, pk in self.src.execute(
            f"PRAGMA table_info({quote(spec.name)})"
        ):
            if pk and name == spec.primary_key[0] and str(decl).upper() == "INTEGER":
                return str(name)
        return None

    # --- copying ---------------------------------------------------------------------------

    def _ensure_progress_table(self) -> None:
        self.pg.execute(
            f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} ("
            "table_name text PRIMARY KEY, source text NOT NULL, last_rowid bigint NOT NULL, "
            "rows_copied bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
        )

    def copy_table(self, plan: TablePlan, verify: Verify | None = None) -> None:
        """Copy the rows after the table's checkpoint, one committed batch at a time, adding
        each row's hash to the table's source sum as it is read (``check_source`` summed the
        rows before the checkpoint and checked the rest)."""
        spec = plan.spec
        name = quote(spec.name)
        cols = ", ".join(quote(c) for c in spec.column_names)
        step = (
            f"SELECT max(rowid), count(*) FROM (SELECT rowid FROM {name} WHERE rowid > ? "
            "ORDER BY rowid LIMIT ?)"
        )
        strip = self.options.strip_nul
        read = sqlite_copy_sql(spec, strip_nul=strip, flag=problem_condition(spec, strip_nul=strip))
        one = f"SELECT rowid, {cols} FROM {name} WHERE rowid = ?"
        # the columns in the row form's order: each row's canonical form is its COPY line
        copy_sql = f"COPY {name} ({', '.join(quote(c) for c in copy_columns(spec))}) FROM STDIN"
        save = (
            f"INSERT INTO {PROGRESS_TABLE} (table_name, source, last_rowid, rows_copied) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (table_name) DO UPDATE SET "
            "source = EXCLUDED.source, last_rowid = EXCLUDED.last_rowid, "
            f"rows_copied = {PROGRESS_TABLE}.rows_copied + EXCLUDED.rows_copied, updated_at = now()"
        )
        encoders = _python_encoders(spec)
        canon = source_canonicalizer(spec, strip_nul=self.options.strip_nul)
        if plan.source_sum is None:
            plan.source_sum = TableSum()
        last = plan.done_rowid
        if verify is not None and last:
            verify(plan, _MIN_ROWID, last)  # the rows an earlier run copied
        started = time.monotonic()
        self.emit({"event": "table", "table": spec.name, "total": plan.to_copy, "done": 0})
        while True:
            hi, rows = self.src.execute(step, (last, self.options.batch_size)).fetchone()
            if hi is None:
                break
            try:
                with self.pg.transaction(), self.pg.cursor() as cur:
                    # A writer thread sends each chunk while SQLite prints the next (sqlite3
                    # lets go of the GIL while it steps), so reading and parsing overlap.
                    with cur.copy(copy_sql, writer=QueuedLibpqWriter(cur)) as cp:
                        done, acc = self._copy_batch(cp, (read, one), (last, hi), encoders, canon)
                    if done != rows:  # SQLite left out a row the rules refuse
                        raise _DirtyBatch
                    cur.execute(save, (spec.name, str(self.source.resolve()), hi, done))
            except _DirtyBatch:  # rolled back: the target ends at the previous batch
                plan.done_rowid = last
                raise _DirtyBatch(plan) from None
            plan.source_sum.merge(done, acc)
            if verify is not None:
                verify(plan, last, hi)
            last = hi
            plan.copied += done
            elapsed = time.monotonic() - started
            self.emit({
                "event": "progress", "table": spec.name, "done": plan.copied, "total": plan.to_copy,
                "rows_per_s": round(plan.copied / elapsed) if elapsed > 0 else None,
            })  # fmt: skip
        plan.done_rowid = last

    def _copy_batch(
        self,
        cp: Any,
        sql: tuple[str, str],
        rowids: tuple[int, int],
        encoders: list[Callable[[Any], str]],
        canon: Callable[[Any], str],
    ) -> tuple[int, int]:
        """Write the rows ``after < rowid <= upto`` to ``cp`` in chunks, checking each value
        and summing the source as it goes; (rows, sum of their hashes).

        Each row's canonical form is its ``COPY`` line (SQLite prints the SQL kinds' fields,
        Python appends those of ``PYTHON_KINDS``), so one text per row is both hashed and sent.
        The same read applies the dirty-data rules: SQLite leaves out the rows
        ``sql_problems`` would report (the caller compares the rows written with the rows of
        the range); a row with a value not in llmgw's own form is made canonical by Python's
        rules; a text that is not UTF-8 or a value those rules refuse raise ``_DirtyBatch``, so
        the batch is rolled back."""
        read, one = sql
        last, hi = rowids
        h, from_bytes = md5, int.from_bytes
        done = acc = 0
        reader = self.src.execute(read, (last, hi))
        fields = _fields_of(encoders)
        while True:
            try:
                chunk = reader.fetchmany(_CHUNK)
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc):
                    raise
                raise _DirtyBatch from None  # invalid UTF-8
            if not chunk:
                return done, acc
            lines: list[str] = []
            add = lines.append
            try:
                for row in chunk:  # checked and summed (the writer sends the last chunk)
                    line = row[1]
                    if line is None:  # a value not in llmgw's own form: Python's rules
                        line = canon(self.src.execute(one, (row[0],)).fetchone()[1:])
                    else:
                        line += fields(row)
                    acc += from_bytes(h(line.encode(), usedforsecurity=False).digest(), "big")
                    add(line)
            except ValueError:
                raise _DirtyBatch from None
            lines.append("")
            cp.write("\n".join(lines))
            done += len(chunk)

    def defer_indexes(self, spec: TableSpec) -> None:
        """Drop the table's indexes, remembering them on the target (kill-safe), as pgloader
        loads a table before indexing it: plain secondary indexes, and primary-key and unique
        constraints no foreign key refers to (the source holds the same constraints, so their
        rebuild cannot fail; ``restore_indexes`` brings each back, a constraint included). A
        primary key that is SQLite's rowid stays: each batch is checksummed by its range."""
        self.pg.execute(
            "CREATE TABLE IF NOT EXISTS llmgw_migration_indexes "
            "(name text PRIMARY KEY, table_name text NOT NULL, ddl text NOT NULL)"
        )
        rows = self.pg.execute(
            "SELECT c.relname, pg_get_indexdef(c.oid), k.conname, k.contype FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid "
            "LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.contype IN ('p', 'u') "
            "AND k.conrelid = x.indrelid "
            "WHERE x.indrelid = %s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint o "
            "WHERE o.conindid = x.indexrelid AND o.contype NOT IN ('p', 'u')) "
            "AND NOT (x.indisprimary AND %s) ORDER BY c.relname",
            (quote(spec.name), self._rowid_key(spec) is not None),
        ).fetchall()
        table = quote(spec.name)
        with self.pg.transaction():
            for index, ddl, constraint, kind in rows:
                if constraint is not None:  # the index first (SHARE lock: reads go on), then
                    # the constraint takes it over (a short ACCESS EXCLUSIVE lock)
                    ddl += _THEN + (
                        f"ALTER TABLE {table} ADD CONSTRAINT {quote(constraint)} "
                        f"{'PRIMARY KEY' if kind == 'p' else 'UNIQUE'} USING INDEX {quote(index)}"
                    )
                self.pg.execute(
                    "INSERT INTO llmgw_migration_indexes VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (index, spec.name, ddl),
                )
                if constraint is not None:
                    self.pg.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote(constraint)}")
                else:
                    self.pg.execute(f"DROP INDEX {quote(index)}")
        if rows:
            self.emit({"event": "indexes_deferred", "table": spec.name, "indexes": len(rows)})

    def restore_indexes(
        self, conn: psycopg.Connection[Any] | None = None, *, table: str | None = None
    ) -> None:
        """Build every index a run (this one or a killed one) deferred, or only ``table``'s
        (on ``conn``, default the target connection)."""
        pg = conn or self.pg
        found = pg.execute("SELECT to_regclass('llmgw_migration_indexes') IS NOT NULL").fetchone()
        if not found or not found[0]:
            return
        for index, name, ddl in pg.execute(
            "SELECT name, table_name, ddl FROM llmgw_migration_indexes "
            "WHERE table_name = coalesce(%s, table_name) ORDER BY name",
            (table,),
        ).fetchall():
            self.emit({"event": "index", "table": name, "index": index})
            with pg.transaction():
                pg.execute(f"DROP INDEX IF EXISTS {quote(index)}")
                for statement in ddl.split(_THEN):
                    pg.execute(statement)
                pg.execute("DELETE FROM llmgw_migration_indexes WHERE name = %s", (index,))

    @contextmanager
    def verified_alongside(self) -> Iterator[Verify]:
        """Yield ``verify(plan, lo, hi)``: with ``lo`` and ``hi``, a batch of a table
        keyed by its rowid is committed (its rows are ``lo < key <= hi`` on the target); with
        ``None``, the table's copy is done. On two more connections, while the next batches and tables
        are copied (PostgreSQL's work, overlapping llmgw's reading of the source): each batch is
        checksummed as it is committed, and a finished table gets its deferred indexes built and
        its checksum completed: the batches' sums when the table holds exactly the rows they
        counted, else the whole table's (a checksum may wait a moment for a constraint being
        added). The body's end waits for both, building any index a killed run left too; their
        error is raised. When the body fails, what is left is left to the next run (the
        deferred indexes stay recorded in ``llmgw_migration_indexes``)."""
        conns = [
            psycopg.connect(_conninfo(self.target_url), autocommit=True, connect_timeout=5)
            for _ in range(2)
        ]
        for conn in conns:
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute("SET llmgw.alert_stats = 'off'")  # see __init__
        indexes: queue.SimpleQueue[TablePlan | None] = queue.SimpleQueue()
        sums: queue.SimpleQueue[tuple[TablePlan, int | None, int | None] | None] = (
            queue.SimpleQueue()
        )
        keys = {p.name: self._rowid_key(p) for p in self.specs}  # SQLite is this thread's
        failed: list[BaseException] = []
        stopping = threading.Event()  # the body failed: the next run builds what is left
        emit, lock = self.emit, threading.Lock()

        def locked(event: dict[str, Any]) -> None:
            with lock:
                emit(event)

        def build_indexes() -> None:
            while (plan := indexes.get()) is not None:
                if not stopping.is_set():
                    self.restore_indexes(conns[0], table=plan.spec.name)
            if not stopping.is_set():
                self.restore_indexes(conns[0])  # what a killed run deferred on other tables

        def sum_tables() -> None:
            ranged: dict[str, TableSum] = {}
            while (job := sums.get()) is not None:
                if stopping.is_set():
                    continue
                plan, lo, hi = job
                spec, key = plan.spec, keys.get(plan.spec.name)
                if lo is not None and key:
                    part = _target_sum(conns[1], pg_sum_sql(spec, key=key), (lo, hi or 0))
                    ranged.setdefault(spec.name, TableSum()).merge(part.rows, part.total)
                    continue
                self.emit({"event": "verify", "table": spec.name})
                got = ranged.pop(spec.name, None)
                if got is not None:
                    count = conns[1].execute(f"SELECT count(*) FROM {quote(spec.name)}").fetchone()
                    if count is not None and count[0] == got.rows:
                        plan.target_sum = got  # every row is in one of the batches summed
                        continue
                self.sum_target(plan, conns[1])

        def guarded(work: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    work()
                except BaseException as exc:  # noqa: BLE001 - raised again by the caller's thread
                    failed.append(exc)

            return run

        def verify(plan: TablePlan, lo: int | None, hi: int | None) -> None:
            sums.put((plan, lo, hi))
            if lo is None:
                indexes.put(plan)

        self.emit = locked  # three threads report
        workers = [
            threading.Thread(target=guarded(work), name=f"llmgw-migrate-{work.__name__}",
                             daemon=True)
            for work in (build_indexes, sum_tables)
        ]  # fmt: skip
        for worker in workers:
            worker.start()
        try:
            yield verify
        except BaseException:
            stopping.set()  # Ctrl-C or a refused value: stop now, not after every index
            raise
        finally:
            indexes.put(None)
            sums.put(None)
            for worker in workers:
                worker.join()
            for conn in conns:
                conn.close()
            self.emit = emit
        if failed:
            raise failed[0]

    def set_sequences(self) -> dict[str, int]:
        """Every serial/identity column continues after the largest copied value (MIG-2)."""
        done: dict[str, int] = {}
        for spec in self.specs:
            for col in spec.columns:
                if col.kind != "int":
                    continue
                got = self.pg.execute(
                    "SELECT pg_get_serial_sequence(%s, %s)", (quote(spec.name), col.name)
                ).fetchone()
                if not got or got[0] is None:
                    continue
                top = self.pg.execute(
                    f"SELECT coalesce(max({quote(col.name)}), 0) + 1 FROM {quote(spec.name)}"
                ).fetchone()
                nxt = int(top[0]) if top else 1
                self.pg.execute("SELECT setval(%s, %s, false)", (got[0], nxt))
                done[f"{spec.name}.{col.name}"] = nxt
        return done

    # --- the whole run ---------------------------------------------------------------------

    def report(self, mode: str, plans: list[TablePlan], started: datetime) -> MigrationReport:
        """An empty report for this pair."""
        return MigrationReport(
            mode=mode,
            source=str(self.source),
            target=redact_url(self.target_url),
            revision=self.revision,
            tables=plans,
            started_at=started,
            live=self.options.live and bool(holders(self.source)),
        )

    def run(self, mode: str = "copy", *, plans: list[TablePlan] | None = None) -> MigrationReport:
        """``copy`` (the default), ``dry-run`` or ``verify-only``; the connections must be open."""
        started, t0 = datetime.now(UTC), time.monotonic()
        if mode == "copy" and self.prepare_target(create=False):
            # an empty target: Alembic creates the schema (nothing is in the target yet, so
            # every value is checked by the copy's read; the check before it has nothing to do)
            plans = self.plan()
            with self.schema_created_alongside():
                problems = self.check_source(plans, copying=True)
            plans = self.plan()  # the new schema's seeded rows (drop_seeded replaces them)
            self._refuse_foreign(plans)
            report = self.report(mode, plans, started)
            report.problem_count, report.problems = problems
        else:
            if mode == "copy":
                self.prepare_target(create=True)
            elif mode == "verify-only" and self._target_revision() != self.revision:
                raise Conflict(
                    f"the target is at revision {self._target_revision() or 'none'}, "
                    f"the source at {self.revision}",
                    hint="verify a pair that `llmgw db migrate` copied",
                )
            else:
                self.prepare_target(create=False)
            if plans is None or mode == "copy":
                plans = self.plan()
            if mode == "copy":
                self._refuse_foreign(plans)
            report = self.report(mode, plans, started)
            report.problem_count, report.problems = self.check_source(plans, copying=mode == "copy")
        if report.problem_count and mode != "verify-only":
            report.seconds = time.monotonic() - t0
            return report
        if mode == "copy":
            self._ensure_progress_table()
            self.drop_seeded()
            try:
                with self.verified_alongside() as verify:
                    for p in plans:
                        if (
                            p.done_rowid == 0
                            and p.target_rows == 0
                            and p.to_copy >= self.options.defer_indexes
                        ):
                            self.defer_indexes(p.spec)
                        self.copy_table(p, verify if self._rowid_key(p.spec) else None)
                        verify(p, None, None)
                    report.sequences = self.set_sequences()
            except _DirtyBatch as dirty:
                assert dirty.plan is not None
                report.problem_count, report.problems = self._refused(plans, dirty.plan)
                report.seconds = time.monotonic() - t0
                return report
        elif mode != "dry-run":
            for p in plans:
                self.emit({"event": "verify", "table": p.spec.name})
                self.sum_target(p)
        changed = [p for p in plans if not p.as_dict()["match"] and p.spec.primary_key]
        if mode == "copy" and changed:
            report.resynced = self.resync(changed)
            for p in changed:
                self.emit({"event": "verify", "table": p.spec.name})
                self.sum_target(p)
            report.sequences = self.set_sequences()
        report.seconds = time.monotonic() - t0
        return report

    def _refuse_foreign(self, plans: list[TablePlan]) -> None:
        foreign = self.foreign_rows(plans)
        if foreign:
            raise Conflict(
                f"the target already holds rows that did not come from {self.source} "
                f"(tables: {', '.join(foreign)})",
                hint="--overwrite empties the target's llmgw tables first (asks)",
            )

    # --- re-sync of rows changed in place ----------------------------------------------------

    def _source_rows(self, spec: TableSpec) -> dict[tuple[str, ...], tuple[int, int]]:
        """Primary key (canonical texts) -> (row hash, rowid) of every source row."""
        from llmgw.storage.canonical import _source_fn

        canon = source_canonicalizer(spec, strip_nul=self.options.strip_nul)
        keys = [(i, _source_fn(c, self.options.strip_nul)) for i, c in enumerate(spec.columns)
                if c.name in spec.primary_key]  # fmt: skip
        cols = ", ".join(quote(c) for c in spec.column_names)
        out: dict[tuple[str, ...], tuple[int, int]] = {}
        for row in self.src.execute(f"SELECT rowid, {cols} FROM {quote(spec.name)}"):
            values = row[1:]
            key = tuple(f(values[i]) for i, f in keys)
            digest = md5(canon(values).encode(), usedforsecurity=False).digest()
            out[key] = (int.from_bytes(digest, "big"), row[0])
        return out

    def resync(self, plans: list[TablePlan]) -> dict[str, dict[str, int]]:
        """Make the target's rows of ``plans`` equal the source's, row by row.

        Rows the source changed in place after they were copied (a live run: a key's
        ``last_used_at``, a revocation, a rollup) and rows it deleted: the row hashes of both
        sides are compared by primary key; rows that differ or are missing are written again
        (``INSERT ... ON CONFLICT DO UPDATE``), rows the source no longer has are deleted
        (children first), all in one transaction."""
        diffs = []
        for p in plans:
            spec = p.spec
            ours = self._source_rows(spec)
            theirs = {tuple(r[:-1]): int(r[-1], 16) for r in self.pg.execute(pg_rows_sql(spec))}
            write = [rowid for key, (h, rowid) in ours.items() if theirs.get(key) != h]
            delete = [key for key in theirs if key not in ours]
            diffs.append((spec, write, delete))
            self.emit({"event": "resync", "table": spec.name, "rows": len(write),
                       "deleted": len(delete)})  # fmt: skip
        done: dict[str, dict[str, int]] = {}
        with self.pg.transaction():
            for spec, _, delete in reversed(diffs):  # children before parents
                keys = [c for c in spec.columns if c.name in spec.primary_key]
                cond = " AND ".join(f"{pg_key_text(c)} = %s" for c in keys)
                with self.pg.cursor() as cur:
                    cur.executemany(f"DELETE FROM {quote(spec.name)} WHERE {cond}", delete)
            for spec, write, delete in diffs:  # parents before children
                done[str(spec.name)] = {"written": len(write), "deleted": len(delete)}
                if write:
                    self._upsert(spec, write)
        return done

    def _upsert(self, spec: TableSpec, rowids: list[int]) -> None:
        name = quote(spec.name)
        cols = ", ".join(quote(c) for c in spec.column_names)
        pk = ", ".join(quote(c) for c in spec.primary_key)
        sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in spec.column_names
                         if c not in spec.primary_key) or None  # fmt: skip
        nul = self.options.strip_nul
        self.pg.execute(f"CREATE TEMP TABLE llmgw_resync (LIKE {name}) ON COMMIT DROP")
        with self.pg.cursor() as cur, cur.copy(f"COPY llmgw_resync ({cols}) FROM STDIN") as cp:
            read = f"SELECT {cols} FROM {name} WHERE rowid = ?"
            for rowid in rowids:
                row = self.src.execute(read, (rowid,)).fetchone()
                cp.write_row(_strip_nul(row) if nul else row)
        action = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
        self.pg.execute(
            f"INSERT INTO {name} ({cols}) SELECT {cols} FROM llmgw_resync "
            f"ON CONFLICT ({pk}) {action}"
        )
        self.pg.execute("DROP TABLE llmgw_resync")


class _DirtyBatch(Exception):  # noqa: N818 - a signal, not an error shown to anyone
    """A value of the batch being copied matches no rule: the batch is rolled back; raised
    again out of ``copy_table`` with the table's plan (its ``done_rowid``: where the target
    ends)."""

    def __init__(self, plan: TablePlan | None = None) -> None:
        super().__init__()
        self.plan = plan


def _target_sum(
    conn: psycopg.Connection[Any], sql: str, args: tuple[int, int] | None = None
) -> TableSum:
    got = conn.execute(sql, args).fetchone()
    assert got is not None
    rows, high, low, carries = (int(v) for v in got)
    total = TableSum()
    total.merge(rows, pg_sum_total(high, low, carries))
    return total


_CHUNK = 5_000  # rows per COPY write inside a batch
_THEN = ";\n"  # separates the statements of one deferred index's DDL


def _fields_of(encoders: list[Callable[[Any], str]]) -> Callable[[Sequence[Any]], str]:
    """A row of ``sqlite_copy_sql`` -> the fields of its Python columns (from ``row[2]`` on),
    without a loop for up to five of them (usage has five)."""
    n = len(encoders)
    e: list[Callable[[Any], str]] = [*encoders, *[str] * (5 - n)]
    a, b, c, d, f = e[:5]
    if n == 0:
        return lambda row: ""
    if n == 1:
        return lambda row: a(row[2])
    if n == 2:
        return lambda row: a(row[2]) + b(row[3])
    if n == 3:
        return lambda row: a(row[2]) + b(row[3]) + c(row[4])
    if n == 4:
        return lambda row: a(row[2]) + b(row[3]) + c(row[4]) + d(row[5])
    if n == 5:
        return lambda row: a(row[2]) + b(row[3]) + c(row[4]) + d(row[5]) + f(row[6])
    return lambda row: "".join([enc(v) for enc, v in zip(encoders, row[2:], strict=True)])


def _python_encoders(spec: TableSpec) -> list[Callable[[Any], str]]:
    """For each Python column (float, JSON) of ``spec``: its source value -> its field of the
    row form, after the tab that separates it from the fields before it (none before the
    first field of a table without SQL columns)."""
    cols = python_columns(spec)
    first = len(cols) == len(spec.columns)
    return [_python_encoder(c, "" if first and i == 0 else "\t") for i, c in enumerate(cols)]


def _python_encoder(col: ColumnSpec, tab: str = "\t") -> Callable[[Any], str]:
    """A source value of a Python kind (``PYTHON_KINDS``) -> ``tab`` and its field of the row
    form; ``ValueError`` for a value no rule accepts."""
    from llmgw.storage.canonical import _source_fn

    kind = col.kind
    canon = _source_fn(col, False)
    null = tab + encode(kind, None)
    if kind == "datetime":  # llmgw's own form is canonical when it is a real instant
        check, laid_out = datetime.fromisoformat, own_timestamp

        def timestamp(v: Any) -> str:
            if v is None:
                return null
            if laid_out(v):
                check(v)  # a real instant
                field: str = tab + v
                return field
            return tab + encode(kind, canon(v))

        return timestamp
    if kind == "decimal":  # llmgw's own form is canonical without trailing zeros
        own = decimal_own_form(col.precision, col.scale)

        def amount(v: Any) -> str:
            if v is None:
                return null
            if type(v) is str and own(v):
                return tab + (v.rstrip("0").rstrip(".") if "." in v else v)
            return tab + encode(kind, canon(v))

        return amount
    if kind == "float":
        hexed = float.hex

        def float_part(v: Any) -> str:
            if v is None:
                return null
            return tab + hexed(v) if type(v) is float else tab + encode(kind, canon(v))

        return float_part
    seen: dict[tuple[type, Any], str] = {}  # JSON values repeat (the same metadata on many rows)

    def part(v: Any) -> str:
        if v is None:
            return null
        key = (type(v), v)  # 1 and 1.0 are equal keys, not equal JSON
        got = seen.get(key)
        if got is None:
            got = tab + encode(kind, canon(v))
            if len(seen) < 10_000:
                seen[key] = got
        return got

    return part


def _strip_nul(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.replace("\x00", "") if isinstance(v, str) else v for v in row)


@contextmanager
def opened(migration: Migration) -> Iterator[Migration]:
    """``migration`` with its connections open, closed afterwards."""
    try:
        migration.open()
        yield migration
    finally:
        migration.close()


def check_report(report: MigrationReport, saved: Path | None = None) -> None:
    """Raise ``DataCheckFailed`` naming what is wrong, if anything is (``saved``: the report)."""
    where_saved = f"; report: {saved}" if saved is not None else ""
    if report.problem_count:
        first = report.problems[0] if report.problems else None
        where = (
            f"; first: {first.table} rowid {first.rowid} column {first.column}: {first.problem}"
            if first
            else ""
        )
        kept = (
            f"the {report.copied:,} rows copied before the first batch holding one stay "
            "committed and a run after the fix resumes after them"
            if report.copied
            else "nothing was copied"
        )
        raise DataCheckFailed(
            f"{report.problem_count} source value(s) match no conversion rule{where}",
            hint=f"{kept}; the report lists the rows (docs/migration.md, 'Dirty data')"
            + where_saved,
        )
    if report.mode != "dry-run" and report.mismatched:
        raise DataCheckFailed(
            "the copy differs from the source in table(s) " + ", ".join(report.mismatched),
            hint="if the source changed after those rows were copied (a --live run), stop the "
            "gateway and run again with --overwrite" + where_saved,
        )
