"""Durations as people type them: ``90s``, ``15m``, ``12h``, ``30d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

from llmgw.errors import UsageError

__all__ = ["parse_duration"]

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RE = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*$")


def parse_duration(text: str, *, param: str = "duration") -> timedelta:
    """Parse ``<number><unit>`` with unit s, m, h, d or w; raise ``UsageError`` otherwise."""
    m = _RE.match(text or "")
    if not m or int(m.group(1)) == 0:
        raise UsageError(
            f"invalid {param} {text!r}",
            hint="use a positive whole number and a unit: 90s, 15m, 12h, 30d, 2w",
            param=param,
        )
    try:
        return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    except OverflowError:
        raise UsageError(
            f"{param} {text!r} is too long", hint="use at most 100 years", param=param
        ) from None
