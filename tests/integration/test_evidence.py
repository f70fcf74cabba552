"""Evidence on real SeaweedFS (Object Lock, COMPLIANCE) through the real CLI: backups mirror signed records,
the auditor pulls them read-only, the mirror refuses deletes, local edits fail verify."""

from __future__ import annotations

import json
import tarfile
import uuid

import pytest
from botocore.exceptions import ClientError

from backupd.evidence import keys

pytestmark = pytest.mark.integration

TARGET = """  - name: ev-logs
    category: logs
    source: server
    owner: test
    sources: {{paths: ['{root}/logs/server']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


@pytest.fixture
def mirrored(stack, policy):
    """A setup whose evidence is mirrored to the locked bucket, after two backups: (setup, host)."""
    host = f"ev-{uuid.uuid4().hex[:8]}"
    setup = policy(TARGET.format(root=stack.env["TOS_ROOT"]), f"restic-ev-{host}", evidence="{mirror: worm}")
    setup.config.write_text(setup.config.read_text().replace("host: it-host", f"host: {host}"))
    for _ in range(2):
        run = setup.cli("backup", "--target", "ev-logs", "--json")
        assert run.code == 0, run.stdout + run.stderr
    return setup, host


def test_auditor_pull_reproduces_the_ledger_and_mirror_refuses_tampering(mirrored, stack, tmp_path):
    setup, host = mirrored
    local = setup.dir / "state" / "evidence" / "ledger.jsonl"
    out = tmp_path / "pulled"
    run = setup.cli("evidence", "pull", "--destination", "worm", "--out", str(out), "--host", host, "--json",
                    "--credentials", str(stack.secrets_dir / "s3-auditor.env"))
    assert run.code == 0, run.stdout + run.stderr
    [got] = run.doc["hosts"]
    assert got["records"] == 2 and got["ok"]
    assert (out / host / "ledger.jsonl").read_bytes() == local.read_bytes()

    writer = stack.seaweed.client("writer")
    key = f"evidence/{host}/records/{1:012d}.json"
    version = writer.list_object_versions(Bucket=stack.bucket, Prefix=key)["Versions"][0]["VersionId"]
    for identity in ("writer", "admin"):  # refused by COMPLIANCE retention, even for the admin
        with pytest.raises(ClientError):
            stack.seaweed.client(identity).delete_object(Bucket=stack.bucket, Key=key, VersionId=version)
    with pytest.raises(ClientError):
        stack.seaweed.client("auditor").put_object(Bucket=stack.bucket, Key=key, Body=b"forged\n")
    writer.delete_object(Bucket=stack.bucket, Key=key)  # only a delete marker: the locked version stays
    run = setup.cli("evidence", "pull", "--destination", "worm", "--out", str(tmp_path / "again"), "--host", host,
                    "--json")
    assert run.code == 0 and (tmp_path / "again" / host / "ledger.jsonl").read_bytes() == local.read_bytes()

    pub = out / host / keys.PUB_NAME
    local.write_bytes(local.read_bytes().replace(b'"status":"ok"', b'"status":"OK"', 1))
    run = setup.cli("evidence", "verify", str(local), "--public-key", str(pub), "--json")
    assert run.code == 1 and run.doc["ledger"]["first_bad_seq"] == 1


def test_export_holds_the_real_snapshot_inventory_and_verifies(mirrored, tmp_path):
    setup, host = mirrored
    out = tmp_path / "evidence.tar.gz"
    run = setup.cli("evidence", "export", "--out", str(out), "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.doc["conformance"]["G4"] == "met"  # signed, chained and mirrored to WORM
    pub = setup.dir / "state" / "keys" / keys.PUB_NAME
    run = setup.cli("evidence", "verify", str(out), "--public-key", str(pub), "--json")
    assert run.code == 0 and run.doc["ok"] and run.doc["ledger"]["records"] == 2

    with tarfile.open(out) as tar:
        report = json.loads(tar.extractfile("report.json").read())
    target = next(t for t in report["targets"] if t["name"] == "ev-logs")
    worm = target["destinations"][0]
    assert worm["error"] is None and worm["count"] == 2 and target["backups"]["ok"] == 2
