"""The checksums' canonical form computed in SQL (SQLite for the source, PostgreSQL for the
target) equals the Python form (``canonical``) on every column kind (MIG-1's proof)."""

from __future__ import annotations

import json
import random
import sqlite3
import struct
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from llmgw.storage.canonical import (
    checksum_rows,
    float_text,
    jsonb_text,
    parse_json,
    source_canonicalizer,
    table_specs,
    target_canonicalizer,
)
from llmgw.storage.sqlite_source import open_snapshot
from llmgw.storage.transfer import Migration, Options, TablePlan
from llmgw.storage.types import JSONType, Money, UTCDateTime

pytestmark = pytest.mark.postgres

META = sa.MetaData()
KINDS = sa.Table(
    "kinds",
    META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("b", sa.Boolean),
    sa.Column("f", sa.Float),
    sa.Column("m", Money()),
    sa.Column("u", sa.Uuid),
    sa.Column("t", UTCDateTime()),
    sa.Column("j", JSONType),
    sa.Column("s", sa.String(300)),
    sa.Column("x", sa.LargeBinary),
)

U = "0123456789abcdef0123456789abcdef"
JSON_CASES = [
    '{"b":1,"aa":[1.0,1e2,-0.0,"x\\ty"],"a":null}',
    '{"é":"ü","z":{"k":[true,false,null]},"a":"\\"q\\\\"}',
    '{"a":1,"a":2}',
    "[]",
    "{}",
    '"just text"',
    '{"n":-12.50,"e":1.5E-3,"big":123456789012345678901234567890,"small":1e-30}',
    '{"ctl":"\\u0001\\b\\f\\n\\r\\u001f","astral":"\\ud83d\\ude00 😀","slash":"a/b"}',
    '{"bb":1,"a":2,"ccc":3,"aa":4,"\\u00e9":5}',
]
ROWS: list[tuple[Any, ...]] = [
    # llmgw's own storage forms (SQLite's fast path)
    (1, 1, 0.1, "0.0012000000", U, "2026-12-03 10:00:00.000001", JSON_CASES[0], "plain", b""),
    (2, 0, -0.0, "0", U, "1999-01-31 23:59:59.999999", JSON_CASES[1], "", b"\x00\xff"),
    (3, None, None, None, None, None, None, None, None),
    (
        4,
        1,
        1e15,
        "100.0000000000",
        U,
        "2024-02-29 00:00:00.000000",
        JSON_CASES[2],
        "tab\there",
        b"x",
    ),
    (
        5,
        0,
        1234567890123456.5,
        "9999999999.9999999999",
        U,
        "0001-01-01 00:00:00.000000",
        JSON_CASES[3],
        "ünïcödé 😀 \\ back\nslash\r",
        b"\x10",
    ),  # fmt: skip
    (6, 1, 5e-324, "10", U, "2026-01-01 00:00:00.000000", JSON_CASES[4], "a|b:3:N", None),
    (7, 0, 1.7976931348623157e308, "0.5", U, None, JSON_CASES[5], "N", None),
    (8, 1, 1 / 3, "123.45", U, None, JSON_CASES[6], "|", None),
    (9, 0, float("inf"), "1.0", U, None, JSON_CASES[7], "'quote'", None),
    (10, 1, 12345.0, "2", U, None, JSON_CASES[8], "\\N", None),
    # other accepted forms (Python's path): upper-case or dashed UUIDs, ISO timestamps with
    # offsets, decimals with signs and exponents, numbers in JSON columns
    (11, 1, 7, "-1.50", U.upper(), "2026-12-03T10:00:00Z", 42, "x", None),
    (
        12,
        0,
        2.5,
        "1e-3",
        "01234567-89ab-cdef-0123-456789abcdef",
        "2026-12-03 12:00:00+02:00",
        1.25,
        "y",
        None,
    ),  # fmt: skip
    (13, 1, -1e-7, ".5", U, "2026-12-03 10:00", "[1, 2]", "z", None),
    (14, 0, 0.0, "+7", U, "2026-12-03T10:00:00.5-01:30", None, None, None),
    # more fraction digits than the scale, but only trailing zeros beyond it (SQLite's own form)
    (15, 1, 2.5, "1.500000000000", U, "2026-12-03 10:00:00.000000", None, "y", None),
    # the length and separators of llmgw's own timestamp form, but an offset: converted to UTC
    (16, 0, 3.5, "0.10", U, "2026-12-03 10:00:00.000+01", None, "o", None),
]


def _source(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        META.create_all(sa.create_engine(f"sqlite:///{path}"))
        conn.executemany("INSERT INTO kinds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", ROWS)
    conn.close()


def test_sql_forms_equal_python_forms_on_every_kind(tmp_path: Path, pg_url: str) -> None:
    src = tmp_path / "kinds.db"
    _source(src)
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    META.create_all(engine)
    engine.dispose()
    spec = table_specs(META)[0]
    assert {c.kind for c in spec.columns} == {
        "int", "bool", "float", "decimal", "uuid", "datetime", "json", "text", "bytes",
    }  # fmt: skip

    migration = Migration(src, pg_url, Options(batch_size=4), specs=[spec])
    migration._src = open_snapshot(src)
    migration._pg = psycopg.connect(pg_url, autocommit=True)
    try:
        migration.pg.execute("SET TIME ZONE 'UTC'")
        # the source: SQLite's SQL form (plus Python for floats and JSON) against pure Python
        problems, _, in_sql = migration._sum_source(spec)
        assert problems == 0
        raw = migration.src.execute("SELECT * FROM kinds").fetchall()
        in_python = checksum_rows(raw, source_canonicalizer(spec))
        assert (in_sql.rows, in_sql.checksum) == (in_python.rows, in_python.checksum)
        assert in_sql.rows == len(ROWS)

        # the copy (SQLite-printed COPY lines, Python's write_row for the rest), then the
        # target: PostgreSQL's one statement against Python over the rows psycopg reads
        migration._ensure_progress_table()
        plan = TablePlan(spec, len(ROWS), len(ROWS), 0, 0, len(ROWS))
        migration.copy_table(plan)
        # the copy sums the source as it reads it (the pass a real run relies on)
        assert plan.source_sum is not None
        assert (plan.source_sum.rows, plan.source_sum.checksum) == (in_sql.rows, in_sql.checksum)
        migration.sum_target(plan)
        assert plan.target_sum is not None
        cols = ", ".join(f"{c.name}::text" if c.kind == "json" else c.name for c in spec.columns)
        rows = migration.pg.execute(f"SELECT {cols} FROM kinds").fetchall()  # noqa: S608
        target_python = checksum_rows(rows, target_canonicalizer(spec))
        assert plan.target_sum.checksum == target_python.checksum
        assert plan.target_sum.checksum == in_sql.checksum
        assert plan.target_sum.rows == len(ROWS)

        # and a changed value changes the sum (the proof can fail)
        migration.pg.execute("UPDATE kinds SET m = m + 0.0000000001 WHERE id = 1")
        migration.sum_target(plan)
        assert plan.target_sum.checksum != in_sql.checksum
    finally:
        migration.close()


def test_float_text_is_built_by_postgresql_and_read_back_exactly(pg_url: str) -> None:
    """The float field (C99 hex notation): PostgreSQL's SQL writes the text Python writes,
    and PostgreSQL's float input (COPY) reads Python's text back as the same bits."""
    from llmgw.storage.canonical_sql import _pg_float

    rng = random.Random(12)
    values = [0.0, -0.0, 1.0, -1.0, 0.5, 100.0, 1e14, 1e15, 1.5e15, 9999999999999998.0, 1e16,
              1e-4, 1e-5, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
              1.7976931348623157e308, float("inf"), float("-inf"), float("nan")]  # fmt: skip
    values += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(20000)]
    values += [rng.uniform(-1e17, 1e17) for _ in range(5000)]
    values += [rng.randint(0, 5000) / 7.0 for _ in range(5000)]
    texts = [float_text(v) for v in values]
    with psycopg.connect(pg_url) as conn:
        got = conn.execute(
            f"SELECT array_agg({_pg_float('v')} ORDER BY n), "  # noqa: S608
            "array_agg(encode(float8send(t::float8), 'hex') = encode(float8send(v), 'hex') "
            "ORDER BY n) FROM unnest(%s::float8[], %s::text[]) WITH ORDINALITY AS x(v, t, n)",
            (values, texts),
        ).fetchone()
    assert got is not None
    printed, same_bits = got
    assert [(v, t, p) for v, t, p in zip(values, texts, printed, strict=True) if t != p] == []
    assert [(v, t) for v, t, ok in zip(values, texts, same_bits, strict=True) if not ok] == []


def test_jsonb_text_is_postgresqls_jsonb_text(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        for case in JSON_CASES:
            got = conn.execute("SELECT %s::jsonb::text", (case,)).fetchone()
            assert got is not None
            assert jsonb_text(parse_json(case)) == got[0], case
            assert json.loads(got[0]) is not None or case == "null"


@pytest.mark.parametrize("bad", ['{"a": NaN}', '"\\u0000"', "{'a': 1}", "[1,", "Infinity"])
def test_json_postgresql_refuses_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        jsonb_text(parse_json(bad))


def test_uuid_rule_accepts_hex_forms_and_reports_the_rest() -> None:
    from llmgw.storage.canonical import ColumnSpec, TableSpec
    from llmgw.storage.sqlite_source import sql_problems

    spec = TableSpec("t", (ColumnSpec("u", "uuid", True),))
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (u)")
    good = ["0123456789abcdef" * 2, "0123456789ABCDEF" * 2, "01234567-89ab-cdef-0123-456789abcdef"]
    bad = ["0123456789abcdeg" * 2, "0123456789abcdef" * 2 + "0", "0123456789abcde" * 2 + "é",
           "", "z", "-" * 32]  # fmt: skip
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in [*good, None, *bad]])
    count, found = sql_problems(conn, spec, strip_nul=False, limit=20)
    assert count == len(bad)
    assert [p.rowid for p in found] == list(range(len(good) + 2, len(good) + 2 + len(bad)))
    assert {p.problem for p in found} == {"not a UUID"}


WIDE = sa.Table(
    "wide",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("flag", sa.Boolean, nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("u", sa.Uuid, nullable=False),
    *[sa.Column(f"c{i}", sa.String(20) if i % 2 else sa.Integer) for i in range(96)],
)


def test_wide_table_and_not_null_fields_sum_alike(tmp_path: Path, pg_url: str) -> None:
    """Beyond one ``concat_ws`` call's arguments (the line is joined in parts), and with NOT
    NULL integers and booleans printed without a cast: the target's statement equals Python's
    sum over the same rows, and the source's; a changed boolean changes it."""
    src = tmp_path / "wide.db"
    sqlite_engine = sa.create_engine(f"sqlite:///{src}")
    WIDE.metadata.create_all(sqlite_engine)
    rng = random.Random(7)
    rows: list[dict[str, Any]] = [
        {"id": i, "flag": int(i % 2 == 0), "n": rng.randint(-(2**63), 2**63 - 1),
         "u": U if i % 3 else "fedcba9876543210" * 2,
         **{f"c{k}": (None if rng.random() < 0.2 else f"v\t{i}\\{k}" if k % 2 else i * k)
            for k in range(96)}}
        for i in range(1, 41)
    ]  # fmt: skip
    with sqlite_engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO wide VALUES ({', '.join(':' + c.name for c in WIDE.columns)})"),
            rows,
        )
    sqlite_engine.dispose()
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    WIDE.metadata.create_all(engine)
    engine.dispose()
    spec = table_specs(WIDE.metadata)[0]
    assert len(spec.columns) > 90
    migration = Migration(src, pg_url, Options(batch_size=16), specs=[spec])
    migration._src = open_snapshot(src)
    migration._pg = psycopg.connect(pg_url, autocommit=True)
    try:
        migration._ensure_progress_table()
        plan = TablePlan(spec, len(rows), len(rows), 0, 0, len(rows))
        migration.copy_table(plan)
        migration.sum_target(plan)
        assert plan.source_sum is not None and plan.target_sum is not None
        got = migration.pg.execute("SELECT * FROM wide").fetchall()
        in_python = checksum_rows(got, target_canonicalizer(spec))
        assert (plan.target_sum.rows, plan.target_sum.checksum) == (len(rows), in_python.checksum)
        assert plan.target_sum.checksum == plan.source_sum.checksum
        migration.pg.execute("UPDATE wide SET flag = NOT flag WHERE id = 7")
        migration.sum_target(plan)
        assert plan.target_sum.checksum != plan.source_sum.checksum
    finally:
        migration.close()


def test_signed_halves_add_up_to_the_128_bit_sum() -> None:
    """``pg_sum_total`` rebuilds the sum of 128-bit hashes from what PostgreSQL adds: the
    signed 64-bit halves and the count of negative low halves (the carries)."""
    from llmgw.storage.canonical_sql import pg_sum_total

    rng = random.Random(3)
    edge = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**127, 2**128 - 1, (2**64 - 1) << 64]
    for hashes in [edge, [2**64 - 1] * 1000, [rng.getrandbits(128) for _ in range(5000)]]:

        def signed(v: int) -> int:
            return v - (1 << 64) if v >= 1 << 63 else v

        high = sum(signed(h >> 64) for h in hashes)
        low = sum(signed(h & (2**64 - 1)) for h in hashes)
        carries = sum(1 for h in hashes if h & (1 << 63))
        assert pg_sum_total(high, low, carries) == sum(hashes) % (1 << 128)
