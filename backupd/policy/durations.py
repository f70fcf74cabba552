"""Durations in policies: ``<int><unit>`` with unit s|m|h|d|w|y (``y`` = 365 days).

``parse_duration("6w")`` -> ``timedelta(weeks=6)``; a bare int means seconds.
``format_duration(timedelta(days=14))`` -> ``"2w"`` (the largest unit that divides exactly).
"""

from __future__ import annotations

import re
from datetime import timedelta

UNIT_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_PATTERN = r"^\s*[0-9]+\s*[smhdwy]\s*$"
_DURATION_RE = re.compile(r"\s*([0-9]+)\s*([smhdwy])\s*")
_MAX_SECONDS = 1000 * 365 * 86400  # 1000 years: anything longer is a typo


def parse_duration(value: str | int | timedelta) -> timedelta:
    """Parse ``"90m"``, ``"1h"``, ``"6w"``, ``"1y"`` or an int of seconds; ValueError says what is wrong."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"a duration must be a string like '1h' or '6w', got {type(value).__name__}")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION_RE.fullmatch(value)
        if not match:
            raise ValueError(
                f"invalid duration {value[:40]!r}: use <integer><unit> with unit s, m, h, d, w or y "
                "(e.g. '30m', '1h', '6w')"
            )
        seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration must not be negative")
    if seconds > _MAX_SECONDS:
        raise ValueError("a duration longer than 1000 years is not supported")
    return timedelta(seconds=seconds)


def format_duration(td: timedelta) -> str:
    """Format a timedelta with the largest unit that divides it exactly (``"6w"``, ``"36h"``, ``"0s"``)."""
    seconds = int(td.total_seconds())
    if seconds == 0:
        return "0s"
    for unit, size in UNIT_SECONDS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
