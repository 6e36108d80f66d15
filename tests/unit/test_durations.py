"""Durations as typed on the command line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from llmgw.durations import parse_duration
from llmgw.errors import UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        (" 7d ", timedelta(days=7)),
    ],
)
def test_valid(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["3x", "", "d", "0d", "-1d", "1.5h", "10", "999999999999d"])
def test_invalid_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text, param="--since")


def test_overflow_is_a_usage_error_not_a_crash() -> None:
    with pytest.raises(UsageError, match="too long"):
        parse_duration("999999999w")
