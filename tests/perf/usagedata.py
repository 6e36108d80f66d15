"""Fill a migrated llmgw database with N synthetic usage rows, fast, for the admin benchmarks.

PostgreSQL: one ``COPY usage (...) FROM STDIN`` (text format, rows formatted in Python);
SQLite: one ``executemany`` in one transaction. Keys and users are created through
``LocalAdmin`` (real records, so ``--by key`` and ``--by user`` join real rows).

The rows span ``days`` days ending at ``end`` (default: now), in time order (so ids follow time,
as a running server writes them), with a daily cycle, 20 keys of 10 users, 9 (provider, model,
version) triples (two versions of ``yandexgpt-lite``), and statuses 200 (96%), 429, 502, 499, 400.
Deterministic for a given ``seed``.

    python tests/perf/usagedata.py postgresql://postgres@127.0.0.1/db --rows 1000000
"""

from __future__ import annotations

import argparse
import io
import math
import random
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

MODELS: tuple[tuple[str, str, str | None], ...] = (
    ("openai", "gpt-4o-mini", "2024-07-18"),
    ("openai", "gpt-4o", "2024-08-06"),
    ("openai", "text-embedding-3-small", None),
    ("yandex", "yandexgpt-lite", "rc"),
    ("yandex", "yandexgpt-lite", "latest"),
    ("yandex", "yandexgpt", "latest"),
    ("gigachat", "GigaChat", "1.0.26.20"),
    ("gigachat", "GigaChat-Pro", "1.0.26.20"),
    ("anthropic", "claude-3-5-haiku", "20241022"),
)
MODEL_WEIGHTS = (30, 10, 8, 12, 10, 8, 10, 5, 7)
STATUSES = (
    (200, None),
    (429, "rate_limited"),
    (502, "upstream_error"),
    (499, "client_disconnected"),
    (400, "bad_request"),
)
STATUS_WEIGHTS = (960, 20, 10, 5, 5)
COLUMNS = (
    "request_id", "created_at", "user_id", "key_id", "endpoint", "provider", "model",
    "model_version", "stream", "prompt_tokens", "completion_tokens", "total_tokens", "cost",
    "latency_ms", "ttft_ms", "status", "error_type",
)  # fmt: skip


def make_keys(engine: Any, users: int = 10, keys: int = 20) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``keys`` keys spread over ``users`` users; (key id, user id) pairs."""
    from llmgw.admin.local import LocalAdmin
    from llmgw.admin.ops import Actor

    admin = LocalAdmin(engine, Actor.local(), source="cli")
    emails = [f"user{i}@bench.example" for i in range(users)]
    for email in emails:
        admin.users_create(email)
    out = []
    for i in range(keys):
        rec = admin.keys_create(f"bench-{i}", user=emails[i % users])
        out.append((uuid.UUID(rec["id"]), uuid.UUID(rec["user_id"])))
    return out


def rows(
    n: int,
    keys: list[tuple[uuid.UUID, uuid.UUID]],
    *,
    end: datetime,
    days: float,
    seed: int = 1,
) -> Any:
    """Yield ``n`` usage rows as tuples in ``COLUMNS`` order, oldest first."""
    rnd = random.Random(seed)
    span = days * 86400.0
    start = end - timedelta(seconds=span)
    # A daily cycle: more traffic in the day than at night (inverse-CDF of 1 + 0.6 sin).
    picks_model = rnd.choices(range(len(MODELS)), MODEL_WEIGHTS, k=n)
    picks_status = rnd.choices(range(len(STATUSES)), STATUS_WEIGHTS, k=n)
    picks_key = [rnd.randrange(len(keys)) for _ in range(n)]
    for i in range(n):
        t = (i + rnd.random()) / n * span
        t += 0.3 * 3600 * math.sin(2 * math.pi * t / 86400)  # cluster around mid-day
        t = min(max(t, 0.0), span - 0.001)
        provider, model, version = MODELS[picks_model[i]]
        status, error = STATUSES[picks_status[i]]
        key_id, user_id = keys[picks_key[i]]
        ok = status == 200
        prompt = rnd.randint(20, 2000) if status != 400 else 0
        completion = rnd.randint(1, 800) if ok and model != "text-embedding-3-small" else 0
        latency = rnd.lognormvariate(6.0, 0.7) if status != 400 else rnd.uniform(0.5, 3)
        yield (
            f"req-{seed}-{i:09d}",
            start + timedelta(seconds=t),
            user_id,
            key_id,
            "embeddings" if model == "text-embedding-3-small" else "chat",
            provider,
            model,
            version,
            ok and rnd.random() < 0.4,
            prompt,
            completion,
            prompt + completion,
            f"{(prompt * 15 + completion * 60) / 1e8:.10f}" if ok else "0",
            round(latency, 3),
            round(latency * 0.3, 3) if ok else None,
            status,
            error,
        )


def _pg_text(v: Any) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def fill(
    engine: Any, n: int, *, end: datetime | None = None, days: float = 30.0, seed: int = 1
) -> dict[str, Any]:
    """Create the keys and ``n`` usage rows; returns timings and the keys."""
    end = end or datetime.now(UTC)
    keys = make_keys(engine)
    t0 = time.perf_counter()
    gen = rows(n, keys, end=end, days=days, seed=seed)
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY usage ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                buf = io.StringIO()
                for k, row in enumerate(gen, 1):
                    buf.write("\t".join(map(_pg_text, row)))
                    buf.write("\n")
                    if k % 50_000 == 0:
                        copy.write(buf.getvalue())
                        buf = io.StringIO()
                copy.write(buf.getvalue())
            raw.commit()
            cur.execute("ANALYZE usage")
            raw.commit()
        finally:
            raw.close()
    else:

        def sqlite_rows() -> Any:
            for r in gen:
                yield (
                    r[0],
                    r[1].replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds"),
                    r[2].hex,
                    r[3].hex,
                    *r[4:8],
                    int(r[8]),
                    *r[9:],
                )

        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            marks = ", ".join("?" * len(COLUMNS))
            cur.executemany(
                f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({marks})", sqlite_rows()
            )
            raw.commit()
            cur.execute("ANALYZE")
            raw.commit()
        finally:
            raw.close()
    return {"rows": n, "seconds": time.perf_counter() - t0, "keys": keys, "end": end}


def _sql_text(v: str | None) -> str:
    return "NULL" if v is None else "'" + v.replace("'", "''") + "'"


def _case(index: str, values: Sequence[str]) -> str:
    """``values[index]`` in SQL (``values`` already SQL literals)."""
    arms = " ".join(f"WHEN {k} THEN {v}" for k, v in enumerate(values[:-1]))
    return f"CASE {index} {arms} ELSE {values[-1]} END"


def _thresholds(u: str, weights: Sequence[int]) -> str:
    """The index picked by ``u`` (uniform in [0, sum(weights))) with these weights."""
    arms, acc = [], 0
    for k, w in enumerate(weights[:-1]):
        acc += w
        arms.append(f"WHEN {u} < {acc} THEN {k}")
    return f"CASE {' '.join(arms)} ELSE {len(weights) - 1} END"


def fill_sql_statement(
    dialect: str,
    lo: int,
    hi: int,
    n: int,
    keys: Sequence[tuple[uuid.UUID, uuid.UUID]],
    *,
    start: datetime,
    span: float,
    seed: int = 1,
) -> str:
    """One ``INSERT ... SELECT`` of the rows ``lo <= i < hi`` of ``n``, drawn inside the database
    with ``rows``'s distribution (the same time spread and daily cycle, weights of models and
    statuses, token and latency laws), oldest first. PostgreSQL draws over ``generate_series``,
    SQLite over a recursive CTE (with its math functions); the random values are drawn once per
    row at the innermost level (a subquery with volatile functions is not flattened; SQLite's
    recursive CTE keeps each row's values in its queue)."""
    pg = dialect == "postgresql"
    # SQLite: in (0, 1), so ln(1 - u) stays finite
    u = "random()" if pg else "((abs(random() % 1000000000) + 0.5) / 1000000000.0)"
    draws = (
        f"{u} AS ut, {u} * {sum(MODEL_WEIGHTS)} AS um, {u} * {sum(STATUS_WEIGHTS)} AS us, "
        f"CAST(floor({u} * {len(keys)}) AS INTEGER) AS ki, "
        + ", ".join(f"{u} AS u{j}" for j in range(1, 7))
    )
    names = "i, ut, um, us, ki, u1, u2, u3, u4, u5, u6"
    if pg:
        source = f"(SELECT i, {draws} FROM generate_series({lo}, {hi - 1}) AS i) AS g"
        prefix = ""
    else:
        prefix = (
            f"WITH RECURSIVE g({names}) AS (SELECT {lo}, {draws} "
            f"UNION ALL SELECT i + 1, {draws} FROM g WHERE i + 1 < {hi}) "
        )
        source = "g"
    level2 = (
        f"SELECT i, ki, u1, u2, u3, u4, u5, u6, {_thresholds('um', MODEL_WEIGHTS)} AS mi, "
        f"{_thresholds('us', STATUS_WEIGHTS)} AS si, (i + ut) / {n} * {span!r} AS tt "
        f"FROM {source}"
    )
    embedding = [m for _, m, _ in MODELS].index("text-embedding-3-small")
    bad = [s for s, _ in STATUSES].index(400)
    level3 = (
        f"SELECT i, ki, mi, si, u6, "
        f"CASE WHEN si = {bad} THEN 0 ELSE 20 + CAST(floor(u1 * 1981) AS INTEGER) END AS prompt, "
        f"CASE WHEN si = 0 AND mi <> {embedding} THEN 1 + CAST(floor(u2 * 800) AS INTEGER) "
        f"ELSE 0 END AS completion, "
        f"CASE WHEN si = {bad} THEN 0.5 + 2.5 * u5 "
        f"ELSE exp(6.0 + 0.7 * sqrt(-2 * ln(1 - u3)) * cos(2 * pi() * u4)) END AS lat, "
        f"{'least' if pg else 'min'}({'greatest' if pg else 'max'}("
        f"tt + 1080.0 * sin(2 * pi() * tt / 86400), 0), {span - 0.001!r}) AS t "
        f"FROM ({level2}) AS l2"
    )
    if pg:
        key = _case("ki", [f"CAST('{k}' AS uuid)" for k, _ in keys])
        user = _case("ki", [f"CAST('{v}' AS uuid)" for _, v in keys])
        created = f"CAST('{start.isoformat()}' AS timestamptz) + make_interval(secs => t)"
        request = f"'req-{seed}-' || lpad(CAST(i AS text), 9, '0')"
        cost = (
            "CASE WHEN si = 0 THEN round(CAST(prompt * 15 + completion * 60 AS numeric) "
            "/ 100000000, 10) ELSE 0 END"
        )
        latency = "round(CAST(lat AS numeric), 3)"
        ttft = "CASE WHEN si = 0 THEN round(CAST(lat * 0.3 AS numeric), 3) END"
    else:
        key = _case("ki", [f"'{k.hex}'" for k, _ in keys])
        user = _case("ki", [f"'{v.hex}'" for _, v in keys])
        epoch = f"({start.timestamp()!r} + t)"
        created = (
            f"strftime('%Y-%m-%d %H:%M:%S', CAST({epoch} AS INTEGER), 'unixepoch') || "
            f"printf('.%06d', min(CAST(({epoch} - CAST({epoch} AS INTEGER)) * 1000000 AS INTEGER),"
            " 999999))"
        )
        request = f"printf('req-{seed}-%09d', i)"
        cost = (
            "CASE WHEN si = 0 THEN printf('%.10f', (prompt * 15 + completion * 60) / 100000000.0)"
            " ELSE '0' END"
        )
        latency = "round(lat, 3)"
        ttft = "CASE WHEN si = 0 THEN round(lat * 0.3, 3) END"
    model = [
        (
            _sql_text(p),
            _sql_text(m),
            _sql_text(v),
            _sql_text("embeddings" if "embedding" in m else "chat"),
        )
        for p, m, v in MODELS
    ]
    status = [(str(s), _sql_text(e)) for s, e in STATUSES]
    select = ", ".join(
        (
            request,
            created,
            user,
            key,
            _case("mi", [e for *_, e in model]),
            _case("mi", [p for p, *_ in model]),
            _case("mi", [m for _, m, *_ in model]),
            _case("mi", [v for *_, v, _ in model]),
            "si = 0 AND u6 < 0.4",
            "prompt",
            "completion",
            "prompt + completion",
            cost,
            latency,
            ttft,
            _case("si", [s for s, _ in status]),
            _case("si", [e for _, e in status]),
        )
    )
    return f"{prefix}INSERT INTO usage ({', '.join(COLUMNS)}) SELECT {select} FROM ({level3}) AS l3"


def _secondary_indexes(cur: Any, dialect: str) -> list[tuple[str, str]]:
    """(name, definition) of ``usage``'s indexes that no constraint owns (dropped for a bulk
    fill, made again after it: one sort each instead of ten million random insertions)."""
    if dialect == "postgresql":
        cur.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = 'usage'::regclass"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
        )
    else:
        cur.execute(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'index' AND tbl_name = 'usage' AND sql IS NOT NULL"
        )
    return [(str(name), str(sql)) for name, sql in cur.fetchall()]


def _sqlite_math(engine: Any) -> bool:
    """Whether this SQLite has its math functions (``fill_sql_statement`` needs them)."""
    raw = engine.raw_connection()
    try:
        raw.cursor().execute("SELECT sin(0), ln(1), exp(0), sqrt(1), pi(), floor(1.5)")
    except Exception:  # noqa: BLE001 - built without them
        return False
    finally:
        raw.close()
    return True


def fill_sql(
    engine: Any,
    n: int,
    *,
    end: datetime | None = None,
    days: float = 30.0,
    seed: int = 1,
    batch: int = 1_000_000,
    progress: Any = None,
) -> dict[str, Any]:
    """``fill`` with the rows drawn by the database itself (``fill_sql_statement``), ``batch``
    rows a statement, the secondary indexes of ``usage`` made again once at the end, then
    ``VACUUM ANALYZE`` (PostgreSQL) or ``ANALYZE`` (SQLite): minutes for 10M rows where
    ``fill`` took most of an hour. Not deterministic (the databases' own ``random()``). Falls
    back to ``fill`` on a SQLite without its math functions."""
    end = end or datetime.now(UTC)
    dialect = engine.dialect.name
    if dialect != "postgresql" and not _sqlite_math(engine):
        return fill(engine, n, end=end, days=days, seed=seed)
    keys = make_keys(engine)
    t0 = time.perf_counter()
    span = days * 86400.0
    start = end - timedelta(seconds=span)
    raw = engine.raw_connection()
    raw.detach()  # its settings below end with it
    try:
        cur = raw.cursor()
        if dialect == "postgresql":
            cur.execute("SET maintenance_work_mem = '512MB'")
        else:
            cur.execute("PRAGMA synchronous = OFF")
            cur.execute("PRAGMA cache_size = -1000000")
        indexes = _secondary_indexes(cur, dialect)
        for name, _ in indexes:
            cur.execute(f"DROP INDEX {name}")
        raw.commit()
        for lo in range(0, n, batch):
            hi = min(n, lo + batch)
            cur.execute(
                fill_sql_statement(dialect, lo, hi, n, keys, start=start, span=span, seed=seed)
            )
            raw.commit()
            if progress is not None:
                progress(hi, time.perf_counter() - t0)
        for _, sql in indexes:
            cur.execute(sql)
        raw.commit()
        if dialect == "postgresql":
            raw.dbapi_connection.autocommit = True  # VACUUM runs outside a transaction
            cur.execute("VACUUM (ANALYZE) usage")  # no autovacuum during the measured runs
            raw.dbapi_connection.autocommit = False
        else:
            cur.execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()
    return {"rows": n, "seconds": time.perf_counter() - t0, "keys": keys, "end": end}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("url")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--sql", action="store_true", help="draw the rows in the database (fill_sql)")
    args = ap.parse_args()
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(args.url)
    upgrade(engine)
    out = (fill_sql if args.sql else fill)(engine, args.rows, days=args.days)
    print(f"{out['rows']:,} rows in {out['seconds']:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
