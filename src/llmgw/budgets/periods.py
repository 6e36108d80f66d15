"""Budget periods: UTC days and calendar months, their starts, ends and names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = ["PERIODS", "Period", "period_bounds", "period_name"]

Period = Literal["day", "month"]
PERIODS: tuple[str, ...] = ("day", "month")


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` of the UTC day or month holding ``now``."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def period_name(period: str, start: datetime) -> str:
    """A compact name of the period starting at ``start``: ``20261203`` or ``202612``."""
    return start.strftime("%Y%m%d" if period == "day" else "%Y%m")
