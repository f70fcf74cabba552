"""The bilingual HTML outputs (evidence report.html, runbook.html) render in headless Chromium: a real
backup, the real CLI, a screenshot that is a valid, non-blank PNG."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tarfile
import uuid
import zlib
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

WIDTH, HEIGHT = 1280, 2000
TARGET = """  - name: render-logs
    category: logs
    source: server
    owner: test
    sources: {{paths: ['{root}/logs/server']}}
    frequency: 1d
    rto: 2h
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


def screenshot(html: Path, png: Path, tmp: Path) -> Path:
    """Render html with headless Chromium (no network, throw-away profile) into png."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: run scripts/setup.sh"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp / 'chromium-profile'}", f"--screenshot={png}",
                    f"--window-size={WIDTH},{HEIGHT}", html.resolve().as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert png.is_file(), f"chromium wrote no screenshot of {html}"
    print(f"screenshot: {png}")
    return png


def png_pixels(path: Path) -> tuple[int, int, Counter]:
    """(width, height, colour counts) of an 8-bit RGB/RGBA PNG, decoded with zlib (PNG filters undone)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + size
    raw, bpp = zlib.decompress(b"".join(idat)), 3 if ctype == 2 else 4
    stride, prev, colours = width * bpp, bytearray(width * bpp), Counter()
    assert len(raw) == height * (stride + 1), "truncated image data"
    for y in range(height):
        cur = _unfilter(raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]),
                        prev, bpp)
        colours.update(bytes(cur[i:i + 3]) for i in range(0, stride, bpp))
        prev = cur
    return width, height, colours


def _unfilter(kind: int, cur: bytearray, prev: bytearray, bpp: int) -> bytearray:
    """Undo one row's PNG filter (0 none, 1 sub, 2 up, 3 average, 4 Paeth)."""
    if kind == 2:
        return bytearray((x + b) & 255 for x, b in zip(cur, prev))
    for i in range(len(cur)) if kind else ():
        a, b, c = (cur[i - bpp], prev[i], prev[i - bpp]) if i >= bpp else (0, prev[i], 0)
        if kind == 1:
            cur[i] = (cur[i] + a) & 255
        elif kind == 3:
            cur[i] = (cur[i] + (a + b) // 2) & 255
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return cur


def assert_rendered(png: Path) -> None:
    """A plausible page: right size, many colours (text anti-aliasing), a good share of non-white ink."""
    assert 20_000 < png.stat().st_size < 20_000_000
    width, height, colours = png_pixels(png)
    assert (width, height) == (WIDTH, HEIGHT)
    ink = sum(n for rgb, n in colours.items() if rgb != b"\xff\xff\xff")
    assert len(colours) > 50 and ink > 0.02 * width * height, (len(colours), ink)


@pytest.fixture
def outputs(stack, policy, tmp_path):
    """report.html of an exported evidence bundle and runbook.html, after a real backup and drill."""
    assert subprocess.run(["fc-list", ":lang=ja"], capture_output=True, text=True).stdout.strip(), \
        "no Japanese font (fonts-noto-cjk): run scripts/setup.sh"
    setup = policy(TARGET.format(root=stack.env["TOS_ROOT"]), f"restic-render-{uuid.uuid4().hex[:8]}")
    for args in (("backup", "--target", "render-logs"), ("drill", "--target", "render-logs", "--full"),
                 ("evidence", "export", "--out", str(tmp_path / "evidence.tar.gz")),
                 ("runbook", "--out", str(tmp_path / "runbook"))):
        run = setup.cli(*args, "--json")
        assert run.code == 0, run.stdout + run.stderr
    with tarfile.open(tmp_path / "evidence.tar.gz") as tar:
        (tmp_path / "report.html").write_bytes(tar.extractfile("report.html").read())
    return tmp_path / "report.html", tmp_path / "runbook" / "runbook.html"


def test_evidence_report_and_runbook_render_bilingual_in_chromium(outputs, tmp_path):
    report, runbook = outputs
    html = report.read_text(encoding="utf-8")
    assert "バックアップ証跡報告書" in html and "Backup evidence report" in html
    assert "ガイドライン項目" in html and "Guideline items" in html and "render-logs" in html
    html = runbook.read_text(encoding="utf-8")
    assert "システム復旧手順書" in html and "System recovery runbook" in html and "render-logs" in html
    assert "保守・開発ベンダー" in html and "shared in advance with the TOS maintenance/development vendors" in html
    for page in (report, runbook):
        assert_rendered(screenshot(page, tmp_path / f"{page.stem}.png", tmp_path))
