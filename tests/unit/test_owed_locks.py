"""A backup lists a repository's locks only when a restic of backupd's may have left one (actions/locks.py),
and names its snapshot from restic's cache instead of a second restic start-up (engine/snapshots.py)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from backupd.actions import locks
from backupd.engine import snapshots
from backupd.engine.repository import Repository


def test_a_clean_run_owes_nothing_and_leaves_no_marker(tmp_path):
    with locks.at_work(tmp_path, "worm"):
        assert list((tmp_path / locks.AT_WORK).iterdir())  # marked while restic works
        with locks.at_work(tmp_path, "worm"):  # a second job of the daemon on the same destination
            pass
        assert list((tmp_path / locks.AT_WORK).iterdir())
    assert not list((tmp_path / locks.AT_WORK).iterdir())
    assert not locks.owed(tmp_path, "worm")


def test_a_job_that_raised_owes_a_clean_up_until_settled(tmp_path):
    with pytest.raises(RuntimeError):
        with locks.at_work(tmp_path, "other"):
            raise RuntimeError("restic killed at the deadline")
    assert locks.owed(tmp_path, "other") and not locks.owed(tmp_path, "worm")
    locks.settled(tmp_path, "other")
    assert not locks.owed(tmp_path, "other")


def test_the_marker_of_a_killed_process_is_owed_and_a_live_ones_is_not(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / locks.AT_WORK).mkdir()
        (tmp_path / locks.AT_WORK / f"a@b@{live.pid}").touch()  # a destination name may hold an @
        assert not locks.owed(tmp_path, "a@b")
        (tmp_path / locks.AT_WORK / f"a@b@{dead.pid}").touch()
        assert locks.owed(tmp_path, "a@b") and not locks.owed(tmp_path, "a")
        locks.settled(tmp_path, "a@b")
        assert not locks.owed(tmp_path, "a@b")
        assert (tmp_path / locks.AT_WORK / f"a@b@{live.pid}").exists()
    finally:
        live.kill()
        live.wait()


def _cached(tmp_path, repo_id: str, full: str, age: float = 0.0):
    shard = tmp_path / "cache" / repo_id / "snapshots" / full[:2]
    shard.mkdir(parents=True, exist_ok=True)
    path = shard / full
    path.write_bytes(b"encrypted")
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return Repository("worm", "s3:x", tmp_path / "pw", cache_dir=tmp_path / "cache")


def test_the_full_id_is_read_from_the_file_restic_just_cached(tmp_path):
    full = "ab" + "1" * 62
    repo = _cached(tmp_path, "r1", full)
    since = time.time() - 5
    assert snapshots.cached_full_id(repo, full[:8], since) == full
    _cached(tmp_path, "r1", "ab" + "2" * 62, age=3600)  # an old snapshot of another prefix: irrelevant
    assert snapshots.cached_full_id(repo, full[:8], since) == full


@pytest.mark.parametrize("case", ["two", "old", "none", "bad"])
def test_no_single_fresh_cached_file_means_no_answer(tmp_path, case):
    full = "ab" + "1" * 62
    repo = _cached(tmp_path, "r1", full, age=3600 if case == "old" else 0.0)
    if case == "two":  # the same prefix in another repository's cache: ambiguous, ask restic
        _cached(tmp_path, "r2", full[:8] + "f" * 56)
    short = {"none": "cd123456", "bad": "../ab111"}.get(case, full[:8])
    assert snapshots.cached_full_id(repo, short, time.time() - 60) is None


def test_the_backup_names_its_snapshot_from_the_cache_without_listing(tmp_path, monkeypatch):
    from backupd.actions import backup

    full = "ab" + "3" * 62
    repo = _cached(tmp_path, "r1", full)

    def listing(*_a, **_k):
        raise AssertionError("listed the repository")

    monkeypatch.setattr(backup.restic_snapshots, "list_snapshots", listing)
    notes: list[str] = []
    assert backup._full_id(repo, full[:8], notes, time.time()) == full and notes == []
