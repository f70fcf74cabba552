"""The committed man pages (man/*.1) are the CLI's current click help: regenerated into a temporary directory
with the committed date, they must match byte for byte; and groff renders each without a warning (help text
with a line starting with '.' or a stray backslash would be eaten as a roff request)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from backupd.cli import main

# click-man 0.6 shortens help with click.utils.make_default_short_help, deprecated in click 8.2 (gone in 9;
# pyproject keeps click < 9)
pytestmark = pytest.mark.filterwarnings("ignore:'click.utils.make_default_short_help' is deprecated")

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man"
REGENERATE = ".venv/bin/python scripts/make-man.py"


def _make_man():
    spec = importlib.util.spec_from_file_location("make_man", ROOT / "scripts/make-man.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_man_pages_match_the_cli_help(tmp_path):
    make_man = _make_man()
    date = make_man.committed_date(MAN)
    assert date, f"man/backupd.1 missing or without a .TH date; run: {REGENERATE}"
    version = make_man.importlib.metadata.version("backupd")
    for name, text in make_man.render(main, "backupd", version, date).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    fresh, committed = make_man.current(tmp_path), make_man.current(MAN)
    assert sorted(fresh) == sorted(committed), f"man pages added or removed; run: {REGENERATE}"
    changed = [name for name in fresh if fresh[name] != committed[name]]
    assert not changed, f"man pages out of date with the CLI help: {changed}; run: {REGENERATE}"
    assert {"backupd.1", "backupd-drill.1", "backupd-evidence-verify.1", "backupd-policy-lint.1"} <= set(fresh)


def test_regenerating_an_unchanged_cli_touches_nothing(tmp_path):
    make_man = _make_man()
    shutil.copytree(MAN, tmp_path / "man")
    (tmp_path / "man/backupd-removed-command.1").write_text(".TH x\n")
    assert make_man.main([str(tmp_path / "man")]) == 0  # a stale page: everything rewritten, it is gone
    assert not (tmp_path / "man/backupd-removed-command.1").exists()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "man").iterdir()}
    assert make_man.main([str(tmp_path / "man")]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "man").iterdir()} == before


def test_every_page_renders_without_a_roff_warning():
    groff = shutil.which("groff")
    assert groff, "groff missing: scripts/setup.sh installs the Debian package man-db (groff-base)"
    pages = sorted(MAN.glob("*.1"))
    assert pages
    for page in pages:
        done = subprocess.run([groff, "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and not done.stderr, (page.name, done.stderr)
