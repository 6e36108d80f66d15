"""``llmgw report daily|weekly|monthly`` on a seeded month (tests/usage_month.py): the periods'
windows, totals against the previous period, every format, costs per currency, bad input, and
the terminal report captured in docs/ (``UPDATE_SCREENSHOTS=1`` rewrites the capture)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests import usage_month


def _env(db_url: str) -> dict[str, str]:
    return {"LLMGW_DATABASE_URL": db_url}


def test_report_formats_on_a_seeded_month(
    cli: Any, engine: Engine, db_url: str, tmp_path: Path
) -> None:
    month = usage_month.seed(engine, rows=3000, days=61)
    rows = month["rows"]
    cfg = tmp_path / "month.toml"
    cfg.write_text(usage_month.config_toml())
    base = ("--config", str(cfg), "report")
    r = cli(*base, "monthly", "--date", "2026-11-15", "--format", "json", env=_env(db_url))
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    nov = [x for x in rows if x["created_at"].month == 11]
    octo = [x for x in rows if x["created_at"].month == 10]
    assert rep["title"] == "llmgw monthly report November 2026"
    assert rep["totals"]["requests"] == len(nov) and rep["previous"]["requests"] == len(octo)
    assert len(rep["series"]) == 30 and sum(s["requests"] for s in rep["series"]) == len(nov)
    assert set(rep["totals"]["costs"]) == {"RUB", "USD"}  # never one sum across currencies
    assert rep["trend"]["requests"] == round((len(nov) - len(octo)) / len(octo), 4)
    assert {p["provider"] for p in rep["providers"]} == {"openai", "giga", "yandex"}
    assert any(x["kind"] == "cheaper_model" for x in rep["recommendations"])

    r = cli(*base, "daily", "--date", "2026-11-18", "--format", "csv", env=_env(db_url))
    assert r.exit_code == 0, r.stderr
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(table) == 24 and table[0]["at"] == "2026-11-18 00:00"
    day = [x for x in rows if x["created_at"].date().isoformat() == "2026-11-18"]
    assert sum(int(t["requests"]) for t in table) == len(day)
    assert {"cost_RUB", "cost_USD"} <= set(table[0])

    out = tmp_path / "week.md"
    r = cli(
        *base,
        "weekly",
        "--date",
        "2026-11-18",
        "--format",
        "md",
        "--out",
        str(out),
        env=_env(db_url),
    )
    assert r.exit_code == 0 and out.read_text().startswith(
        "# llmgw weekly report 2026-W47 (2026-11-16 - 2026-11-22)"
    )
    assert "| provider | requests |" in out.read_text()

    r = cli(*base, "weekly", "--date", "2026-11-18", env=_env(db_url))  # the terminal, with charts
    assert r.exit_code == 0 and "requests per day (peak" in r.stdout and "█" in r.stdout
    assert "requests per provider" in r.stdout and "RUB" in r.stdout

    for args, message in (
        (("yearly",), "invalid period 'yearly'"),
        (("daily", "--format", "pdf"), "invalid --format 'pdf'"),
        (("daily", "--date", "18.11.2026"), "invalid --date"),
        (("daily", "--out", str(out)), "--out needs a file format"),
    ):
        r = cli(*base, *args, env=_env(db_url))
        assert r.exit_code == 2 and message in r.stderr, (args, r.stderr)


def test_an_empty_period_reads_as_unchanged_not_new(cli: Any, db_url: str) -> None:
    """A fresh install's first report: nothing against nothing is +0.0%, the chart's peak 0."""
    r = cli("report", "daily", "--date", "2026-11-18", "--format", "json", env=_env(db_url))
    assert r.exit_code == 0, r.stderr
    trend = json.loads(r.stdout)["trend"]
    assert trend["requests"] == 0.0 and trend["errors"] == 0.0
    r = cli("report", "daily", "--date", "2026-11-18", env=_env(db_url))
    assert r.exit_code == 0, r.stderr
    assert "requests per hour (peak 0)" in r.stdout
    assert "new" not in r.stdout and "+0.0%" in r.stdout


DOCS = Path(__file__).resolve().parents[2] / "docs"
CAPTURE = DOCS / "report-capture.txt"


def test_the_terminal_report_in_the_docs_is_what_the_command_prints(
    cli: Any, engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """docs/report-capture.txt (and its copy in docs/analytics.md) is ``llmgw report weekly`` on
    the seeded months of the HTML report's screenshot, 100 columns wide; after an intended change
    ``UPDATE_SCREENSHOTS=1`` rewrites both."""
    if db_url.startswith("postgresql"):
        pytest.skip("the capture is taken on SQLite (the PostgreSQL numbers are checked above)")
    usage_month.seed(engine, rows=6000, days=61)  # as tests/web/test_report_browser.py
    cfg = tmp_path / "month.toml"
    cfg.write_text(usage_month.config_toml())
    r = cli("--config", str(cfg), "report", "weekly", "--date", "2026-11-18",
            env={**_env(db_url), "COLUMNS": "100"})  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "requests per day (peak" in r.stdout and "recommendations" in r.stdout
    guide = DOCS / "analytics.md"
    text = guide.read_text()
    head, sep, rest = text.partition("(`docs/report-capture.txt`):\n\n```text\n")
    block, end, tail = rest.partition("```\n")
    assert sep and end, "docs/analytics.md lost its copy of the capture"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        CAPTURE.write_text(r.stdout)
        guide.write_text(head + sep + r.stdout + end + tail)
        return
    assert CAPTURE.read_text() == r.stdout, "run with UPDATE_SCREENSHOTS=1 and look at the diff"
    assert block == r.stdout, "docs/analytics.md's copy differs from docs/report-capture.txt"
