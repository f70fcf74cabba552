"""Second copy in another failure domain: restic copy into a repository with the same chunker
parameters, restorable and verified from the copy alone."""

from __future__ import annotations

import pytest

from backupd.actions.common import repository
from backupd.config import loader as config_mod
from backupd.engine import snapshots
from backupd.policy.lint import load_policy_set

pytestmark = [pytest.mark.integration, pytest.mark.restic]


def test_backup_fills_the_copy_destination_and_the_copy_restores(policy, tmp_path):
    offline = tmp_path / "offline-disk"
    setup = policy("""  - name: db
    category: container_data
    owner: test
    sources:
      dump: {kind: pg_dump, database: tos, host: '${TOS_PGHOST}', port: '${TOS_PGPORT}', user: postgres}
    frequency: 1h
    rto: 4h
    retention: {keep_hourly: 24, keep_daily: 7, keep_weekly: 8}
    destinations: [worm, offline]
""", "t-copy")
    text = (setup.config.parent.parent / "policies" / "test.yaml").read_text()
    text = text.replace("targets:\n", f"""  offline:
    kind: local
    path: {offline}
    offline: true
    failure_domain: vault-b
    copy_from: worm
    password_file: restic-password
targets:
""", 1)
    (setup.config.parent.parent / "policies" / "test.yaml").write_text(text)
    for _ in range(2):
        run = setup.cli("backup", "--target", "db", "--json")
        assert run.code == 0, run.stdout
        by_dest = {r["destination"]: r for r in run.doc["results"]}
        assert by_dest["worm"]["status"] == by_dest["offline"]["status"] == "ok"
    cfg = config_mod.load(setup.config)
    ps = load_policy_set(cfg.policy_files(), cfg.secrets_dir, env=setup.stack.env)
    in_worm = snapshots.list_snapshots(repository(cfg, "worm", ps.destinations["worm"]), tags=["target=db"])
    in_copy = snapshots.list_snapshots(repository(cfg, "offline", ps.destinations["offline"]), tags=["target=db"])
    assert len(in_worm) == len(in_copy) == 4  # two data snapshots and their two manifests, copied once each
    run = setup.cli("restore", "--target", "db", "--destination", "offline", "--to", str(tmp_path / "r"), "--json")
    assert run.code == 0, run.stdout
    assert run.doc["verification"]["ok"] and run.doc["verification"]["verified"] == 1
