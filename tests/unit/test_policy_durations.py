"""Durations: parse and format."""

from datetime import timedelta

import pytest

from backupd.policy.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("1h", timedelta(hours=1)),
        ("14d", timedelta(days=14)),
        ("6w", timedelta(weeks=6)),
        ("1y", timedelta(days=365)),
        (" 2h ", timedelta(hours=2)),
        (3600, timedelta(hours=1)),
        (0, timedelta(0)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "h", "1", "1.5h", "-1h", "1 hour", "6W", "1h30m", True, None, 1.5, -5, "99999y"])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_parse_duration_message_is_clear():
    with pytest.raises(ValueError, match=r"invalid duration '3x'.*s, m, h, d, w or y"):
        parse_duration("3x")


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(weeks=6), "6w"),
        (timedelta(days=1), "1d"),
        (timedelta(days=365), "1y"),
        (timedelta(hours=36), "36h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=61), "61s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration(td, text):
    assert format_duration(td) == text
    assert parse_duration(text) == td
