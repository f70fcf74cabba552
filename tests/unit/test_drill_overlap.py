"""A full drill reads its manifest alongside the restore (no restic needed): the read's outcome, the
stop it gives the restore, the hasher started late, and the lock-free dump."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import datetime, timezone

from types import SimpleNamespace

import pytest

from backupd.actions import snapshot_choice as choice
from backupd.drill.early import LateHasher
from backupd.engine import restore as restic_restore
from backupd.engine.snapshots import Snapshot
from backupd.errors import Finding
from backupd.process import execute

SNAP = Snapshot(id="ab" * 32, short_id="abababab", time=datetime(2026, 11, 1, tzinfo=timezone.utc), host="h",
                paths=["/data", "/state/manifests/db"], tags=["backupd", "target=db"])


def test_the_manifest_dump_takes_no_repository_lock(monkeypatch):
    """restic 0.14 retries ~45 s when a lock it listed vanishes: concurrent reads must not lock."""
    seen = []
    monkeypatch.setattr(restic_restore.command, "run",
                        lambda repo, sub, *args, **kw: seen.append((sub, args)) or execute.Completed(
                            argv=[], returncode=0, stdout=b"{}", stderr="", duration=0.0))
    restic_restore.dump_file(None, SNAP.id, "/state/manifests/db/backupd-manifest.json")
    assert seen == [("dump", ("--no-lock", SNAP.id, "/state/manifests/db/backupd-manifest.json"))]


def test_manifest_alongside_hands_over_the_manifest_and_runs_then_in_its_thread():
    seen = []
    with choice.ManifestAlongside(lambda: {"files": [], "snapshot": SNAP.id}, then=lambda doc: seen.append(
            threading.current_thread().name)) as manifest:
        doc = manifest.doc()
    assert doc["snapshot"] == SNAP.id and seen == ["manifest-read"] and not manifest.stop.is_set()


@pytest.mark.parametrize("where", ["read", "then"])
def test_a_failed_read_or_check_stops_the_restore_and_is_raised(where):
    def read():
        if where == "read":
            raise Finding("snapshot abababab has no backup-time manifest; cannot verify")
        return {"files": [{"path": "/data/x", "size": 10 << 40}]}

    def then(doc):
        raise Finding("drill needs 10995116277760 bytes, over the sandbox limit")

    with choice.ManifestAlongside(read, then=then) as manifest:
        with pytest.raises(Finding) as err:
            manifest.doc()
        assert manifest.stop.is_set()
    assert ("no backup-time manifest" if where == "read" else "sandbox limit") in str(err.value)


def test_the_read_keeps_the_callers_cancel():
    seen = {}

    def read():
        seen["cancelled"] = execute._with_ambient(None).is_set()
        return {}

    cancel = execute.Cancel()
    cancel.set()
    with choice.ManifestAlongside(read, cancel) as manifest:
        manifest.doc()
    assert seen["cancelled"] is True


def test_late_hasher_verifies_files_written_before_the_manifest_came(tmp_path):
    (tmp_path / "data").mkdir()
    body = b"yard plan\n" * 100
    (tmp_path / "data" / "plan.txt").write_bytes(body)
    doc = {"files": [{"path": "/data/plan.txt", "size": len(body), "type": "file",
                      "sha256": hashlib.sha256(body).hexdigest()}]}
    old = time.time() - 5
    os.utime(tmp_path / "data" / "plan.txt", (old, old))  # settled: nobody writes it any more
    with LateHasher(tmp_path) as early:
        early.start(doc)
        deadline = time.monotonic() + 10
        while not early.matched and time.monotonic() < deadline:
            time.sleep(0.05)
    assert early.matched == {"/data/plan.txt"}
    early.start(doc)  # after the block: ignored, nothing keeps running
    assert early._hasher._thread is not None and not early._hasher._thread.is_alive()


def test_the_listing_a_drill_or_restore_chooses_from_takes_no_lock(monkeypatch):
    """The restore that acts on the choice takes the lock; the listing before it writes none (~0.25 s)."""
    seen = []
    monkeypatch.setattr(choice.restic_snapshots.command, "run",
                        lambda repo, sub, *args, **kw: seen.append((sub, args)) or execute.Completed(
                            argv=[], returncode=0, stdout=b"[]", stderr="", duration=0.0))
    assert choice.target_listing(SimpleNamespace(name="dest"), "db", "h") == []
    assert seen == [("snapshots", ("--no-lock", "--host", "h", "--tag", "target=db"))]


def test_a_prefetched_manifest_dump_serves_only_the_snapshot_and_path_the_listing_names(monkeypatch):
    """A full drill dumps the manifest where backup stages it before the listing ends; load_manifest uses
    those bytes only for that snapshot and path, and reads again when the early dump failed."""
    from concurrent.futures import Future

    dumps = []
    monkeypatch.setattr(choice.restic_restore, "dump_file",
                        lambda repo, sid, path, timeout=600: dumps.append((sid, path)) or b'{"from": "dump"}')
    early: Future = Future()
    early.set_result(b'{"from": "early"}')
    inside = "/state/manifests/db/backupd-manifest.json"
    assert choice.load_manifest(None, SNAP, "db", "h", [SNAP], prefetched=("abababab", inside, early)) == \
        {"from": "early"} and dumps == []
    assert choice.load_manifest(None, SNAP, "db", "h", [SNAP], prefetched=("cdcdcdcd", inside, early)) == \
        {"from": "dump"} and dumps == [(SNAP.id, inside)]
    failed: Future = Future()
    failed.set_exception(Finding("restic dump: path not found"))
    assert choice.load_manifest(None, SNAP, "db", "h", [SNAP], prefetched=("abababab", inside, failed)) == \
        {"from": "dump"}


def test_empty_removes_what_a_stopped_restore_left_even_read_only_directories(tmp_path):
    from backupd.drill.sandbox import empty

    (tmp_path / "srv" / "locked").mkdir(parents=True)
    (tmp_path / "srv" / "locked" / "part.bin").write_bytes(b"half")
    (tmp_path / "top.txt").write_text("x")
    (tmp_path / "srv" / "locked").chmod(0o500)
    empty(tmp_path)
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []
