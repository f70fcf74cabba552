"""backupd runbook on real restic + SeaweedFS: durations come from real drills, and the restore command it
prints, run as written, restores verified bytes."""

from __future__ import annotations

import shlex
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.restic]

TARGET = """  - name: rb-logs
    category: logs
    source: server
    owner: tos-vendor@example.jp
    sources: {{paths: ['{root}/logs/server']}}
    frequency: 1d
    rto: 2h
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


def _argv(command: str, **values: str) -> list[str]:
    """A runbook command as argv: placeholders filled in, `backupd` and `--config X` dropped (cli adds them)."""
    for key, value in values.items():
        command = command.replace(f"<{key}>", value)
    argv = shlex.split(command)[1:]
    at = argv.index("--config")
    return argv[:at] + argv[at + 2:]


def _runbook(setup, out):
    run = setup.cli("runbook", "--out", str(out), "--json")
    assert run.code == 0, run.stdout + run.stderr
    return {t["name"]: t for t in run.doc["targets"]}, run.doc


@pytest.fixture
def backed_up(stack, policy):
    setup = policy(TARGET.format(root=stack.env["TOS_ROOT"]), f"restic-rb-{uuid.uuid4().hex[:8]}")
    for target in ("rb-logs", "filler-logs"):
        run = setup.cli("backup", "--target", target, "--json")
        assert run.code == 0, run.stdout + run.stderr
    return setup


def test_runbook_durations_follow_real_drills_and_its_commands_work(backed_up, stack, tmp_path):
    setup = backed_up
    targets, _ = _runbook(setup, tmp_path / "rb0")
    assert targets["rb-logs"]["expected"]["basis"] == "not measured" and targets["rb-logs"]["last_drill"] is None
    assert list(targets)[0] == "filler-exports"  # container data first (incident.restore_order)

    drill = setup.cli(*_argv(targets["rb-logs"]["commands"]["drill"]), "--json", timeout=1800)
    assert drill.code == 0, drill.stdout + drill.stderr
    (full,) = drill.doc["drills"]
    sample = setup.cli("drill", "--target", "filler-logs", "--json")
    assert sample.code == 0, sample.stdout + sample.stderr

    targets, doc = _runbook(setup, tmp_path / "rb1")
    rb = targets["rb-logs"]
    assert rb["expected"]["basis"] == "full drill"
    assert rb["expected"]["seconds"] == pytest.approx(full["service_ready_seconds"], abs=1e-3)
    assert rb["last_drill"]["verdict"] == full["verdict"] and rb["owner"] == "tos-vendor@example.jp"
    assert targets["filler-logs"]["expected"]["basis"] == "projected"
    assert targets["filler-programs"]["expected"]["basis"] == "not measured"
    md = (tmp_path / "rb1" / "runbook.md").read_text()
    assert "rb-logs" in md and "保守・開発ベンダー" in md and "TOS maintenance/development vendors" in md

    restore_dir = tmp_path / "restored"
    now = datetime.now(timezone.utc).isoformat()
    run = setup.cli(*_argv(rb["commands"]["restore"], RESTORE_DIR=str(restore_dir),
                           INCIDENT_START_ISO8601=now), "--json")
    assert run.code == 0, run.stdout + run.stderr
    source = Path(stack.env["TOS_ROOT"]) / "logs" / "server" / "app.log"
    restored = list((restore_dir / "rb-logs").rglob("app.log"))
    assert len(restored) == 1 and restored[0].read_bytes() == source.read_bytes()  # unchanged since the backup
    assert doc["record_seq"] > 0
