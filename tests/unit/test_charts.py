"""Inline SVG charts: marks at the right x for their times, the RTO and WARN lines at the right y,
colours by verdict, the min_history window, escaping."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from backupd.render import charts

NS = {"s": "http://www.w3.org/2000/svg"}
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def marks(root: ET.Element, css: str) -> list[ET.Element]:
    return [e for e in root.iter() if e.get("class") == css]


def one(root: ET.Element, css: str) -> ET.Element:
    found = marks(root, css)
    assert len(found) == 1, (css, len(found))
    return found[0]


def test_restore_points_sit_at_their_time_relative_to_the_min_history_window():
    days = [40, 20, 10, 1]
    points = [{"id": f"{d:064d}", "time": (NOW - timedelta(days=d)).isoformat(), "suspect": False} for d in days]
    root = parse(charts.retention_chart("db", [("worm", points)], timedelta(days=30), NOW))
    window, now_line = one(root, "min-history-window"), one(root, "now")
    x_start, x_now = float(window.get("x")), float(now_line.get("x1"))
    assert float(window.get("width")) == pytest.approx(x_now - x_start, abs=0.02)  # shaded up to now
    per_day = (x_now - x_start) / 30
    dots = marks(root, "restore-point")
    assert len(dots) == 4
    for dot, d in zip(dots, days):
        assert float(dot.get("cx")) == pytest.approx(x_now - d * per_day, abs=0.05)
    inside = [float(dot.get("cx")) >= x_start for dot in dots]
    assert inside == [False, True, True, True]  # the 40-day-old point lies left of the window


def test_flagged_generations_are_marked_apart_in_their_own_colour():
    points = [{"id": "a" * 64, "time": (NOW - timedelta(days=2)).isoformat(), "suspect": True},
              {"id": "b" * 64, "time": (NOW - timedelta(days=1)).isoformat(), "suspect": False}]
    root = parse(charts.retention_chart("db", [("worm", points), ("usb", [])], timedelta(days=7), NOW))
    flagged = one(root, "flagged-point")
    assert flagged.get("data-time").startswith((NOW - timedelta(days=2)).date().isoformat())
    assert {p.get("stroke") for p in flagged.iter("{http://www.w3.org/2000/svg}path")} == {charts.FLAGGED_COLOUR}
    assert len(marks(root, "restore-point")) == 1 and charts.FLAGGED_COLOUR != charts.POINT_COLOUR
    lanes = [e.text for e in marks(root, "lane")]
    assert lanes == ["worm", "usb"]


def _drills():
    return [{"seq": 1, "time": (NOW - timedelta(days=30)).isoformat(), "ready_seconds": 1800, "verdict": "PASS"},
            {"seq": 2, "time": (NOW - timedelta(days=20)).isoformat(), "ready_seconds": 6000, "verdict": "WARN"},
            {"seq": 3, "time": (NOW - timedelta(days=10)).isoformat(), "ready_seconds": 9000, "verdict": "FAIL"},
            {"seq": 4, "time": NOW.isoformat(), "ready_seconds": "600.0", "verdict": "SUSPECT"}]


def test_drill_bars_at_their_time_with_heights_on_the_scale_of_the_rto_line():
    root = parse(charts.drill_chart("db", _drills(), 7200))
    bars = marks(root, "drill-bar")
    xs = [float(b.get("data-x")) for b in bars]
    assert xs == sorted(xs) and xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.05)  # 10 days apart each
    assert xs[3] - xs[2] == pytest.approx(xs[2] - xs[1], abs=0.05)
    baseline = float(one(root, "value-axis").get("y2"))
    per_second = [float(b.get("height")) / r for b, r in zip(bars, (1800, 6000, 9000, 600))]
    assert max(per_second) == pytest.approx(min(per_second), rel=1e-3)  # one linear scale
    assert all(float(b.get("y")) + float(b.get("height")) == pytest.approx(baseline, abs=0.02) for b in bars)
    rto, warn = one(root, "rto-line"), one(root, "warn-line")
    assert float(rto.get("y1")) == float(rto.get("y2")) == pytest.approx(baseline - 7200 * per_second[0], abs=0.6)
    assert float(warn.get("y1")) == pytest.approx(baseline - 0.8 * 7200 * per_second[0], abs=0.6)
    assert rto.get("stroke") == charts.RTO_COLOUR and warn.get("stroke-dasharray")
    # the FAIL bar reaches above the RTO line, the PASS bar stays below the WARN line
    assert float(bars[2].get("y")) < float(rto.get("y1")) < float(warn.get("y1")) < float(bars[0].get("y"))


def test_drill_marks_are_coloured_by_verdict():
    drills = [*_drills(), {"seq": 5, "time": NOW.isoformat(), "ready_seconds": None, "verdict": "FAIL"}]
    root = parse(charts.drill_chart("db", drills, 7200))
    got = {b.get("data-verdict"): b.get("fill") for b in marks(root, "drill-bar")}
    assert got == {"PASS": "#2e7d32", "WARN": "#f9a825", "FAIL": "#c62828", "SUSPECT": "#7b1fa2"}
    unmeasured = one(root, "drill-unmeasured")  # a drill that failed before timing: a marker on the baseline
    assert unmeasured.get("fill") == charts.VERDICT_COLOURS["FAIL"]
    assert len(set(got.values()) | {charts.RTO_COLOUR, charts.WARN_LINE_COLOUR}) == 6


def test_a_drill_far_below_its_rto_still_shows_a_bar():
    drills = [{"seq": 1, "time": NOW.isoformat(), "ready_seconds": 1.2, "verdict": "PASS"}]
    svg = charts.drill_chart("db", drills, 7200)
    root = parse(svg)
    bar, baseline = one(root, "drill-bar"), float(one(root, "value-axis").get("y2"))
    assert float(bar.get("height")) == charts.MIN_BAR
    assert float(bar.get("data-y")) == pytest.approx(baseline, abs=0.1)  # its true value, for the record
    assert "RTO 2h" in svg


def test_no_rto_draws_no_rto_line_and_says_so():
    svg = charts.drill_chart("db", _drills()[:1], None)
    root = parse(svg)
    assert not marks(root, "rto-line") and not marks(root, "warn-line") and "no RTO set" in svg


def test_the_time_axis_has_dated_ticks_inside_the_plot():
    root = parse(charts.drill_chart("db", _drills(), 7200))
    axis = one(root, "time-axis")
    left, right = float(axis.get("x1")), float(axis.get("x2"))
    labels = marks(root, "tick-label")
    assert 2 <= len(labels) <= charts.MAX_TICKS + 1
    assert all(left <= float(t.get("x")) <= right for t in labels)
    assert any(t.text == "2026-11-20" for t in labels) or all(t.text.startswith("2026-1") for t in labels)


def test_names_and_destinations_are_escaped():
    evil = "<script>alert('x')</script>&\""
    points = [{"id": evil, "time": NOW.isoformat(), "suspect": False}]
    for svg in (charts.retention_chart(evil, [(evil, points)], timedelta(days=1), NOW),
                charts.drill_chart(evil, [{"seq": evil, "time": NOW.isoformat(), "ready_seconds": 5,
                                           "verdict": evil}], 60)):
        assert "<script>" not in svg
        root = parse(svg)
        assert any(evil in (e.text or "") for e in root.iter())  # shown as text, intact


@pytest.mark.parametrize("highest, step, top", [(1, 1, 1), (100, 30, 120), (7200 * 1.1, 1800, 9000),
                                                 (20 * 86400, 345600, 20 * 86400)])
def test_value_ticks_are_round(highest, step, top):
    assert charts.value_ticks(highest) == (step, top)
