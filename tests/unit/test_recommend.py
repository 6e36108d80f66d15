"""``llmgw usage recommend`` on a seeded realistic month (tests/usage_month.py): every planted
problem is found with its evidence and its saving per currency, and nothing else is flagged
(SQLite and PostgreSQL, through ``LocalAdmin`` as the CLI and the admin API call it)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.config import Settings
from tests import usage_month


def _admin(engine: Engine) -> LocalAdmin:
    import tomllib

    settings = Settings.model_validate(tomllib.loads(usage_month.config_toml()))
    return LocalAdmin(
        engine, Actor.local(), "cli", settings=settings, clock=lambda: usage_month.END
    )


def test_recommendations_from_a_seeded_month(engine: Engine) -> None:
    month = usage_month.seed(engine)
    rows: list[dict[str, Any]] = month["rows"]
    found = _admin(engine).usage_recommend(since=usage_month.END - timedelta(days=30))
    by = {(r["kind"], r["subject"]): r for r in found}
    assert set(by) == {
        ("cheaper_model", "openai/gpt-4o"),
        ("cheaper_model", "giga/GigaChat-Pro"),  # YandexGPT Pro: same sizes, 80 % of the price
        ("deprecated_version", "yandex/yandexgpt:deprecated"),
        ("error_heavy", "giga/GigaChat-Pro"),
        ("max_tokens", "summariser (llmgw_SUMM02)"),
        ("idle_key", "old-ci (llmgw_OLD-04)"),
    }, sorted(by)

    # gpt-4o -> gpt-4o-mini: the saving is gpt-4o's cost less its tokens at mini's rate
    cheap = by[("cheaper_model", "openai/gpt-4o")]
    big = [r for r in rows if r["model"] == "gpt-4o"]
    mini = [r for r in rows if r["model"] == "gpt-4o-mini"]
    cost = sum(r["cost"] for r in big)
    rate = sum(r["cost"] for r in mini) / sum(r["total_tokens"] for r in mini)
    expected = cost - rate * sum(r["total_tokens"] for r in big)
    assert cheap["evidence"]["alternative"] == "openai/gpt-4o-mini"
    assert list(cheap["saving"]) == ["USD"]
    assert abs(Decimal(cheap["saving"]["USD"]) - expected) < Decimal("0.01")
    assert Decimal(cheap["saving"]["USD"]) > cost * Decimal("0.9")  # mini is ~16x cheaper

    pro_alt = by[("cheaper_model", "giga/GigaChat-Pro")]
    assert pro_alt["evidence"]["alternative"] == "yandex/yandexgpt:latest"  # never :deprecated
    assert list(pro_alt["saving"]) == ["RUB"] and Decimal(pro_alt["saving"]["RUB"]) > 0

    # the deprecated Pro costs what :latest costs: named, saving 0 RUB
    dep = by[("deprecated_version", "yandex/yandexgpt:deprecated")]
    assert dep["saving"] == {"RUB": "0"} or Decimal(dep["saving"]["RUB"]) < Decimal("0.5")
    assert dep["evidence"]["requests"] == sum(r["model_version"] == "deprecated" for r in rows)

    # GigaChat-Pro: its failures and what they were billed, in RUB
    err = by[("error_heavy", "giga/GigaChat-Pro")]
    pro = [r for r in rows if r["model"] == "GigaChat-Pro"]
    failed = [r for r in pro if r["status"] >= 400]
    assert err["evidence"]["errors"] == len(failed) and err["evidence"]["requests"] == len(pro)
    assert 0.06 < err["evidence"]["error_share"] < 0.12
    assert abs(Decimal(err["saving"]["RUB"]) - sum(r["cost"] for r in failed)) < Decimal("0.01")

    # summariser: a quarter of its answers cut at max_tokens; the saving in each currency it
    # spent, never added across them
    cut = by[("max_tokens", "summariser (llmgw_SUMM02)")]
    mine = [r for r in rows if r["key_id"] == month["keys"]["summariser"]]
    share = sum(r["finish_reason"] == "length" for r in mine) / len(mine)
    assert cut["evidence"]["truncated"] == sum(r["finish_reason"] == "length" for r in mine)
    assert 0.18 < cut["evidence"]["truncated_share"] < 0.3
    assert set(cut["saving"]) == {"RUB", "USD"}
    usd = sum(r["cost"] for r in mine if r["provider"] == "openai") * Decimal(share)
    assert abs(Decimal(cut["saving"]["USD"]) - usd) < Decimal("0.01")

    idle = by[("idle_key", "old-ci (llmgw_OLD-04)")]
    assert idle["saving"] == {} and idle["evidence"]["last_used_at"] is None


def test_a_report_reads_its_sections_and_recommendations_in_one_statement(
    engine: Engine,
) -> None:
    """A local report's keys, providers, models and recommendations come from one statement
    grouped by every dimension (not one for the sections and another for the
    recommendations), with the recommendations ``usage recommend`` gives for the window."""
    import sqlalchemy as sa

    from llmgw.usage.report_data import build, window

    usage_month.seed(engine)
    admin = _admin(engine)
    day = (usage_month.END - timedelta(days=3)).date()
    _, start, end = window("weekly", day)
    seen: list[str] = []

    def log(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", log)
    try:
        report = build(admin, "weekly", day, now=usage_month.END)
    finally:
        sa.event.remove(engine, "before_cursor_execute", log)
    every = [s for s in seen if "g_key_id" in s and "g_status" in s]
    assert len(every) == 1, len(every)
    assert report["recommendations"] == admin.usage_recommend(since=start, until=end)
    assert report["recommendations"]
