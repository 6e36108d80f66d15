"""A generated llmgw SQLite database (users, keys, usage) for migration tests and benchmarks.

Rows are written with SQL in the exact formats llmgw stores on SQLite (32-hex UUIDs, naive UTC
timestamps with 6 fraction digits, costs as text, 0/1 booleans, JSON text), so a million usage
rows take seconds, not minutes. ``tests/perf/bench_migrate.py`` imports this module too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def migrated_sqlite(path: Path) -> None:
    """An empty llmgw database at ``path``, at the newest schema revision."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def generate(path: Path, *, usage: int, users: int = 50, keys: int = 200, start: int = 0) -> None:
    """Fill ``path`` (migrated) with ``users``, ``keys`` and ``usage`` rows (ids after ``start``)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            if start == 0:
                conn.execute(
                    """
                    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
                    INSERT INTO users (id, email, name, role, disabled, created_at)
                    SELECT printf('%032x', i), 'user' || i || '@example.com', 'User ' || i,
                           CASE WHEN i = 1 THEN 'admin' ELSE 'user' END, i % 7 = 0,
                           printf('%s.%06d', datetime(1764000000 + i * 60, 'unixepoch'), i)
                    FROM n
                    """,
                    (users,),
                )
                conn.execute(
                    """
                    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
                    INSERT INTO api_keys (id, name, user_id, prefix, digest, created_at,
                                          expires_at, revoked_at, last_used_at, rpm, tpm, models,
                                          rotated_from)
                    SELECT printf('%032x', 1000000 + i), 'key ' || i, printf('%032x', 1 + i % ?),
                           printf('llmgw_%06d', i), printf('%064x', i),
                           printf('%s.%06d', datetime(1764100000 + i, 'unixepoch'), i),
                           NULL, CASE WHEN i % 10 = 0 THEN '2026-12-01 00:00:00.000000' END,
                           NULL, CASE WHEN i % 3 = 0 THEN 60 END, NULL,
                           CASE WHEN i % 4 = 0 THEN '["gpt-4o-mini","yandexgpt-lite"]'
                                ELSE 'null' END,
                           NULL
                    FROM n
                    """,
                    (keys, users),
                )
            conn.execute(
                """
                WITH RECURSIVE n(i) AS (SELECT ? + 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
                INSERT INTO usage (id, request_id, created_at, user_id, key_id, endpoint, provider,
                                   model, model_version, stream, prompt_tokens, completion_tokens,
                                   total_tokens, cost, latency_ms, ttft_ms, status, error_type,
                                   metadata)
                SELECT i, printf('req-%012d', i),
                       printf('%s.%06d', datetime(1764200000 + i, 'unixepoch'), i % 1000000),
                       printf('%032x', 1 + i % ?), printf('%032x', 1000000 + 1 + i % ?),
                       CASE WHEN i % 5 = 0 THEN 'embeddings' ELSE 'chat' END,
                       CASE i % 3 WHEN 0 THEN 'openai' WHEN 1 THEN 'gigachat' ELSE 'yandex' END,
                       CASE i % 3 WHEN 0 THEN 'gpt-4o-mini' WHEN 1 THEN 'GigaChat'
                            ELSE 'yandexgpt-lite' END,
                       CASE WHEN i % 2 = 0 THEN 'latest' END, i % 2,
                       i % 900, i % 300, i % 900 + i % 300,
                       printf('0.%06d', i % 999999), (i % 5000) / 7.0,
                       CASE WHEN i % 2 = 1 THEN (i % 700) / 3.0 END,
                       CASE WHEN i % 50 = 0 THEN 429 ELSE 200 END,
                       CASE WHEN i % 50 = 0 THEN 'rate_limited' END,
                       CASE WHEN i % 10 = 0 THEN '{"route":"primary","attempts":' || (i % 3)
                            || ',"retry":1.5}' END
                FROM n
                """,
                (start, start + usage, users, keys),
            )
    finally:
        conn.close()
