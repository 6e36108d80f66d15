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


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("url")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=30.0)
    args = ap.parse_args()
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(args.url)
    upgrade(engine)
    out = fill(engine, args.rows, days=args.days)
    print(f"{out['rows']:,} rows in {out['seconds']:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
