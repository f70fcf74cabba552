"""What restic a drill starts, and in which phase, on real restic and SeaweedFS: one `restic snapshots`
and one `restic dump` of the manifest per drill, whatever the history. A full drill restores the snapshot
its backup history names at once, the listing confirming the choice and the manifest read alongside the
restore (a wrong guess is stopped and the chosen snapshot restored); without a history (a verifier) it
lists first. A sample, chosen from the manifest, lists and reads it in select."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from backupd.actions import drill, snapshot_choice
from backupd.actions.common import repository
from backupd.commands.common import load_config, load_policies
from backupd.drill.phases import PhaseTimer
from backupd.process import execute
from tests.integration.test_drill import CHECK_TARGET as TARGET

pytestmark = [pytest.mark.integration, pytest.mark.restic]


@pytest.fixture
def restic_calls(monkeypatch):
    """[(phase running, restic subcommand)] of every restic the drill starts (`restic version` aside)."""
    calls: list[tuple[str | None, str]] = []
    now: dict[str, str | None] = {"phase": None}
    real_phase, real_run = PhaseTimer.phase, execute.run

    @contextmanager
    def phase(self, name):
        now["phase"] = name
        try:
            with real_phase(self, name):
                yield
        finally:
            now["phase"] = None

    def run(argv, *args, **kwargs):
        if Path(argv[0]).name.startswith("restic") and argv[1] != "version":
            calls.append((now["phase"], argv[1]))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(PhaseTimer, "phase", phase)
    monkeypatch.setattr(execute, "run", run)
    return calls


def test_a_drill_starts_one_listing_and_one_manifest_read_and_a_full_one_overlaps_them_with_its_restore(
        policy, stack, tmp_path, monkeypatch, restic_calls):
    data = tmp_path / "plans"
    data.mkdir()
    for i in range(12):
        (data / f"bay-{i:02d}.plan").write_bytes(os.urandom(20_000 + i))
    setup = policy(TARGET.format(data=data), "t-drill-select")
    for generation in range(3):  # a history: select must not grow with it
        (data / "bay-00.plan").write_bytes(os.urandom(30_000 + generation))
        assert setup.cli("backup", "--target", "cargo-plans").code == 0
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config(setup.config)
    policies = load_policies(cfg)

    def drilled(dumps: int = 1, **kwargs) -> dict:
        restic_calls.clear()
        (report,) = drill.run(cfg, policies, "cargo-plans", **kwargs)
        assert report["verdict"] == "PASS" and report["verification"]["ok"], report
        assert report["verification"]["verified"] == report["files_restored"] >= 12
        assert [c for _, c in restic_calls].count("snapshots") == 1, restic_calls
        assert [c for _, c in restic_calls].count("dump") == dumps, restic_calls
        return report

    full = drilled(full=True)  # the backup history names the newest snapshot: nothing to list first
    newest = full["snapshot_id"]
    assert full["guess"]["confirmed"] is True and newest.startswith(full["guess"]["snapshot"])
    assert full["files_restored"] == full["total_files"]
    assert [c for p, c in restic_calls if p == "select"] == []
    assert sorted(c for p, c in restic_calls if p == "restore") == ["dump", "restore", "snapshots"]

    older = [s.id for s in snapshot_choice.select(repository(cfg, "worm", policies.destinations["worm"]),
                                                     "cargo-plans", cfg.backup_hosts()).snaps][0]
    monkeypatch.setattr(drill, "guess", lambda *a: (older, None))  # a wrong guess: stopped, the chosen one restored
    wrong = drilled(dumps=2, full=True)  # the guessed snapshot's manifest was read too, and not used
    assert wrong["snapshot_id"] == newest and wrong["guess"] == {"snapshot": older, "confirmed": False}
    assert sorted(c for p, c in restic_calls if p == "restore") == ["dump", "dump", "restore", "restore",
                                                                    "snapshots"]

    monkeypatch.setattr(drill, "guess", lambda *a: (None, None))  # no backup history (a verifier): list first
    listed = drilled(full=True)
    assert listed["snapshot_id"] == newest and "guess" not in listed
    assert [c for p, c in restic_calls if p == "select"] == ["snapshots"]
    assert sorted(c for p, c in restic_calls if p == "restore") == ["dump", "restore"]

    smp = drilled()
    assert smp["kind"] == "sample" and smp["snapshot_id"] == newest
    assert sorted(c for p, c in restic_calls if p == "select") == ["dump", "snapshots"]
    assert [c for p, c in restic_calls if p == "restore"] == ["restore"]


def test_a_full_drill_whose_manifest_read_fails_stops_its_restore_and_fails(
        policy, stack, tmp_path, monkeypatch):
    """No verification without the backup-time manifest: a failed read alongside the restore fails the
    drill with the read's reason and ends the restore early."""
    data = tmp_path / "plans"
    data.mkdir()
    (data / "stowage.bin").write_bytes(os.urandom(1 << 20))
    setup = policy(TARGET.format(data=data), "t-drill-nomanifest")
    assert setup.cli("backup", "--target", "cargo-plans").code == 0
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config(setup.config)
    policies = load_policies(cfg)
    from backupd.errors import Finding

    def no_manifest(repo, snap, *args, **kwargs):
        raise Finding(f"snapshot {snap.short_id} has no backup-time manifest; cannot verify")

    monkeypatch.setattr(drill, "load_manifest", no_manifest)
    (d,) = drill.run(cfg, policies, "cargo-plans", full=True)
    assert d["verdict"] == "FAIL" and d["status"] == "failed"
    assert "no backup-time manifest" in d["reason"] and "verification" not in d


def test_a_full_drill_over_its_sandbox_limit_is_refused_once_the_manifest_arrives(policy, stack, tmp_path):
    """The sandbox reservation of a full drill runs when its manifest (read alongside) arrives: a restore
    larger than sandbox.max_bytes is stopped and the drill fails naming the limit. restic may write more than the
    limit before the manifest arrives on a busy machine: the disk watchdog then stops it first, naming the
    same limit; either way nothing is verified and the sandbox is gone."""
    data = tmp_path / "plans"
    data.mkdir()
    (data / "stowage.bin").write_bytes(os.urandom(2 << 20))
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "tiny.yaml").write_text("version: 1\nname: tiny\nkind: full\nsandbox: {max_bytes: 1MiB}\n")
    setup = policy(TARGET.format(data=data) + "    drill: tiny\n", "t-drill-tiny", restore_tests=f"'{specs}'")
    assert setup.cli("backup", "--target", "cargo-plans").code == 0
    run = setup.cli("drill", "--target", "cargo-plans", "--json")
    assert run.code == 1, run.stdout + run.stderr
    (d,) = run.doc["drills"]
    assert d["verdict"] == "FAIL" and "verification" not in d
    assert ("over the sandbox limit" in d["reason"]
            or "disk limit of the drill (1.0 MiB, sandbox.max_bytes) reached" in d["reason"]), d["reason"]
    assert not Path(d["sandbox"]).exists()


def test_a_dump_targets_full_drill_reads_its_manifest_alongside_the_listing(
        policy, stack, tmp_path, monkeypatch):
    """A dump target's manifest is in a companion snapshot; its backup records which, so the full drill
    dumps the manifest at once, beside the listing, instead of after it (one restic start-up less)."""
    from demo import tos_data
    from tests.integration.test_custom_dump import _setup

    tos_data.create_tos_database(stack.postgres, "tos_select", containers=300)
    setup = _setup(policy, tmp_path, "tos_select", "t-drill-select-dump")
    backup = setup.cli("backup", "--target", "db", "--json")
    assert backup.code == 0, backup.stdout + backup.stderr
    holder = backup.doc["results"][0]["facts"]["manifest_snapshot"]
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config(setup.config)
    spans: list[tuple[str, float, float]] = []
    real_run = execute.run

    def run(argv, *args, **kwargs):
        t0 = time.monotonic()
        try:
            return real_run(argv, *args, **kwargs)
        finally:
            if Path(argv[0]).name.startswith("restic") and argv[1] != "version":
                spans.append((argv[1], t0, time.monotonic(), " ".join(argv)))

    monkeypatch.setattr(execute, "run", run)
    (report,) = drill.run(cfg, load_policies(cfg), "db", full=True)
    assert report["verdict"] == "PASS" and report["verification"]["ok"], report
    assert report["guess"]["confirmed"] is True
    (listing,) = [s for s in spans if s[0] == "snapshots"]
    (dump,) = [s for s in spans if s[0] == "dump"]
    assert holder[:8] in dump[3], "the manifest is read from the companion the backup recorded"
    assert dump[1] < listing[2], "the manifest read starts before the listing ends, not after it"
