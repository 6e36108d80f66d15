"""``llmgw db migrate``: SQLite -> PostgreSQL with proof (security.md §4.9, MIG-1..MIG-5)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.migrate_data import generate, migrated_sqlite

pytestmark = pytest.mark.postgres

LLMGW = str(Path(sys.executable).with_name("llmgw"))


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _report(stdout: str) -> dict[str, Any]:
    last = _lines(stdout)[-1]
    assert last["event"] == "report"
    return last


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A migrated SQLite database with 50 users, 200 keys and 3,000 usage rows."""
    path = tmp_path / "src.db"
    migrated_sqlite(path)
    generate(path, usage=3000)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _migrate(cli: Any, src: Path, pg_url: str, *extra: str) -> Any:
    return cli("db", "migrate", "--from", f"sqlite:///{src}", "--to", pg_url, "--json", *extra)


def test_MIG1_counts_and_checksums_match_and_report_is_saved(
    cli: Any, source: Path, pg_url: str, tmp_path: Path
) -> None:
    before = _sha(source)
    saved = tmp_path / "report.json"
    r = _migrate(cli, source, pg_url, "--report", str(saved), "--batch-size", "700")
    assert r.exit_code == 0, r.stderr
    report = _report(r.stdout)
    assert report["ok"] and report["mismatched"] == []
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["usage"]["source_rows"] == tables["usage"]["target_rows"] == 3000
    assert tables["users"]["target_rows"] == 50 and tables["api_keys"]["target_rows"] == 200
    assert all(t["match"] and t["source_checksum"] == t["target_checksum"] for t in tables.values())
    assert json.loads(saved.read_text())["tables"] == report["tables"]
    # progress: JSON lines per batch with rows/s, the batches are 700 rows
    usage = [e for e in _lines(r.stdout) if e["event"] == "progress" and e["table"] == "usage"]
    assert [e["done"] for e in usage][:3] == [700, 1400, 2100] and usage[-1]["done"] == 3000
    assert _sha(source) == before  # the source is never written

    # A mismatch injected on purpose: one cost changed by one hundredth on the target.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE usage SET cost = cost + 0.01 WHERE id = 17")
    bad = _migrate(cli, source, pg_url, "--verify-only")
    assert bad.exit_code == 10
    assert "usage" in bad.stderr.splitlines()[0] and bad.stderr.startswith("Error: ")
    assert _report(bad.stdout)["mismatched"] == ["usage"]
    # ... and a row missing: counts differ
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE usage SET cost = cost - 0.01 WHERE id = 17")
        conn.execute("DELETE FROM api_keys WHERE prefix = 'llmgw_000007'")
    gone = _migrate(cli, source, pg_url, "--verify-only")
    assert gone.exit_code == 10
    keys = {t["table"]: t for t in _report(gone.stdout)["tables"]}["api_keys"]
    assert (keys["source_rows"], keys["target_rows"], keys["match"]) == (200, 199, False)


def test_MIG1_values_read_back_the_same_through_llmgw(cli: Any, source: Path, pg_url: str) -> None:
    assert _migrate(cli, source, pg_url).exit_code == 0
    stats = ("usage", "stats", "--by", "model", "--since", "2000-01-01", "--json")
    src = cli(*stats, env={"LLMGW_DATABASE_URL": f"sqlite:///{source}"})
    dst = cli(*stats, env={"LLMGW_DATABASE_URL": pg_url})
    assert src.exit_code == dst.exit_code == 0, dst.stderr
    src_rows, dst_rows = json.loads(src.stdout)["rows"], json.loads(dst.stdout)["rows"]
    assert src_rows == dst_rows and sum(r["requests"] for r in dst_rows) == 3000
    keys = cli("keys", "list", "--all", "--json", env={"LLMGW_DATABASE_URL": pg_url})
    assert len(json.loads(keys.stdout)) == 200


def test_MIG2_new_rows_insert_without_explicit_ids(cli: Any, source: Path, pg_url: str) -> None:
    assert _migrate(cli, source, pg_url).exit_code == 0
    env = {"LLMGW_DATABASE_URL": pg_url}
    made = cli("keys", "create", "--name", "after-move", "--json", env=env)  # writes audit_log too
    assert made.exit_code == 0, made.stderr
    with psycopg.connect(pg_url, autocommit=True) as conn:
        new_id = conn.execute(
            "INSERT INTO usage (request_id, created_at, endpoint, stream, prompt_tokens, "
            "completion_tokens, total_tokens, cost, latency_ms, status) "
            "VALUES ('after-move', now(), 'chat', false, 1, 1, 2, 0, 1.0, 200) RETURNING id"
        ).fetchone()
        audit = conn.execute("SELECT max(id), count(*) FROM audit_log").fetchone()
    assert new_id is not None and new_id[0] == 3001
    assert audit == (1, 1)


def _dirty(path: Path, *rows: tuple[str, Any]) -> None:
    """Write usage rows with one raw value each (column, value) past the generated ones."""
    conn = sqlite3.connect(path)
    with conn:
        for i, (column, value) in enumerate(rows):
            conn.execute(
                "INSERT INTO usage (request_id, created_at, endpoint, stream, prompt_tokens, "
                "completion_tokens, total_tokens, cost, latency_ms, status) "
                "VALUES (?, '2026-12-03 09:00:00.000000', 'chat', 0, 1, 1, 2, '0.5', 1.0, 200)",
                (f"dirty-{i}",),
            )
            conn.execute(
                f'UPDATE usage SET "{column}" = ? WHERE request_id = ?', (value, f"dirty-{i}")
            )
    conn.close()


def test_MIG3_values_no_rule_accepts_stop_the_run_listing_rows(
    cli: Any, source: Path, pg_url: str
) -> None:
    lite = sqlite3.connect(source)
    with lite:  # invalid UTF-8 can only be written as a cast blob
        lite.execute("UPDATE usage SET provider = CAST(x'ff6f70656e6169' AS TEXT) WHERE id = 5")
    lite.close()
    _dirty(
        source,
        ("prompt_tokens", "twelve"),  # text in an INTEGER column
        ("model", "gpt\x00evil"),  # NUL in text
        ("stream", 2),  # a boolean that is neither 0 nor 1
        ("created_at", 1764200000),  # a number where a timestamp belongs
        ("created_at", "03/12/2026 09:00"),  # not ISO 8601
        ("cost", "0.12345678901"),  # 11 decimal places: would be rounded
        ("metadata", "{not json"),
        ("endpoint", "x" * 40),  # longer than VARCHAR(32)
        ("created_at", "2026-12-03 09:00:00.1234567"),  # 7 fraction digits
    )
    r = _migrate(cli, source, pg_url)
    assert r.exit_code == 10, r.stderr
    report = _report(r.stdout)
    assert report["problem_count"] == 10
    found = {(p["column"], p["problem"]) for p in report["problems"]}
    assert ("provider", "invalid UTF-8") in found
    assert ("prompt_tokens", "not an integer") in found
    assert ("model", "NUL byte in text") in found
    assert ("stream", "boolean that is not 0 or 1") in found
    assert ("endpoint", "longer than 32") in found
    assert ("cost", "more than 10 decimal places (would be rounded)") in found
    assert ("metadata", "not valid JSON") in found
    assert sum(1 for p in report["problems"] if p["column"] == "created_at") == 3
    assert all(isinstance(p["rowid"], int) for p in report["problems"])
    assert "match no conversion rule" in r.stderr
    with psycopg.connect(pg_url) as conn:  # nothing was copied
        assert conn.execute("SELECT count(*) FROM usage").fetchone() == (0,)


def test_MIG3_a_refused_value_found_mid_copy_stops_at_its_batch_and_the_fixed_source_resumes(
    cli: Any, source: Path, pg_url: str
) -> None:
    # Values are checked in the read that feeds COPY: a batch holding a refused value is
    # rolled back, the batches before it stay committed with their checkpoint, and the run
    # lists every refused value from that batch on, also in batches it never read (here one
    # in batch 2 of 3, one in batch 3).
    lite = sqlite3.connect(source)
    with lite:
        lite.execute("UPDATE usage SET prompt_tokens = 'twelve' WHERE id = 1500")
        lite.execute("UPDATE usage SET model = 'gpt' || char(0) || 'x' WHERE id = 2900")
    lite.close()
    r = _migrate(cli, source, pg_url, "--batch-size", "1000")
    assert r.exit_code == 10, r.stderr
    report = _report(r.stdout)
    assert report["problem_count"] == 2 and not report["ok"]
    found = {(p["rowid"], p["column"], p["problem"]) for p in report["problems"]}
    assert found == {(1500, "prompt_tokens", "not an integer"), (2900, "model", "NUL byte in text")}
    usage = next(t for t in report["tables"] if t["table"] == "usage")
    assert usage["copied"] == 1000 and usage["source_checksum"] is None
    assert "rows copied before the first batch holding one stay committed" in r.stderr
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*), max(id) FROM usage").fetchone() == (1000, 1000)
    lite = sqlite3.connect(source)  # fixed in place: the next run resumes after batch 1
    with lite:
        lite.execute("UPDATE usage SET prompt_tokens = 12 WHERE id = 1500")
        lite.execute("UPDATE usage SET model = 'gpt-x' WHERE id = 2900")
    lite.close()
    again = _migrate(cli, source, pg_url, "--batch-size", "1000")
    assert again.exit_code == 0, again.stderr
    report = _report(again.stdout)
    usage = next(t for t in report["tables"] if t["table"] == "usage")
    assert usage["copied"] == 2000 and usage["target_rows"] == 3000 and usage["match"]
    assert report["ok"]


def test_MIG3_documented_conversions(cli: Any, tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "mixed.db"
    migrated_sqlite(path)
    _dirty(
        path,
        ("created_at", "2026-12-03T09:00:00Z"),
        ("created_at", "2026-12-03 12:00:00+03:00"),
        ("created_at", "2026-12-03 09:00"),
        ("created_at", "2026-12-03"),
        ("error_type", ""),  # '' stays '' ...
        ("error_type", None),  # ... and NULL stays NULL
        ("stream", 1),
        ("model", "a\x00b"),  # NUL removed with --strip-nul
        ("cost", "1.0e-05"),  # a REAL that SQLite's text affinity turned into text
        ("metadata", '{"b": 1e3, "a": [1.0, "x"]}'),
        ("metadata", "null"),
    )
    refused = _migrate(cli, path, pg_url)
    assert refused.exit_code == 10 and _report(refused.stdout)["problem_count"] == 1
    r = _migrate(cli, path, pg_url, "--strip-nul")
    assert r.exit_code == 0, r.stderr
    with psycopg.connect(pg_url) as conn:
        got = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT request_id, created_at, error_type, stream, model, cost, metadata::text "
                "FROM usage ORDER BY id"
            ).fetchall()
        }
    nine = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    assert [got[f"dirty-{i}"][0] for i in range(3)] == [nine, nine, nine]
    assert got["dirty-3"][0] == datetime(2026, 12, 3, tzinfo=UTC)
    assert got["dirty-4"][1] == "" and got["dirty-5"][1] is None
    assert got["dirty-6"][2] is True and got["dirty-0"][2] is False
    assert got["dirty-7"][3] == "ab"
    assert Decimal(got["dirty-8"][4]) == Decimal("0.00001")
    assert json.loads(got["dirty-9"][5]) == {"a": [1.0, "x"], "b": 1000}
    assert json.loads(got["dirty-10"][5]) is None and got["dirty-0"][5] is None


def test_MIG4_a_second_run_is_a_no_op(cli: Any, source: Path, pg_url: str) -> None:
    first = _migrate(cli, source, pg_url)
    assert first.exit_code == 0
    second = _migrate(cli, source, pg_url)
    assert second.exit_code == 0, second.stderr
    report = _report(second.stdout)
    assert report["rows_copied"] == 0 and report["ok"]
    plain = cli("db", "migrate", "--from", f"sqlite:///{source}", "--to", pg_url)
    assert plain.exit_code == 0 and "nothing to copy" in plain.stdout
    # Rows added to the source since are copied by the next run, and only they.
    generate(source, usage=10, start=3000)
    third = _migrate(cli, source, pg_url)
    assert third.exit_code == 0 and _report(third.stdout)["rows_copied"] == 10


def test_MIG4_rows_changed_in_place_after_a_live_copy_are_resynced(
    cli: Any, source: Path, pg_url: str
) -> None:
    """A --live copy, then the gateway goes on: it updates keys and users in place, deletes a
    key and writes usage. The next run copies the new rows and rewrites the changed ones."""
    first = _migrate(cli, source, pg_url)
    assert first.exit_code == 0 and _report(first.stdout)["resynced"] == {}
    conn = sqlite3.connect(source)
    with conn:
        conn.execute(
            "UPDATE api_keys SET last_used_at = '2026-12-03 11:00:00.000000', rpm = 7 "
            "WHERE prefix IN ('llmgw_000003', 'llmgw_000004')"
        )
        conn.execute(
            "UPDATE api_keys SET revoked_at = '2026-12-03 11:05:00.000000' "
            "WHERE prefix = 'llmgw_000005'"
        )
        conn.execute("DELETE FROM api_keys WHERE prefix = 'llmgw_000006'")
        conn.execute("UPDATE users SET name = 'Renamed ü' WHERE email = 'user2@example.com'")
    conn.close()
    generate(source, usage=25, start=3000)

    again = _migrate(cli, source, pg_url)
    assert again.exit_code == 0, again.stderr
    report = _report(again.stdout)
    assert report["ok"] and report["mismatched"] == []
    assert report["resynced"] == {
        "users": {"written": 1, "deleted": 0},
        "api_keys": {"written": 3, "deleted": 1},
    }
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["usage"]["copied"] == 25 and tables["api_keys"]["target_rows"] == 199
    with psycopg.connect(pg_url) as pg:
        got = {
            r[0]: r[1:]
            for r in pg.execute(
                "SELECT prefix, rpm, last_used_at, revoked_at IS NOT NULL FROM api_keys "
                "WHERE prefix IN ('llmgw_000003', 'llmgw_000005', 'llmgw_000006')"
            ).fetchall()
        }
        name = pg.execute("SELECT name FROM users WHERE email = 'user2@example.com'").fetchone()
    assert got["llmgw_000003"][0] == 7 and got["llmgw_000005"][2] is True
    assert got["llmgw_000003"][1] == datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
    assert "llmgw_000006" not in got and name == ("Renamed ü",)
    # and nothing is left to do
    last = _report(_migrate(cli, source, pg_url).stdout)
    assert last["rows_copied"] == 0 and last["resynced"] == {} and last["ok"]


def test_MIG4_killed_mid_run_resumes_with_identical_checksums(tmp_path: Path, pg_url: str) -> None:
    rows = int(os.environ.get("LLMGW_TEST_RESUME_ROWS", "60000"))
    path = tmp_path / "big.db"
    migrated_sqlite(path)
    generate(path, usage=rows)
    argv = [LLMGW, "db", "migrate", "--from", f"sqlite:///{path}", "--to", pg_url, "--json",
            "--batch-size", "2000"]  # fmt: skip
    env = {**os.environ, "LLMGW_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120 + rows / 500  # the whole source is checked before copying
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["table"] == "usage" and event["done"] >= 6000:
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with psycopg.connect(pg_url) as conn:
        partial = conn.execute("SELECT count(*) FROM usage").fetchone()
    assert partial is not None and 6000 <= partial[0] < rows

    again = subprocess.run(
        argv, env=env, capture_output=True, timeout=300 + rows / 200, check=False
    )
    assert again.returncode == 0, again.stderr.decode()
    report = _report(again.stdout.decode())
    usage = {t["table"]: t for t in report["tables"]}["usage"]
    assert usage["copied"] == rows - partial[0]  # resumed after the last committed batch
    assert usage["source_rows"] == usage["target_rows"] == rows and usage["match"]
    with psycopg.connect(pg_url) as conn:  # the indexes deferred by the killed run are back
        names = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'usage'")
        }
        constraints = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT conname, contype FROM pg_constraint WHERE conrelid = 'usage'::regclass"
            )
        }
        assert conn.execute("SELECT count(*) FROM llmgw_migration_indexes").fetchone() == (0,)
        with pytest.raises(psycopg.errors.UniqueViolation):  # the constraints hold again
            conn.execute("INSERT INTO usage SELECT * FROM usage WHERE id = 1")
    assert {"ix_usage_created_at", "ix_usage_key_created", "ix_usage_user_created"} <= names
    assert constraints == {"usage_pkey": "p", "usage_request_id_key": "u"}


def test_MIG5_refuses_while_another_process_has_the_source_open(
    cli: Any, source: Path, pg_url: str
) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(source)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        refused = _migrate(cli, source, pg_url)
        assert refused.exit_code == 5
        assert f"open in process {writer.pid}" in refused.stderr and "--live" in refused.stderr
        with psycopg.connect(pg_url) as conn:  # refused before the target was touched
            assert conn.execute("SELECT to_regclass('usage')").fetchone() == (None,)

        live = _migrate(cli, source, pg_url, "--live")
        assert live.exit_code == 0, live.stderr
        report = _report(live.stdout)
        usage = {t["table"]: t for t in report["tables"]}["usage"]
        assert report["live_source"] is True and usage["match"]
        assert usage["source_rows"] >= 3000  # one snapshot: whatever it held, all of it
        assert any(e["event"] == "warning" for e in _lines(live.stdout))
    finally:
        writer.kill()
        writer.wait()
        assert writer.stdout is not None
        writer.stdout.close()
    # Once the writer is gone, the next run copies what it wrote after the snapshot.
    final = _migrate(cli, source, pg_url)
    assert final.exit_code == 0, final.stderr
    usage = {t["table"]: t for t in _report(final.stdout)["tables"]}["usage"]
    assert usage["match"] and usage["source_rows"] > 3000


_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA busy_timeout=10000")
i = 0
while True:
    conn.execute(
        "INSERT INTO usage (request_id, created_at, endpoint, stream, prompt_tokens, "
        "completion_tokens, total_tokens, cost, latency_ms, status) "
        "VALUES (?, '2026-12-03 10:00:00.000000', 'chat', 0, 1, 1, 2, '0.1', 1.0, 200)",
        (f"live-{i}",),
    )
    if i == 0:
        print("writing", flush=True)
    i += 1
    time.sleep(0.002)
"""


def test_target_with_foreign_rows_is_refused_and_overwrite_asks(
    cli: Any, source: Path, pg_url: str
) -> None:
    env = {"LLMGW_DATABASE_URL": pg_url}
    assert cli("keys", "create", "--name", "already-here", env=env).exit_code == 0
    r = _migrate(cli, source, pg_url)
    assert r.exit_code == 5 and "--overwrite" in r.stderr
    unconfirmed = _migrate(cli, source, pg_url, "--overwrite")
    assert unconfirmed.exit_code == 2  # stdin is not a terminal and no --yes
    ok = _migrate(cli, source, pg_url, "--overwrite", "--yes")
    assert ok.exit_code == 0, ok.stderr
    keys = json.loads(cli("keys", "list", "--all", "--json", env=env).stdout)
    assert "already-here" not in {k["name"] for k in keys} and len(keys) == 200


def test_dry_run_plans_without_writing(cli: Any, source: Path, pg_url: str) -> None:
    r = _migrate(cli, source, pg_url, "--dry-run")
    assert r.exit_code == 0, r.stderr
    report = _report(r.stdout)
    assert report["mode"] == "dry-run"
    assert report["rows_to_copy"] == sum(t["source_rows"] for t in report["tables"]) > 3250
    assert report["estimated_seconds"] > 0
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('usage')").fetchone() == (None,)
    text = cli("db", "migrate", "--from", f"sqlite:///{source}", "--to", pg_url, "--dry-run")
    assert "nothing was written" in text.stdout


def test_source_behind_the_schema_head_is_refused(cli: Any, tmp_path: Path, pg_url: str) -> None:
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    old = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{old}")
    upgrade(engine, "0001")
    engine.dispose()
    r = _migrate(cli, old, pg_url)
    assert r.exit_code == 2 and "schema revision 0001" in r.stderr and "db upgrade" in r.stderr


def test_bad_urls_are_one_line_errors(cli: Any, source: Path, pg_url: str) -> None:
    r = cli("db", "migrate", "--from", f"sqlite:///{source}", "--to", "sqlite:///x.db")
    assert r.exit_code == 2 and r.stderr.startswith("Error: the target must be a PostgreSQL URL")
    r = cli("db", "migrate", "--from", pg_url, "--to", pg_url)
    assert r.exit_code == 2 and "the source must be a SQLite file" in r.stderr
    r = cli(
        "db",
        "migrate",
        "--from",
        f"sqlite:///{source}",
        "--to",
        "postgresql://u:sekrit@127.0.0.1:9/x",
    )
    assert r.exit_code == 3 and "sekrit" not in r.stderr and "***" in r.stderr


def test_MIG1_batch_checksums_add_up_to_the_whole_tables(
    cli: Any, source: Path, pg_url: str
) -> None:
    """The target's checksum of a rowid-keyed table is the sum of its batches' (taken as each
    batch commits); a table holding rows outside the batches summed gets the whole table's."""
    from llmgw.storage.transfer import Migration, Options, opened

    done = _migrate(cli, source, pg_url, "--batch-size", "700")
    assert done.exit_code == 0, done.stderr
    usage = {t["table"]: t for t in _report(done.stdout)["tables"]}["usage"]
    assert usage["match"] and usage["source_rows"] == 3000
    with opened(Migration(source, pg_url, Options(batch_size=700))) as m:
        plans = {p.spec.name: p for p in m.plan()}
        assert m._rowid_key(plans["usage"].spec) == "id"
        assert m._rowid_key(plans["users"].spec) is None  # a UUID key: summed whole
        whole = plans["usage"]
        m.sum_target(whole)
        assert (
            whole.target_sum is not None and whole.target_sum.checksum == usage["target_checksum"]
        )
        batched, partial = plans["usage"], plans["api_keys"]
        batched.target_sum = None
        with m.verified_alongside() as verify:
            for lo, hi in ((-1, 1000), (1000, 2500), (2500, 3000)):
                verify(batched, lo, hi)
            verify(batched, None, None)
        assert batched.target_sum is not None
        assert batched.target_sum.checksum == usage["target_checksum"]
        with m.verified_alongside() as verify:  # rows 11.. are in no batch summed
            verify(whole, 0, 10)
            verify(whole, None, None)
            verify(partial, None, None)
        assert whole.target_sum is not None
        assert (whole.target_sum.rows, whole.target_sum.checksum) == (
            3000,
            usage["target_checksum"],
        )
        assert partial.target_sum is not None and partial.target_sum.rows == 200


def test_MIG4_a_failed_copy_leaves_the_deferred_indexes_to_the_next_run(
    cli: Any, source: Path, pg_url: str
) -> None:
    from llmgw.storage.transfer import Migration, opened

    assert _migrate(cli, source, pg_url).exit_code == 0
    with opened(Migration(source, pg_url)) as m:
        usage = {p.spec.name: p for p in m.plan()}["usage"]
        m.defer_indexes(usage.spec)  # as a run copying into an empty usage table does
        with pytest.raises(KeyboardInterrupt), m.verified_alongside():
            raise KeyboardInterrupt  # Ctrl-C while copying: no index is built on the way out
        left = m.pg.execute("SELECT count(*) FROM llmgw_migration_indexes").fetchone()
        assert left is not None and left[0] == 5  # 4 indexes and request_id's constraint
    again = _report(_migrate(cli, source, pg_url).stdout)  # the next run builds them
    assert again["ok"] and again["rows_copied"] == 0
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM llmgw_migration_indexes").fetchone() == (0,)
        names = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'usage'")
        }
    assert {"usage_pkey", "usage_request_id_key", "ix_usage_created_at"} <= names
