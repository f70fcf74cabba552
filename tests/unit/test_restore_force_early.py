"""restore --to --force into a used directory: a file already there with the manifest's content is never
taken as verified while restic still overwrites it (early verification is only for an empty directory)."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime, timezone
from types import SimpleNamespace

from backupd.actions import alongside, media
from backupd.actions import restore as restore_action
from backupd.actions.snapshot_choice import Selection
from backupd.engine.snapshots import Snapshot

GOOD = b"good content, as backed up\n" * 100
EVIL = b"evil content, same size!!!\n" * 100


def test_a_forced_restore_into_a_used_directory_verifies_what_restic_wrote_not_what_was_there(tmp_path, monkeypatch):
    to = tmp_path / "to"
    (to / "d").mkdir(parents=True)
    (to / "d" / "f").write_bytes(GOOD)  # the operator's copy: what the manifest says
    (to / "d" / "f").chmod(0o644)
    old = time.time() - 3600
    os.utime(to / "d" / "f", (old, old))
    snap = Snapshot(id="ab" * 32, short_id="abababab", time=datetime(2026, 1, 1, tzinfo=timezone.utc), host="h",
                    paths=["/d"], tags=["backupd", "target=t"])
    doc = {"target": "t", "files": [{"path": "/d/f", "type": "file", "size": len(GOOD), "mode": "0o644",
                                     "sha256": hashlib.sha256(GOOD).hexdigest()}]}

    def restic_restore(repo, sid, where, cancel=None):  # a tampered snapshot: other bytes, same size
        time.sleep(1.5)  # the early pass looks at the directory meanwhile
        (where / "d" / "f").write_bytes(EVIL)
        (where / "d" / "f").chmod(0o644)
        os.utime(where / "d" / "f", (old, old))

    monkeypatch.setattr(alongside.restic_restore, "restore", restic_restore)
    monkeypatch.setattr(media, "source_for", lambda cfg, ps, target, destination=None: media.Source("worm", None))
    monkeypatch.setattr(restore_action, "choose_point",
                        lambda *a, **k: Selection([snap], [snap], {}, snap, "the newest"))
    monkeypatch.setattr(restore_action, "load_manifest", lambda *a, **k: doc)
    cfg = SimpleNamespace(verifier=False, backup_hosts=lambda: ["h"], state_dir=tmp_path / "state")
    target = SimpleNamespace(name="t", destinations=["worm"], sources=SimpleNamespace(paths=["/d"], dump=None))
    policy_set = SimpleNamespace(target=lambda name: target, destinations={"worm": None})
    result = restore_action.run(cfg, policy_set, "t", to, force=True)
    assert result["status"] == "failed" and result["verification"]["mismatched"] == ["/d/f"]


def test_a_guessed_restore_the_choice_then_refuses_leaves_nothing_of_it_in_the_directory(tmp_path, monkeypatch):
    # restore --to starts restoring the snapshot the history names before the listing chose; when the choice
    # refuses (here: nothing restorable), what restic wrote of that snapshot (unverified, setuid bits and
    # all) must not stay in the operator's directory
    from backupd.errors import Finding
    from backupd.state.runs import State

    sid = "cd" * 32
    cfg = SimpleNamespace(verifier=False, backup_hosts=lambda: ["h"], state_dir=tmp_path / "state")
    State(cfg.state_dir).record("backup", "t", "worm", time.time() - 60, "ok", sid, {"facts": {}})
    to = tmp_path / "to"

    def restic_restore(repo, snapshot, where, cancel=None):
        (where / "d").mkdir()
        (where / "d" / "tool").write_bytes(b"#!/bin/sh\n")
        (where / "d" / "tool").chmod(0o4755)
        time.sleep(0.5)

    def refuse(*a, **k):
        time.sleep(0.2)
        raise Finding("no snapshot of t may be restored")

    monkeypatch.setattr(alongside.restic_restore, "restore", restic_restore)
    monkeypatch.setattr(alongside.restic_restore, "dump_file", lambda repo, sid, path: b"{}")
    monkeypatch.setattr(media, "source_for", lambda cfg, ps, target, destination=None: media.Source("worm", None))
    monkeypatch.setattr(restore_action, "choose_point", refuse)
    target = SimpleNamespace(name="t", destinations=["worm"], sources=SimpleNamespace(paths=["/d"], dump=None))
    policy_set = SimpleNamespace(target=lambda name: target, destinations={"worm": None})
    import pytest

    with pytest.raises(Finding, match="no snapshot"):
        restore_action.run(cfg, policy_set, "t", to)
    assert to.is_dir() and list(to.iterdir()) == []
