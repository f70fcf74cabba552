"""The default restore point: drill-proven where possible, never a suspect or drill-failed generation, and
still a restore point when retention has forgotten every drilled generation (found by a daily year of history:
the restore then found "no clean snapshot" at all)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backupd.actions import restore
from backupd.actions.snapshot_choice import choose
from backupd.engine.snapshots import Snapshot
from backupd.errors import Finding
from backupd.state.runs import State

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _snaps(n: int) -> list[Snapshot]:
    out = []
    for i in range(n):
        sid = f"{i:02d}" + "b" * 62
        out.append(Snapshot(id=sid, short_id=sid[:8], time=T0 + timedelta(days=i), host="h", paths=["/d"],
                            tags=["backupd", "target=t"]))
    return out


def test_a_drilled_generation_is_preferred():
    snaps = _snaps(4)
    snap, why = choose(snaps, None, None, {}, {snaps[1].id})
    assert snap.id == snaps[1].id and "passed a restore drill" in why


def test_when_retention_forgot_every_drilled_generation_the_newest_clean_one_is_chosen_and_said_unproven():
    snaps = _snaps(4)
    bad = {snaps[3].id: "flagged as suspect at backup time"}
    snap, why = choose(snaps, None, None, bad, {"ffffffff" + "0" * 56})  # the drilled one is gone
    assert snap.id == snaps[2].id
    assert "NOT proven by a drill" in why


def test_only_flagged_generations_still_refuse():
    snaps = _snaps(2)
    with pytest.raises(Finding, match="no clean snapshot"):
        choose(snaps, None, None, {s.id: "flagged as suspect at backup time" for s in snaps}, set())


def test_a_generation_that_failed_a_drill_is_excluded(tmp_path):
    class Cfg:
        state_dir = tmp_path

    snaps = _snaps(3)
    state = State(tmp_path)
    state.record("drill", "t", "worm", 0.0, "fail", snaps[2].id, {})
    bad = restore.excluded(Cfg, "t", {})
    snap, _ = choose(snaps, None, None, bad, restore.drilled_snapshots(Cfg, "t"))
    assert snaps[2].id in bad and snap.id == snaps[1].id
