"""Forecasts from a seeded, realistic daily series: office-hours traffic, quiet weekends."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from llmgw.usage.analytics import forecast, top

TODAY = date(2026, 12, 17)  # a Thursday, mid-month


def _month(seed: int = 7) -> list[dict[str, Any]]:
    """60 days of spend: ~10 USD on weekdays, ~2 on weekends, 15 % noise; a RUB provider at
    ~300 a weekday; today half-spent."""
    rnd = random.Random(seed)
    rows = []
    for n in range(60, -1, -1):
        d = TODAY - timedelta(days=n)
        weekday = d.weekday() < 5
        usd = (10 if weekday else 2) * rnd.uniform(0.85, 1.15) * (0.5 if n == 0 else 1)
        rub = (300 if weekday else 40) * rnd.uniform(0.85, 1.15) * (0.5 if n == 0 else 1)
        rows.append({"day": d.isoformat(), "costs": {"USD": f"{usd:.6f}", "RUB": f"{rub:.6f}"}})
    return rows


def test_forecast_beats_the_naive_extrapolation_on_the_back_test() -> None:
    rows = _month()
    found = {f["currency"]: f for f in forecast(rows, TODAY)}
    assert set(found) == {"RUB", "USD"}  # one forecast per currency, never added
    for cur, f in found.items():
        assert f["month"] == "2026-12" and f["backtest_days"] == 61 - 1 - 14
        mae, naive = Decimal(f["backtest_mae"]), Decimal(f["naive_backtest_mae"])
        assert mae < naive * Decimal("0.6"), (cur, mae, naive)  # weekdays matter
        mtd = sum(Decimal(r["costs"][cur]) for r in rows if r["day"].startswith("2026-12"))
        assert abs(Decimal(f["month_to_date"]) - mtd) < Decimal("0.00001")
        low, mid, high = (Decimal(f[k]) for k in ("low", "forecast", "high"))
        assert mtd <= low < mid < high
    usd = found["USD"]
    # about 133 USD so far; the rest of today and 14 more days (10 weekdays, 4 weekend days)
    assert Decimal(200) < Decimal(usd["forecast"]) < Decimal(300)


def test_forecast_with_little_history_has_no_back_test() -> None:
    rows = [
        {"day": (TODAY - timedelta(days=n)).isoformat(), "cost": "1", "currency": "USD"}
        for n in range(5)
    ]
    (f,) = forecast(rows, TODAY)
    assert f["backtest_mae"] is None and f["backtest_days"] == 0
    assert Decimal(f["forecast"]) > Decimal(f["month_to_date"])


def test_top_ranks_each_currency_on_its_own() -> None:
    rows = [
        {"model": "a", "requests": 5, "total_tokens": 10, "costs": {"USD": "1"}},
        {"model": "b", "requests": 9, "total_tokens": 99, "costs": {"RUB": "50", "USD": "2"}},
    ]
    assert [(r["currency"], r["rank"], r["model"]) for r in top(rows, "cost")] == [
        ("RUB", 1, "b"),
        ("USD", 1, "b"),
        ("USD", 2, "a"),
    ]
    assert [r["model"] for r in top(rows, "tokens", 1)] == ["b"]


def test_a_row_in_two_currencies_is_ranked_in_each_under_its_currency() -> None:
    """A key that spent roubles and dollars (its statistics record's own ``currency`` is None)
    appears in both rankings, each row naming the ranking's currency (it said None once)."""
    rows: list[dict[str, Any]] = [
        {"key": "k1", "currency": None, "cost": None, "costs": {"RUB": "10", "USD": "0.5"}},
        {"key": "k2", "currency": "USD", "cost": "2", "costs": {"USD": "2"}},
    ]
    ranked = [(r["currency"], r["rank"], r["key"], r["value"]) for r in top(rows, "cost")]
    assert ranked == [("RUB", 1, "k1", "10"), ("USD", 1, "k2", "2"), ("USD", 2, "k1", "0.5")]
