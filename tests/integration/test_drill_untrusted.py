"""A manifest planted in the repository (issue 21, item 3), on real restic, SeaweedFS and PostgreSQL: a NUL
byte in a `facts.rows` table name fails that target's drill on the record (state and ledger), naming the
field and the snapshot, and the next target is still drilled."""

from __future__ import annotations

import json
import subprocess

import pytest

from backupd.actions.common import repository
from backupd.config import loader as config_mod
from backupd.evidence.ledger import Ledger
from backupd.files.manifest import MANIFEST_NAME
from backupd.policy.lint import load_policy_set
from backupd.state.runs import State

pytestmark = pytest.mark.integration

TARGETS = """  - name: tos-db
    category: container_data
    owner: test
    sources:
      dump: {kind: pg_dump, database: tos, host: '${TOS_PGHOST}', port: '${TOS_PGPORT}', user: postgres}
    frequency: 1h
    rto: 4h
    retention: {keep_hourly: 24, keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
    drill: rows
  - name: docs
    category: documentation
    owner: test
    sources: {paths: ['${TOS_ROOT}/docs']}
    frequency: 1d
    rto: 4h
    retention: {keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
"""
SPEC = """version: 1
name: rows
kind: sample
probes:
  - kind: postgres
"""
PLANTED = "public.cont\0ainers"


def _plant_manifest(setup, tmp_path, target: str, data_snapshot: str) -> str:
    """A newer manifest companion of data_snapshot, as the backup host can write one: the staged manifest
    with a NUL byte in a table name. Returns its snapshot id."""
    cfg = config_mod.load(setup.config)
    doc = json.loads((cfg.state_dir / "manifests" / target / MANIFEST_NAME).read_text())
    doc["facts"]["rows"][PLANTED] = doc["facts"]["rows"]["public.containers"]
    staging = tmp_path / "plant" / "manifests" / target
    staging.mkdir(parents=True)
    (staging / MANIFEST_NAME).write_text(json.dumps(doc))
    repo = repository(cfg, "worm", load_policy_set(cfg.policy_files(), cfg.secrets_dir,
                                                   env=setup.stack.env).destinations["worm"])
    done = subprocess.run(["restic", "backup", "--json", "--host", "it-host", "--tag", "backupd-manifest",
                           "--tag", f"target={target}", "--tag", f"of={data_snapshot}", str(staging)],
                          env=repo.environment().build(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return next(json.loads(ln)["snapshot_id"] for ln in done.stdout.splitlines() if '"summary"' in ln)


def test_a_planted_nul_in_a_table_name_fails_that_drill_on_the_record_and_the_next_target_is_drilled(
        policy, stack, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "rows.yaml").write_text(SPEC)
    setup = policy(TARGETS, "t-untrusted-manifest", restore_tests=f"'{specs}'")
    for target in ("tos-db", "docs"):
        backup = setup.cli("backup", "--target", target, "--json")
        assert backup.code == 0, backup.stdout + backup.stderr
    state_dir = config_mod.load(setup.config).state_dir
    data_snapshot = State(state_dir).last("backup", "tos-db", "ok")["snapshot_id"]
    planted = _plant_manifest(setup, tmp_path, "tos-db", data_snapshot)

    run = setup.cli("drill", "--due", "--json", timeout=1800)  # every target whose schedule wants a drill
    assert run.code == 1, run.stdout + run.stderr
    drills = {d["target"]: d for d in run.doc["drills"]}
    assert list(drills)[:2] == ["tos-db", "docs"]
    db = drills["tos-db"]
    assert db["verdict"] == "FAIL" and db["status"] == "failed" and not db["probes"], db
    assert f"the manifest in snapshot {planted[:8]} is malformed" in db["reason"]
    assert "facts.rows: table name 'public.cont\\x00ainers'" in db["reason"]
    assert drills["docs"]["verdict"] in ("PASS", "WARN"), drills["docs"]

    state = State(state_dir)
    assert state.last("drill", "tos-db")["status"] == "fail"
    assert state.last("drill", "docs")["status"] in ("pass", "warn")
    records = {r["data"]["target"]: r["data"] for r in Ledger(state_dir).query(kind="drill")}
    assert records["tos-db"]["verdict"] == "FAIL" and records["tos-db"]["reason"] == db["reason"]
    assert records["docs"]["verdict"] == drills["docs"]["verdict"]
