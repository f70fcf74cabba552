"""`backupd forget` on real restic and SeaweedFS: forgotten generations take their companion manifests
with them, kept ones keep theirs, and a target refused for a planted future snapshot leaves the others'
retention applied."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta

import pytest

from backupd.engine import snapshots
from tests.integration.test_backup import repo_of

pytestmark = [pytest.mark.integration, pytest.mark.restic]

TIME = "BACKUPD_BACKUP_TIME"  # backupd.engine.backup.TIME_OVERRIDE


def ago(days: int) -> str:
    return (datetime.now() - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")


def test_forget_removes_the_companions_of_forgotten_generations_only(policy, monkeypatch, tmp_path):
    setup = policy("""  - name: db
    category: container_data
    owner: test
    sources:
      dump: {kind: pg_dump, database: tos, host: '${TOS_PGHOST}', port: '${TOS_PGPORT}', user: postgres}
    frequency: 1d
    rto: 4h
    retention: {keep_last: 1, min_history: 3w}
    destinations: [worm]
  - name: cfg
    category: control_system
    owner: test
    sources: {paths: ['${TOS_ROOT}/control']}
    frequency: 1d
    retention: {keep_last: 1, min_history: 3w}
    destinations: [worm]
""", "t-retention")
    for days in (60, 50, 0):  # two generations beyond min_history of the newest, then today's
        monkeypatch.setenv(TIME, ago(days))
        run = setup.cli("backup", "--target", "db", "--json")
        assert run.code == 0, run.stdout + run.stderr
    monkeypatch.setenv(TIME, ago(0))
    assert setup.cli("backup", "--target", "cfg").code == 0
    monkeypatch.delenv(TIME)
    repo = repo_of(setup)
    planted = tmp_path / "planted.cfg"
    planted.write_text("planted")
    env = repo.environment().build()
    done = subprocess.run(["restic", "backup", "--host", "it-host", "--tag", "backupd", "--tag", "target=cfg",
                           "--time", "2031-01-01 00:00:00", str(planted)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = snapshots.list_snapshots(repo, tags=["backupd", "target=db"])
    assert len(data) == 3

    run = setup.cli("forget", "--json")
    by_target = {r["target"]: r for r in run.doc["results"]}
    assert run.code == 1 and "future" in by_target["cfg"]["error"], run.stdout
    db = by_target["db"]
    assert db["status"] == "ok" and set(db["remove"]) == {s.id for s in data[:2]} and db["keep"] == [data[2].id]
    assert db["manifests_removed"] == 2
    left = snapshots.list_snapshots(repo, tags=["target=db"])
    assert {s.id for s in left if "backupd" in s.tags} == {data[2].id}
    companions = [s for s in left if "backupd-manifest" in s.tags]
    assert companions and all(data[2].made_as(c.tagmap["of"]) for c in companions)

    restored = setup.cli("restore", "--target", "db", "--to", str(tmp_path / "r"), "--json")
    assert restored.code == 0, restored.stdout  # the kept generation still verifies against its manifest
