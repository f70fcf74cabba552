"""The charts render in headless Chromium: after real backups and drills, the evidence bundle's
report.html and the operator's state_dir/reports/drills.html show a time axis, the shaded min_history
window, drill bars and the RTO line (their exact colours are found in the screenshots)."""

from __future__ import annotations

import stat
import tarfile
import uuid

import pytest

from backupd.render import charts
from tests.integration.test_report_render import png_pixels, screenshot

pytestmark = pytest.mark.integration

TARGET = """  - name: chart-logs
    category: logs
    source: server
    owner: test
    sources: {{paths: ['{root}/logs/server']}}
    frequency: 1d
    rto: 2m
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


def rgb(hex_colour: str) -> bytes:
    return bytes.fromhex(hex_colour.lstrip("#"))


@pytest.fixture
def pages(stack, policy, tmp_path):
    """(report.html, drills.html) after two backups and two drills of one target."""
    setup = policy(TARGET.format(root=stack.env["TOS_ROOT"]), f"restic-chart-{uuid.uuid4().hex[:8]}")
    for args in (("backup", "--target", "chart-logs"), ("drill", "--target", "chart-logs"),
                 ("backup", "--target", "chart-logs"), ("drill", "--target", "chart-logs", "--full")):
        run = setup.cli(*args, "--json")
        assert run.code in (0, 1), run.stdout + run.stderr  # a slow machine may FAIL the 2m RTO: still charted
        if args[0] == "drill":
            assert run.doc["drills"][0]["service_ready_seconds"], run.stdout
    run = setup.cli("evidence", "export", "--out", str(tmp_path / "evidence.tar.gz"), "--json")
    assert run.code == 0, run.stdout + run.stderr
    with tarfile.open(tmp_path / "evidence.tar.gz") as tar:
        (tmp_path / "report.html").write_bytes(tar.extractfile("report.html").read())
    return tmp_path / "report.html", setup.dir / "state" / "reports" / "drills.html"


def test_report_and_drill_report_show_time_axis_window_drills_and_rto_line(pages, tmp_path):
    report, drills = pages
    assert stat.S_IMODE(drills.stat().st_mode) == 0o600
    html = drills.read_text(encoding="utf-8")
    assert "復旧訓練報告" in html and "Restore drill report" in html and "chart-logs" in html
    assert html.count('class="drill-bar"') == 2 and html.count("<span class='v-") == 2  # chart and list
    assert report.read_text(encoding="utf-8").count('class="restore-point"') >= 2
    for page in (report, drills):
        _, _, colours = png_pixels(screenshot(page, tmp_path / f"{page.stem}.png", tmp_path))
        # the RTO line: 2 px high across the plot (616 px); the time axis the same in its own colour
        assert colours[rgb(charts.RTO_COLOUR)] > 600, colours[rgb(charts.RTO_COLOUR)]
        assert colours[rgb(charts.AXIS_COLOUR)] > 600, colours[rgb(charts.AXIS_COLOUR)]
        assert colours[rgb(charts.WARN_LINE_COLOUR)] > 200  # dashed
        # the verdict legend (4 swatches of 12x12 px) plus the drill bars (at least MIN_BAR px high)
        assert sum(colours[rgb(c)] for c in charts.VERDICT_COLOURS.values()) >= 4 * 144 + 7
    _, _, colours = png_pixels(tmp_path / "report.png")
    assert colours[rgb(charts.WINDOW_FILL)] > 10_000  # the shaded min_history window
