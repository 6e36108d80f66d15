"""`llmgw usage stats` and `llmgw usage export` against real SQLite and PostgreSQL data."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.config import UsageSettings
from llmgw.usage.recorder import UsageEvent, UsageRecorder
from llmgw.usage.reports import EXPORT_COLUMNS, stats_columns

pytestmark = pytest.mark.timeout(60)

KEY = uuid.UUID("11111111-2222-3333-4444-555555555555")
USER = uuid.UUID("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")


@pytest.fixture
def seeded(engine: Engine, db_url: str, tmp_path: Path) -> dict[str, str]:
    """Six usage rows (one outside a 7-day window), a user and a key; env for the CLI."""
    now = datetime.now(UTC)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO users (id, email, role, disabled, created_at) "
                "VALUES (:id, 'ann@example.com', 'user', false, :t)"
            ),
            {"id": USER.hex if engine.dialect.name == "sqlite" else USER, "t": now},
        )
        c.execute(
            sa.text(
                "INSERT INTO api_keys (id, name, user_id, prefix, digest, created_at) "
                "VALUES (:id, 'ci', :u, 'llmgw_abcdef', :d, :t)"
            ),
            {
                "id": KEY.hex if engine.dialect.name == "sqlite" else KEY,
                "u": USER.hex if engine.dialect.name == "sqlite" else USER,
                "d": "0" * 64,
                "t": now,
            },
        )
    rec = UsageRecorder(engine, UsageSettings(flush_interval=0.05), tmp_path / "spool")
    rec.start()
    for i, (lat, status) in enumerate([(10.0, 200), (20.0, 200), (30.0, 500)]):
        rec.record(
            UsageEvent(
                request_id=f"today-{i}",
                created_at=now - timedelta(minutes=i),
                key_id=KEY,
                user_id=USER,
                provider="local",
                model="gpt-4o-mini",
                prompt_tokens=10,
                completion_tokens=5,
                total_tokens=15,
                cost=Decimal("0.0010000001"),
                latency_ms=lat,
                status=status,
                meta={"alias": "chat-default"},
            )
        )
    for i in range(2):
        rec.record(
            UsageEvent(
                request_id=f"old-{i}",
                created_at=now - timedelta(days=2),
                provider="giga",
                model="GigaChat",
                prompt_tokens=100,
                completion_tokens=50,
                total_tokens=150,
                cost=Decimal("0.5"),
                latency_ms=100.0,
                stream=True,
                finish_reason="length" if i == 0 else "stop",
            )
        )
    rec.record(
        UsageEvent(request_id="ancient", created_at=now - timedelta(days=10), provider="local")
    )
    rec.close()
    return {"LLMGW_DATABASE_URL": db_url}


def _json(cli: Any, env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    r = cli("usage", "stats", *args, "--json", env=env)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)["rows"]  # type: ignore[no-any-return]


def test_stats_by_day(cli: Any, seeded: dict[str, str]) -> None:
    rows = _json(cli, seeded, "--by", "day")
    assert len(rows) == 2
    assert rows[0]["day"] < rows[1]["day"]  # chronological
    assert sum(r["requests"] for r in rows) == 5
    today = rows[1]
    assert today["day"] == datetime.now(UTC).strftime("%Y-%m-%d") or today["requests"] >= 1
    assert sum(r["errors"] for r in rows) == 1


def test_stats_by_model_has_exact_cost_and_latency(cli: Any, seeded: dict[str, str]) -> None:
    rows = {r["model"]: r for r in _json(cli, seeded, "--by", "model")}
    assert set(rows) == {"local/gpt-4o-mini", "giga/GigaChat"}
    local = rows["local/gpt-4o-mini"]
    assert local["requests"] == 3 and local["errors"] == 1
    assert (local["prompt_tokens"], local["completion_tokens"], local["total_tokens"]) == (
        30,
        15,
        45,
    )
    assert Decimal(local["cost"]) == Decimal("0.0030000003")  # exact, no float rounding
    assert local["avg_latency_ms"] == 20.0 and local["p95_latency_ms"] == 30.0
    assert Decimal(rows["giga/GigaChat"]["cost"]) == Decimal("1.0")


def test_stats_by_provider_key_user(cli: Any, seeded: dict[str, str]) -> None:
    prov = {r["provider"]: r["requests"] for r in _json(cli, seeded, "--by", "provider")}
    assert prov == {"local": 3, "giga": 2}
    keys = _json(cli, seeded, "--by", "key")
    assert keys[0] == {**keys[0], "key": str(KEY), "key_name": "ci", "key_prefix": "llmgw_abcdef"}
    assert keys[0]["requests"] == 3
    assert keys[1]["key"] is None and keys[1]["requests"] == 2
    users = _json(cli, seeded, "--by", "user")
    assert users[0]["email"] == "ann@example.com" and users[0]["user"] == str(USER)
    # a wider window takes in the old row
    assert sum(r["requests"] for r in _json(cli, seeded, "--since", "30d", "--by", "user")) == 6


def test_stats_filters_by_key_user_model_and_provider(cli: Any, seeded: dict[str, str]) -> None:
    """Issue 13 item 3's filters, each narrowing what a breakdown counts: the key (by name), the
    user (by email), the model as ``provider/model`` and the provider; ``--by hour`` alike."""
    assert {
        r["model"]: r["requests"] for r in _json(cli, seeded, "--by", "model", "--key", "ci")
    } == {"local/gpt-4o-mini": 3}
    by_user = _json(cli, seeded, "--by", "provider", "--user", "ann@example.com")
    assert [(r["provider"], r["requests"]) for r in by_user] == [("local", 3)]
    giga = _json(cli, seeded, "--by", "day", "--model", "giga/GigaChat")
    assert sum(r["requests"] for r in giga) == 2 and sum(r["errors"] for r in giga) == 0
    local = _json(cli, seeded, "--by", "status", "--provider", "local")
    assert {r["status"]: r["requests"] for r in local} == {200: 2, 500: 1}
    hours = _json(cli, seeded, "--by", "hour", "--provider", "giga")
    assert sum(r["requests"] for r in hours) == 2 and all("hour" in r for r in hours)
    assert (
        _json(cli, seeded, "--by", "model", "--model", "giga/GigaChat", "--provider", "local") == []
    )


@pytest.mark.parametrize("by", ["day", "model", "provider", "key", "user"])
def test_stats_csv_and_table(cli: Any, seeded: dict[str, str], by: str) -> None:
    r = cli("usage", "stats", "--by", by, "--csv", env=seeded)
    assert r.exit_code == 0, r.stderr
    table = list(csv.reader(io.StringIO(r.stdout)))
    assert tuple(table[0]) == stats_columns(by)  # type: ignore[arg-type]
    idx = table[0].index("requests")
    assert sum(int(row[idx]) for row in table[1:]) == 5
    r = cli("usage", "stats", "--by", by, env=seeded)
    assert r.exit_code == 0 and "requests" in r.stdout
    shown = {
        "day": "-",
        "model": "local/gpt-4o-mini",
        "provider": "giga",
        "key": "ci",
        "user": "ann@",
    }
    assert shown[by] in r.stdout


def test_export_csv_and_jsonl_to_files(cli: Any, seeded: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "usage.csv"
    r = cli("usage", "export", "--format", "csv", "--out", str(out), env=seeded)
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [x["request_id"] for x in rows][0] == "ancient"  # oldest first
    assert len(rows) == 6
    today0 = next(x for x in rows if x["request_id"] == "today-0")
    assert today0["cost"] == "0.0010000001" and json.loads(today0["metadata"]) == {
        "alias": "chat-default"
    }

    out2 = tmp_path / "usage.jsonl"
    r = cli("usage", "export", "-f", "jsonl", "--since", "7d", "-o", str(out2), env=seeded)
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(x) for x in out2.read_text().splitlines()]
    assert {x["request_id"] for x in lines} == {"today-0", "today-1", "today-2", "old-0", "old-1"}
    assert lines[-1]["key_id"] in (str(KEY), None)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]

    r = cli("usage", "export", "--format", "jsonl", env=seeded)  # stdout
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 6


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("stats", "--by", "nonsense"), "invalid --by"),
        (("stats", "--since", "3x"), "invalid --since"),
        (("stats", "--json", "--csv"), "cannot be used together"),
        (("export", "--format", "xml"), "invalid --format"),
        (("export", "--format", "csv", "--since", "0d"), "invalid --since"),
        (("export",), "Missing option"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Any, args: tuple[str, ...], needle: str) -> None:
    r = cli("usage", *args)
    assert r.exit_code == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_failed_export_leaves_no_file(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "keep.csv"
    out.write_text("old contents\n")
    r = cli(
        "usage", "export", "--format", "csv", "--out", str(out),
        env={"LLMGW_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"},
    )  # fmt: skip
    assert r.exit_code == 3 and "cannot connect" in r.stderr
    assert out.read_text() == "old contents\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["keep.csv"]
    r = cli("usage", "export", "--format", "csv", "--out", str(tmp_path / "no" / "x.csv"))
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_costs_are_grouped_by_currency_never_added_across(
    cli: Any, seeded: dict[str, str], tmp_path: Path
) -> None:
    """``local`` bills in USD, ``giga`` in RUB: a group holding both has its cost per currency
    and no single ``cost``; the table shows both amounts; a provider missing from the
    configuration keeps its own unknown currency (XXX:<name>), never merged with another's."""
    cfg = tmp_path / "two.toml"
    cfg.write_text(
        '[[providers]]\nname = "local"\nkind = "openai"\nmodels = ["gpt-4o-mini"]\n\n'
        '[[providers]]\nname = "giga"\nkind = "gigachat"\nmodels = ["GigaChat"]\n'
    )
    r = cli("--config", str(cfg), "usage", "stats", "--by", "status", "--json", env=seeded)
    assert r.exit_code == 0, r.stderr
    ok = next(row for row in json.loads(r.stdout)["rows"] if row["status"] == 200)
    assert ok["requests"] == 4
    assert ok["costs"] == {"RUB": "1.0000000000", "USD": "0.0020000002"}
    assert ok["cost"] is None and ok["currency"] is None
    r = cli("--config", str(cfg), "usage", "stats", "--by", "provider", "--json", env=seeded)
    per = {row["provider"]: row for row in json.loads(r.stdout)["rows"]}
    assert (per["giga"]["currency"], per["giga"]["cost"]) == ("RUB", "1.0000000000")
    assert per["local"]["currency"] == "USD"
    r = cli("--config", str(cfg), "usage", "stats", "--by", "status", env=seeded)
    assert "1.000000 RUB + 0.002000 USD" in r.stdout.replace("\n", "")
    r = cli("--config", str(cfg), "usage", "stats", "--by", "status", "--csv", env=seeded)
    assert ",,,RUB=1.0000000000;USD=0.0020000002," in r.stdout  # cost, currency empty
    # no configuration: the currencies are unknown, one per provider
    ok = next(row for row in _json(cli, seeded, "--by", "status") if row["status"] == 200)
    assert set(ok["costs"]) == {"XXX:giga", "XXX:local"} and ok["cost"] is None


def _two_currencies(tmp_path: Path) -> str:
    cfg = tmp_path / "two.toml"
    cfg.write_text(
        '[[providers]]\nname = "local"\nkind = "openai"\nmodels = ["gpt-4o-mini"]\n\n'
        '[[providers]]\nname = "giga"\nkind = "gigachat"\nmodels = ["GigaChat"]\n'
    )
    return str(cfg)


def test_stats_until_closes_the_window(cli: Any, seeded: dict[str, str]) -> None:
    rows = _json(cli, seeded, "--since", "30d", "--until", "1d", "--by", "provider")
    assert {r["provider"]: r["requests"] for r in rows} == {"giga": 2, "local": 1}
    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    rows = _json(cli, seeded, "--since", day, "--until", "1d", "--by", "provider")
    assert {r["provider"]: r["requests"] for r in rows} == {"giga": 2}
    r = cli("usage", "stats", "--since", "1d", "--until", "2d", env=seeded)
    assert r.exit_code == 2 and r.stderr.startswith("Error: --until must be after --since")
    assert "hint:" in r.stderr
    r = cli("usage", "stats", "--until", "yesterday", env=seeded)
    assert r.exit_code == 2 and "invalid --until 'yesterday'" in r.stderr


def test_top_ranks_cost_per_currency_and_tokens_overall(
    cli: Any, seeded: dict[str, str], tmp_path: Path
) -> None:
    cfg = _two_currencies(tmp_path)
    r = cli("--config", cfg, "usage", "top", "models", "--json", env=seeded)
    assert r.exit_code == 0, r.stderr
    ranked = [
        (x["currency"], x["rank"], x["model"], x["value"]) for x in json.loads(r.stdout)["rows"]
    ]
    assert ranked == [
        ("RUB", 1, "giga/GigaChat", "1.0000000000"),
        ("USD", 1, "local/gpt-4o-mini", "0.0030000003"),
    ]
    r = cli(
        "--config", cfg, "usage", "top", "models", "--by", "tokens", "-n", "1", "--json", env=seeded
    )
    (first,) = json.loads(r.stdout)["rows"]
    assert (first["model"], first["value"]) == ("giga/GigaChat", 300)
    r = cli("--config", cfg, "usage", "top", "keys", "--by", "requests", env=seeded)
    assert r.exit_code == 0 and "ci llmgw_abcdef" in r.stdout.replace("\n", "")
    r = cli("--config", cfg, "usage", "top", "users", env=seeded)
    assert r.exit_code == 0 and "ann@example.com" in r.stdout and "USD" in r.stdout
    r = cli("usage", "top", "teams", env=seeded)
    assert r.exit_code == 2 and r.stderr.startswith("Error: invalid what to rank 'teams'")


def test_patterns_heat_map_sizes_and_error_share(cli: Any, seeded: dict[str, str]) -> None:
    r = cli("usage", "patterns", "--since", "7d", "--json", env=seeded)
    assert r.exit_code == 0, r.stderr
    p = json.loads(r.stdout)
    assert p["requests"] == 5 == sum(sum(d["hours"]) for d in p["heatmap"])
    assert [d["weekday"] for d in p["heatmap"]] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    assert p["heatmap"][two_days_ago.weekday()]["hours"][two_days_ago.hour] >= 2  # the giga rows
    assert p["avg_prompt_tokens"] == (3 * 10 + 2 * 100) / 5
    assert p["avg_completion_tokens"] == (3 * 5 + 2 * 50) / 5
    shares = {e["provider"]: e["error_share"] for e in p["errors_by_provider"]}
    assert shares == {"local": round(1 / 3, 4), "giga": 0.0}
    assert p["stream_share"] == 0.4  # the two giga rows of five
    giga = next(e for e in p["errors_by_provider"] if e["provider"] == "giga")
    assert (giga["stream_share"], giga["avg_prompt_tokens"], giga["avg_completion_tokens"]) == (
        1.0,
        100.0,
        50.0,
    )
    text = cli("usage", "patterns", "--since", "7d", env=seeded)
    assert text.exit_code == 0 and "33.3%" in text.stdout and "Sun" in text.stdout
    assert "40.0% streamed" in text.stdout
    r = cli("usage", "patterns", "--since", "2020-01-01", env=seeded)
    assert r.exit_code == 2 and "longer than 400 days" in r.stderr


def test_forecast_from_stored_days_per_currency_with_its_back_test(
    cli: Any, engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """40 stored days of office-week spend through the real recorder and rollups: the forecast
    names its currency, contains month-to-date, and its back-test beats the naive one."""
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    rec = UsageRecorder(engine, UsageSettings(flush_interval=0.05), tmp_path / "spool")
    rec.start()
    for n in range(40, 0, -1):
        d = today - timedelta(days=n)
        rec.record(
            UsageEvent(
                request_id=f"d{n}",
                created_at=d,
                key_id=KEY,
                provider="local",
                model="gpt-4o-mini",
                cost=Decimal("10.5" if d.weekday() < 5 else "2.25"),
            )
        )
    rec.close()
    env = {"LLMGW_DATABASE_URL": db_url}
    cfg = _two_currencies(tmp_path)
    r = cli("--config", cfg, "usage", "forecast", "--json", env=env)
    assert r.exit_code == 0, r.stderr
    (f,) = json.loads(r.stdout)["rows"]
    assert f["currency"] == "USD" and f["month"] == today.strftime("%Y-%m")
    assert f["backtest_days"] == 40 - 14
    assert Decimal(f["backtest_mae"]) < Decimal(f["naive_backtest_mae"])
    assert Decimal(f["low"]) <= Decimal(f["forecast"]) <= Decimal(f["high"])
    assert Decimal(f["forecast"]) >= Decimal(f["month_to_date"])
    table = cli("--config", cfg, "usage", "forecast", env=env)
    assert table.exit_code == 0 and "vs naive" in table.stdout.replace("\n", " ")
    r = cli("--config", cfg, "usage", "forecast", "--user", "nobody@example.com", env=env)
    assert r.exit_code != 0 and r.stderr.startswith("Error:")
    r = cli("usage", "forecast", "--history", "7", env=env)
    assert r.exit_code == 2 and "invalid --history 7" in r.stderr


def test_since_takes_long_durations_and_dates(cli: Any, seeded: dict[str, str]) -> None:
    """A duration of four digits is still a duration (``5200w`` was read as a date once)."""
    assert sum(r["requests"] for r in _json(cli, seeded, "--since", "5200w")) == 6
    assert sum(r["requests"] for r in _json(cli, seeded, "--since", "1000h")) == 6
    assert sum(r["requests"] for r in _json(cli, seeded, "--since", "2000-01-01")) == 6
    r = cli("usage", "stats", "--since", "0d", env=seeded)
    assert r.exit_code == 2 and r.stderr.startswith("Error: invalid --since '0d'")


def test_rebuild_rollups_recomputes_the_same_answers(
    cli: Any, engine: Engine, seeded: dict[str, str]
) -> None:
    """The rollups emptied and refilled from the raw rows answer exactly as before (streamed
    and truncated counts included); without --yes and without a terminal it refuses."""
    from llmgw.storage.tables import usage_daily, usage_hourly, usage_hourly_models
    from llmgw.usage.rollup import refresh

    assert refresh(engine) == 6  # the rows are folded in, so reports read the rollups
    before = _json(cli, seeded, "--by", "model", "--since", "30d")
    r = cli("usage", "rebuild-rollups", env=seeded)
    assert r.exit_code == 2 and "not confirmed" in r.stderr
    with engine.begin() as conn:  # damage the rollups: a rebuild must put them right
        for t in (usage_hourly, usage_hourly_models, usage_daily):
            conn.execute(sa.update(t).values(requests=t.c.requests + 7))
    assert _json(cli, seeded, "--by", "model", "--since", "30d") != before
    r = cli("usage", "rebuild-rollups", "--yes", "--json", env=seeded)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["folded"] >= 6
    after = _json(cli, seeded, "--by", "model", "--since", "30d")
    assert after == before
    giga = next(row for row in after if row["model"].startswith("giga/"))
    assert (giga["streamed"], giga["truncated"]) == (2, 1)
    if engine.dialect.name == "postgresql":  # the planner sees the refilled rollups
        with engine.connect() as conn:
            analysed = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL"
                " AND relname IN ('usage_hourly', 'usage_hourly_models', 'usage_daily')"
            ).scalar_one()
        assert analysed == 3


def test_recommend_on_a_seeded_month_prints_each_saving_in_its_currency(
    cli: Any, engine: Engine, db_url: str, tmp_path: Path
) -> None:
    from tests import usage_month

    usage_month.seed(engine)
    cfg = tmp_path / "month.toml"
    cfg.write_text(usage_month.config_toml())
    env = {"LLMGW_DATABASE_URL": db_url}
    window = ("--since", "2026-11-01", "--until", "2026-12-01")
    r = cli("--config", str(cfg), "usage", "recommend", *window, "--json", env=env)
    assert r.exit_code == 0, r.stderr
    kinds = [row["kind"] for row in json.loads(r.stdout)["rows"]]
    assert {"cheaper_model", "deprecated_version", "error_heavy", "max_tokens"} <= set(kinds)
    r = cli("--config", str(cfg), "usage", "recommend", *window, env=env)
    text = " ".join(r.stdout.split())
    assert r.exit_code == 0 and "cheaper model" in text and "gpt-4o-mini" in text
    assert " USD" in text and " RUB" in text
    r = cli("usage", "recommend", "--since", "1d", "--until", "2d", env=env)
    assert r.exit_code == 2 and "--until must be after --since" in r.stderr
