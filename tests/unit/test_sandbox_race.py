"""A drill's new sandbox is never taken for a stale one; a shared /tmp parent is used only when it is ours."""

import os
import stat
import tempfile

import pytest

from backupd.drill import sandbox
from backupd.drill.sandbox import Sandbox, private_dir, remove_stale


def test_concurrent_drill_does_not_remove_a_new_sandbox(tmp_path, monkeypatch):
    parent = tmp_path / "sb"
    real = tempfile.mkdtemp

    def mkdtemp_then_other_drill_sweeps(*args, **kwargs):
        made = real(*args, **kwargs)
        assert remove_stale(parent) == []  # another drill starts right here, before any owner file exists
        return made

    monkeypatch.setattr(sandbox.tempfile, "mkdtemp", mkdtemp_then_other_drill_sweeps)
    with Sandbox(parent, 1 << 20) as box:
        assert box.path.is_dir() and box.restore_dir.is_dir()


def test_sandbox_of_a_dead_drill_named_by_pid_is_removed(tmp_path):
    parent = tmp_path / "sb"
    (parent / "drill-999999999-abc").mkdir(parents=True)
    (parent / f"drill-{os.getpid()}-live").mkdir()
    assert remove_stale(parent) == [str(parent / "drill-999999999-abc")]
    assert (parent / f"drill-{os.getpid()}-live").exists()


def test_private_dir_creates_and_accepts_only_our_own_directory(tmp_path):
    assert private_dir(tmp_path / "mine") == tmp_path / "mine"
    assert stat.S_IMODE((tmp_path / "mine").stat().st_mode) == 0o711
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    assert private_dir(tmp_path / "link") is None  # a planted symlink is never followed (or chmod-ed)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    (tmp_path / "file").write_text("x")
    assert private_dir(tmp_path / "file") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create another user's directory")
def test_private_dir_refuses_another_users_directory(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, 65534, 65534)
    assert private_dir(theirs) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the /tmp fallback is for drills run as root")
def test_tmp_fallback_never_uses_a_planted_symlink(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from backupd.actions import drill as drill_action

    shared = tmp_path / "tmp"
    shared.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (shared / "backupd-sandbox").symlink_to(victim)
    monkeypatch.setattr(drill_action.tempfile, "tempdir", str(shared))
    monkeypatch.setattr(drill_action, "confined", lambda spec: True)
    monkeypatch.setattr(drill_action.sandbox, "reachable", lambda path, uid: True, raising=False)
    cfg = SimpleNamespace(state_dir=tmp_path / ("long" * 20) / "state")
    spec = SimpleNamespace(sandbox=SimpleNamespace(dir=None))
    chosen = drill_action.sandbox_parent(cfg, spec)
    assert chosen.parent == shared and chosen.name.startswith("backupd-sandbox-") and not chosen.is_symlink()
    assert stat.S_IMODE(victim.stat().st_mode) == 0o700 and stat.S_IMODE(chosen.stat().st_mode) == 0o711
