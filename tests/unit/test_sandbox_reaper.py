"""A drill's sandbox is removed by a detached reaper that nobody waits for (sandbox.hand_off): the drill's own
name is gone at once, the tree follows in the background, nothing outside it is touched, and a drill started
meanwhile neither trips on it nor removes it twice."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest

from backupd.drill import reaper, sandbox
from backupd.drill.sandbox import TRASH, Sandbox, remove_stale, removing
from backupd.errors import DependencyError


def _gone(parent: Path, seconds: float = 30) -> bool:
    end = time.monotonic() + seconds
    while removing(parent) and time.monotonic() < end:
        time.sleep(0.02)
    return not removing(parent)


def _fill(box: Sandbox, outside: Path) -> None:
    for i in range(300):
        (box.restore_dir / f"f{i}").write_bytes(b"x" * 4096)
    locked = box.restore_dir / "ro"
    locked.mkdir()
    (locked / "inside").write_text("restored")
    (locked / "link").symlink_to(outside)  # a restored link out of the tree
    locked.chmod(0o500)


def test_a_detached_sandbox_is_renamed_at_once_and_removed_in_the_background(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    outside.chmod(0o640)
    parent = tmp_path / "sb"
    with Sandbox(parent, 1 << 30, detached=True) as box:
        _fill(box, outside)
    assert not box.path.exists()  # the drill's own name never lingers half-removed
    assert box.removed_as is not None and box.removed_as.name.startswith(TRASH)
    assert _gone(parent), "the reaper removes the handed-over tree"
    assert list(parent.iterdir()) == []
    assert outside.read_text() == "keep me" and stat.S_IMODE(outside.stat().st_mode) == 0o640


def test_a_drill_started_during_the_removal_neither_trips_on_it_nor_takes_it(tmp_path):
    parent = tmp_path / "sb"
    trash = parent / f"{TRASH}1-busy"
    (trash / "restore").mkdir(parents=True)
    (trash / "restore" / "big.bin").write_bytes(b"x" * 1000)
    fd = os.open(trash, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a reaper at work
    try:
        with Sandbox(parent, 1 << 30, detached=True) as box:
            assert str(trash) not in box.stale_removed and trash.exists()
            (box.restore_dir / "restored").write_text("next drill")
            assert (box.restore_dir / "restored").read_text() == "next drill"
    finally:
        os.close(fd)  # that reaper dies without finishing
    assert _gone(parent, 0) is False  # the next drill's own sandbox went to its reaper; the dead one's is left
    assert remove_stale(parent) == [str(trash)]  # for the drill after it, which finishes it
    assert _gone(parent) and list(parent.iterdir()) == []


def test_a_tree_whose_reaper_died_is_finished_by_the_next_drill(tmp_path):
    parent = tmp_path / "sb"
    trash = parent / f"{TRASH}999999999-half"
    (trash / "restore" / "d").mkdir(parents=True)
    (trash / "restore" / "d" / "left").write_text("half removed")
    with Sandbox(parent, 1 << 20) as box:
        assert str(trash) in box.stale_removed
    assert not trash.exists() and list(parent.iterdir()) == []


def test_a_restore_that_would_not_fit_waits_for_the_removals_in_its_way(tmp_path, monkeypatch):
    parent = tmp_path / "sb"
    trash = parent / f"{TRASH}1-big"
    trash.mkdir(parents=True)
    fd = os.open(trash, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sandbox.shutil, "disk_usage",
                        lambda p: usage(100, 0, 10 if trash.exists() else 100))

    def reaper_done():
        time.sleep(0.3)
        os.rmdir(trash)
        os.close(fd)

    with Sandbox(parent, 1 << 20) as box:
        threading.Thread(target=reaper_done).start()
        box.reserve(50)  # no Finding: the space came back once the reaper was done
    assert not trash.exists()


def test_the_sandbox_is_removed_inline_when_no_reaper_can_start(tmp_path, monkeypatch):
    def no_python(*a, **k):
        raise DependencyError("python: program not found")

    monkeypatch.setattr(sandbox.execute, "detach", no_python)
    parent = tmp_path / "sb"
    with Sandbox(parent, 1 << 20, detached=True) as box:
        (box.restore_dir / "x").write_text("x")
    assert list(parent.iterdir()) == []


@pytest.mark.parametrize("case", ["not-trash", "other-dir", "symlink"])
def test_the_reaper_removes_only_the_directory_it_was_handed(tmp_path, case):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("x")
    held = tmp_path / f"{TRASH}1-held"
    held.mkdir()
    path = {"not-trash": victim, "other-dir": tmp_path / f"{TRASH}2-other", "symlink": tmp_path / f"{TRASH}3-l"}[case]
    if case == "other-dir":
        path.mkdir()
    if case == "symlink":
        path.symlink_to(victim)
    fd = os.open(victim if case == "not-trash" else held, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert reaper.main([str(path), str(fd), "5"]) == 1
    finally:
        os.close(fd)
    assert (victim / "precious").exists() and held.exists() and os.path.lexists(path)


def test_the_reaper_never_runs_a_backupd_package_planted_in_the_drills_working_directory(tmp_path, monkeypatch):
    # `python -m` puts the working directory first on sys.path: a drill run from a directory others can
    # write (/tmp) must not hand its sandbox to their `backupd.drill.reaper`
    planted = tmp_path / "cwd"
    (planted / "backupd" / "drill").mkdir(parents=True)
    ran = tmp_path / "planted-code-ran"
    (planted / "backupd" / "__init__.py").write_text("")
    (planted / "backupd" / "drill" / "__init__.py").write_text("")
    (planted / "backupd" / "drill" / "reaper.py").write_text(f"open({str(ran)!r}, 'w').write('x')\n")
    monkeypatch.chdir(planted)
    parent = tmp_path / "sb"
    with Sandbox(parent, 1 << 30, detached=True) as box:
        (box.restore_dir / "f").write_text("restored")
    assert _gone(parent), "the real reaper removes the handed-over tree"
    assert not ran.exists()


def test_a_sandbox_under_a_relative_parent_is_still_removed_by_its_reaper(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Sandbox(Path("sb"), 1 << 30, detached=True) as box:
        (box.restore_dir / "f").write_text("restored")
    assert _gone(tmp_path / "sb") and list((tmp_path / "sb").iterdir()) == []


def test_a_stopped_drill_stops_waiting_for_the_removals_in_its_way(tmp_path, monkeypatch):
    from backupd.process import execute

    parent = tmp_path / "sb"
    trash = parent / f"{TRASH}1-slow"
    trash.mkdir(parents=True)
    fd = os.open(trash, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a reaper that takes its time
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sandbox.shutil, "disk_usage", lambda p: usage(100, 0, 10))
    monkeypatch.setattr(sandbox, "FREE_WAIT_SECONDS", 3)
    cancel = execute.Cancel()
    try:
        with Sandbox(parent, 1 << 20, cancel=cancel) as box:
            threading.Timer(0.3, cancel.set).start()  # SIGTERM meanwhile
            with pytest.raises(execute.Interrupted):
                box.reserve(50)
    finally:
        os.close(fd)
    assert trash.exists()  # still the reaper's


def test_a_sandbox_that_cannot_be_renamed_is_removed_inline_without_an_error(tmp_path, monkeypatch):
    def busy(src, dst):
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr(sandbox.os, "rename", busy)
    parent = tmp_path / "sb"
    with Sandbox(parent, 1 << 30, detached=True) as box:
        (box.restore_dir / "f").write_text("restored")
    assert not box.path.exists() and list(parent.iterdir()) == []


def test_restored_unreadable_directories_are_removed_by_an_unprivileged_owner(tmp_path):
    """The daemon is not root: a restored 0000 directory (even nested) cannot be listed until made readable;
    the sandbox still goes entirely."""
    import subprocess
    import sys

    from tests.integration.conftest import ROOT

    import shutil
    import tempfile

    outer = Path(tempfile.mkdtemp(prefix="backupd-test-"))  # pytest's own tmp tree is root's, 0700
    outer.chmod(0o711)
    top = outer / "sandbox"
    deep = top / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "f").write_text("x")
    (top / "a" / "g").write_text("y")
    for p in [outer, top, *top.rglob("*")]:  # the sandbox's parent is the daemon's own, as in a drill
        os.chown(p, 65534, 65534, follow_symlinks=False)
    for d in (top / "a" / "b" / "c", top / "a" / "b", top / "a"):
        d.chmod(0)
    script = ("import os, sys; from pathlib import Path; from backupd.drill.sandbox import _remove; "
              "os.setgroups([]); os.setgid(65534); os.setuid(65534); _remove(Path(sys.argv[1]))")  # after the imports
    done = subprocess.run([sys.executable, "-c", script, str(top)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    try:
        assert done.returncode == 0, done.stderr
        assert not top.exists()
    finally:
        for d in [outer, *outer.rglob("*")]:
            if d.is_dir() and not d.is_symlink():
                d.chmod(0o700)
        shutil.rmtree(outer)
