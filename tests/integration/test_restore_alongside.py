"""`backupd restore --to` shares a full drill's restore path (backupd.actions.alongside), on real restic and
SeaweedFS: into an empty directory the snapshot the backup history names is restored at once, the listing
confirming the choice and the manifest read alongside, and every file is verified as restic writes it; a
wrong guess is stopped and leaves nothing of its snapshot behind; a non-empty directory (--force) lists
first and keeps the operator's files; a file that differs from the manifest still fails the restore."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backupd.actions import restore, snapshot_choice
from backupd.actions.common import repository
from backupd.commands.common import load_config, load_policies
from backupd.process import execute
from tests.integration.test_drill import CHECK_TARGET as TARGET

pytestmark = [pytest.mark.integration, pytest.mark.restic]


@pytest.fixture
def history(policy, stack, tmp_path, monkeypatch):
    """Two generations of `cargo-plans`: only the older one holds old-only.plan. -> (cfg, policies, ids)."""
    data = tmp_path / "plans"
    data.mkdir()
    for i in range(10):
        (data / f"bay-{i:02d}.plan").write_bytes(os.urandom(40_000 + i))
    (data / "old-only.plan").write_bytes(b"gone in the newer generation\n")
    setup = policy(TARGET.format(data=data), f"t-restore-alongside-{tmp_path.name}")
    assert setup.cli("backup", "--target", "cargo-plans").code == 0
    (data / "old-only.plan").unlink()
    (data / "bay-00.plan").write_bytes(os.urandom(50_000))
    assert setup.cli("backup", "--target", "cargo-plans").code == 0
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config(setup.config)
    policies = load_policies(cfg)
    repo = repository(cfg, "worm", policies.destinations["worm"])
    ids = [s.id for s in snapshot_choice.select(repo, "cargo-plans", cfg.backup_hosts()).snaps]
    return cfg, policies, ids


@pytest.fixture
def restic_calls(monkeypatch):
    calls: list[str] = []
    real = execute.run

    def run(argv, *args, **kwargs):
        if Path(argv[0]).name.startswith("restic") and argv[1] != "version":
            calls.append(argv[1])
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(execute, "run", run)
    return calls


def _files(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file()}


def test_restore_into_an_empty_directory_starts_at_once_and_verifies_while_restic_writes(history, tmp_path,
                                                                                         restic_calls):
    cfg, policies, (older, newest) = history
    out = restore.run(cfg, policies, "cargo-plans", tmp_path / "to")
    assert out["status"] == "ok" and out["snapshot_id"] == newest, out
    assert out["guess"] == {"snapshot": newest, "confirmed": True}
    assert out["verification"]["ok"] and out["verification"]["verified"] == 10
    assert out["verification"]["hashed_during_restore"] == out["verification"]["verified"]
    assert sorted(restic_calls) == ["dump", "restore", "snapshots"]
    assert "old-only.plan" not in _files(tmp_path / "to")


def test_a_wrong_guess_is_stopped_and_leaves_nothing_of_its_snapshot(history, tmp_path, monkeypatch, restic_calls):
    cfg, policies, (older, newest) = history
    monkeypatch.setattr(restore, "_guess", lambda *a: (older, None))
    out = restore.run(cfg, policies, "cargo-plans", tmp_path / "to")
    assert out["status"] == "ok" and out["snapshot_id"] == newest, out
    assert out["guess"] == {"snapshot": older, "confirmed": False}
    assert "old-only.plan" not in _files(tmp_path / "to")
    assert sorted(restic_calls) == ["dump", "dump", "restore", "restore", "snapshots"], restic_calls


def test_a_forced_restore_into_a_used_directory_lists_first_and_keeps_the_operators_files(history, tmp_path,
                                                                                         restic_calls):
    cfg, policies, (older, newest) = history
    to = tmp_path / "to"
    to.mkdir()
    (to / "operator-notes.txt").write_text("keep")
    out = restore.run(cfg, policies, "cargo-plans", to, force=True)
    assert out["status"] == "ok" and out["snapshot_id"] == newest and "guess" not in out
    assert (to / "operator-notes.txt").read_text() == "keep"
    assert restic_calls[0] == "snapshots"  # chosen before anything is written into the operator's directory


def test_a_file_that_differs_from_the_manifest_still_fails_the_restore(history, tmp_path, monkeypatch):
    cfg, policies, _ids = history
    real = restore.load_manifest

    def edited(*args, **kwargs):
        doc = real(*args, **kwargs)
        entry = next(e for e in doc["files"] if e["path"].endswith("bay-03.plan"))
        entry["sha256"] = "0" * 64  # what a tampered restore would look like against the true manifest
        return doc

    monkeypatch.setattr(restore, "load_manifest", edited)
    out = restore.run(cfg, policies, "cargo-plans", tmp_path / "to")
    assert out["status"] == "failed"
    assert [Path(p).name for p in out["verification"]["mismatched"]] == ["bay-03.plan"]
    assert out["verification"]["verified"] == 9
