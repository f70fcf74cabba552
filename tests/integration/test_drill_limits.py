"""A drill cannot exhaust the host (backupd.drill.limits, backupd.process.cgroups): a probe's memory bomb, made of
processes each far below the per-process RLIMIT_AS, is stopped by the drill's cgroup memory limit, and a
probe filling its writable directory with files each below RLIMIT_FSIZE is stopped by the disk watchdog;
both drills FAIL naming the limit and their evidence record is written (real restic, SeaweedFS,
`backupd drill --full`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.conftest import program_target

pytestmark = pytest.mark.integration

#: 8 processes of ~110 MiB each (touched, so resident), far below RLIMIT_AS (2 GiB); the shell exits 0.
BOMB = """version: 1
name: greedy
kind: full
sandbox: {memory_max: 200MiB}
probes:
  - kind: command
    name: bomb
    command: [sh, -c, "for i in 1 2 3 4 5 6 7 8; do python3 -c 'import time; x = b\\"x\\" * (110 << 20); time.sleep(3)' & done; wait; echo survived"]
    timeout: 60s
"""
#: 1 MiB files (each below RLIMIT_FSIZE = max_bytes), up to 400 MiB, then it waits to be stopped.
FILLER = """version: 1
name: greedy
kind: full
sandbox: {max_bytes: 64MiB}
probes:
  - kind: command
    name: filler
    command: [sh, -c, "i=0; while [ $i -lt 400 ]; do head -c 1048576 /dev/zero > f$i || exit 1; i=$((i+1)); done; exec sleep 600"]
    timeout: 40s
"""


def _setup(policy, tmp_path: Path, spec: str, repo: str):
    programs = tmp_path / "greedy" / "programs"
    programs.mkdir(parents=True)
    (programs / "README").write_text("nothing to see\n")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "greedy.yaml").write_text(spec)
    setup = policy(program_target("greedy", "greedy", programs), repo, restore_tests=f"'{specs}'")
    assert setup.cli("backup", "--target", "greedy").code == 0
    return setup


def _drill_records(setup) -> list[dict]:
    ledger = setup.dir / "state" / "evidence" / "ledger.jsonl"
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    return [r["data"] for r in records if r["kind"] == "drill"]


def _drill_groups() -> list[str]:
    found = []
    for top in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup"):
        if os.path.isdir(top):
            found += [os.path.join(d, n) for d, dirs, _ in os.walk(top) for n in dirs
                      if n.startswith("backupd-drill-")]
    return found


def test_a_memory_bomb_in_a_probe_ends_as_a_fail_naming_the_drill_memory_limit(policy, stack, tmp_path):
    setup = _setup(policy, tmp_path, BOMB, "t-limits-memory")
    before = _drill_groups()

    run = setup.cli("drill", "--target", "greedy", "--full", "--json", timeout=600)

    assert run.code == 1, run.stdout + run.stderr
    (drill,) = run.doc["drills"]
    (probe,) = drill["probes"]
    assert drill["verdict"] == "FAIL", drill
    # the suite runs as root with writable cgroups (this machine, CI): the drill must have made its own
    assert drill["limits"]["cgroup"] is not None, drill["limits"]["note"]
    assert "memory limit of the drill (200.0 MiB) reached: the probe was killed" in " ".join(probe["problems"]), probe
    assert "survived" in probe["details"]["stdout"]  # the shell itself lived on: the kernel killed the biggest
    assert "memory limit of the drill (200.0 MiB)" in drill["reason"]
    (record,) = _drill_records(setup)
    assert record["verdict"] == "FAIL" and "memory limit of the drill" in record["reason"]
    # the limits are taken again when the drill ends: its cgroup was removed, so no note, here and on record
    assert drill["limits"]["note"] is None and record["limits"] == drill["limits"], (drill["limits"], record)
    # the drill's cgroup is gone (other drills running on this host meanwhile keep theirs: their pid lives)
    left = [g for g in _drill_groups() if g not in before
            and not os.path.exists(f"/proc/{os.path.basename(g).split('-')[2]}")]
    assert left == []


def test_a_disk_filler_in_a_probe_is_stopped_at_the_drill_disk_limit_and_the_record_is_written(policy, stack,
                                                                                               tmp_path):
    setup = _setup(policy, tmp_path, FILLER, "t-limits-disk")

    run = setup.cli("drill", "--target", "greedy", "--full", "--json", timeout=600)

    assert run.code == 1, run.stdout + run.stderr
    (drill,) = run.doc["drills"]
    assert drill["verdict"] == "FAIL", drill
    assert drill["reason"].startswith("disk limit of the drill (64.0 MiB, sandbox.max_bytes) reached"), drill
    assert not Path(drill["sandbox"]).exists()
    # the drill's evidence record is there, and later appends to the ledger work
    (record,) = _drill_records(setup)
    assert record["verdict"] == "FAIL" and record["reason"] == drill["reason"]
    assert not list((setup.dir / "state").glob(".drill-reserve-*"))
    assert setup.cli("drill", "--target", "greedy", "--full", "--json", timeout=600).code == 1
    assert len(_drill_records(setup)) == 2
