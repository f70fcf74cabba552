"""Progress of interactive backups: restic's status lines reach the bars; none without a terminal."""

import io
import sys
from pathlib import Path

from rich.console import Console

from backupd import output
from backupd.engine import backup, feature
from backupd.engine.repository import Repository

FAKE_RESTIC = """import json, sys
if sys.argv[1:2] == ["version"]:  # every restic call passes the version gate first
    print("restic 0.14.0 compiled with go1.19.8 on linux/amd64")
    sys.exit(0)
for p in (0.0, 0.25, 0.5, 1.0):
    print(json.dumps({"message_type": "status", "percent_done": p}), flush=True)
print(json.dumps({"message_type": "summary", "snapshot_id": "abcd1234", "files_new": 3}))
"""


def test_status_lines_feed_the_progress_callback(tmp_path):
    fake = tmp_path / "restic"
    fake.write_text(f"#!{sys.executable}\n{FAKE_RESTIC}")
    fake.chmod(0o755)
    repo = Repository("r", str(tmp_path / "repo"), Path("/nonexistent"), restic_binary=str(fake))
    feature.detect.cache_clear()
    seen = []
    summary = backup.backup_paths(repo, [str(tmp_path)], excludes=[], tags=[], host="h", on_progress=seen.append)
    assert seen == [0.0, 0.25, 0.5, 1.0] and summary.snapshot_id == "abcd1234"


def test_progress_of_ignores_other_lines():
    assert backup.progress_of(b'{"message_type":"status","percent_done":0.4}') == 0.4
    assert backup.progress_of(b'{"message_type":"summary"}') is None
    assert backup.progress_of(b"not json") is None


def test_bars_draw_on_a_terminal_and_stay_silent_when_piped(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(output, "err_console", Console(file=buf, force_terminal=True, width=100))
    with output.ProgressBars(enabled=True) as bars:
        bars.callback()("tos-programs", "worm", 0.5)
    assert "tos-programs -> worm" in buf.getvalue() and "50%" in buf.getvalue()
    assert output.ProgressBars(enabled=False).callback() is None
