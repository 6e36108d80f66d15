"""The alert dashboard's chart geometry (server/web/charts.py): buckets without gaps, stacked
bars that add up, class names only from the fixed list, firing spans on one axis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llmgw.server.web.charts import buckets, severity_class, stacked_bars, timeline

T = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)


def test_buckets_cover_the_period_without_gaps() -> None:
    hours = buckets(T - timedelta(hours=3), T, "hour")
    assert hours == [
        "2026-12-01T07:00:00Z",
        "2026-12-01T08:00:00Z",
        "2026-12-01T09:00:00Z",
        "2026-12-01T10:00:00Z",
    ]
    assert buckets(T - timedelta(days=2), T, "day") == ["2026-11-29", "2026-11-30", "2026-12-01"]


def test_severity_class_is_one_of_a_fixed_list() -> None:
    assert severity_class("Critical") == "critical"
    assert severity_class('"><script>') == "other"
    assert severity_class(None) == "other"


def test_stacked_bars_add_up_and_skip_buckets_outside_the_period() -> None:
    keys = buckets(T - timedelta(hours=2), T, "hour")
    over_time = [
        {"t": "2026-12-01T09:00:00Z", "critical": 3, "warning": 1, "page-me": 2},
        {"t": "2026-11-01T09:00:00Z", "critical": 99},  # started before the period
    ]
    chart = stacked_bars(over_time, keys, "hour")
    assert [r["t"] for r in chart.rows] == [
        "2026-12-01 08:00",
        "2026-12-01 09:00",
        "2026-12-01 10:00",
    ]
    assert chart.rows[1] == {
        "t": "2026-12-01 09:00", "critical": 3, "error": 0, "warning": 1, "info": 0, "other": 2,
    }  # fmt: skip
    assert sum(r["critical"] for r in chart.rows) == 3
    bars = chart.bars
    assert [b["cls"] for b in bars] == ["critical", "warning", "other"]
    assert [b["title"] for b in bars] == [
        "2026-12-01 09:00: 3 critical",
        "2026-12-01 09:00: 1 warning",
        "2026-12-01 09:00: 2 other",
    ]
    # stacked: each bar starts where the one below ends; the tallest stack reaches the top tick
    assert bars[0]["y"] == round(bars[1]["y"] + bars[1]["h"], 1)
    assert bars[1]["y"] == round(bars[2]["y"] + bars[2]["h"], 1)
    assert chart.yticks[-1]["text"] == "6" and round(sum(b["h"] for b in bars)) == round(
        chart.yticks[0]["y"] - chart.yticks[-1]["y"]
    )


def test_the_y_axis_ticks_are_whole_numbers_where_they_are_drawn() -> None:
    keys = buckets(T, T, "hour")
    for n, ticks in [(1, ["0", "1"]), (3, ["0", "2", "4"]), (5, ["0", "3", "6"]),
                     (37, ["0", "20", "40"]), (1234, ["0", "700", "1400"])]:  # fmt: skip
        chart = stacked_bars([{"t": keys[0], "critical": n}], keys, "hour")
        assert [t["text"] for t in chart.yticks] == ticks
        top, bottom = chart.yticks[-1]["y"], chart.yticks[0]["y"]
        # the bar of n reaches n / top of the axis, the middle tick sits at its value
        assert abs(chart.bars[0]["h"] - (bottom - top) * n / int(ticks[-1])) <= 0.1
        if len(ticks) == 3:
            middle = chart.yticks[1]["y"]
            assert round((bottom - middle) / (bottom - top), 3) == round(
                int(ticks[1]) / int(ticks[2]), 3
            )


def test_timeline_draws_each_occurrence_as_a_span() -> None:
    occ = [
        {"id": 1, "status": "resolved", "starts_at": (T - timedelta(minutes=60)).isoformat(),
         "ends_at": (T - timedelta(minutes=50)).isoformat()},
        {"id": 2, "status": "firing", "starts_at": (T - timedelta(minutes=20)).isoformat(),
         "ends_at": None},
    ]  # fmt: skip
    chart = timeline(occ, T)
    first, second = chart.bars
    assert (first["cls"], second["cls"]) == ("resolved", "firing")
    assert first["x"] == 4 and round(second["x"] + second["w"]) == chart.width - 4
    assert round(first["w"] / second["w"], 1) == 0.5  # 10 minutes against 20 still firing
    assert timeline([], T).bars == []
