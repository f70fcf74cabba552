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


@pytest.mark.restic
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


def _verify_against_mirror(setup, stack, ledger):
    return setup.cli("evidence", "verify", str(ledger), "--mirror", "worm", "--json",
                     "--credentials", str(stack.secrets_dir / "s3-auditor.env"))


def test_truncated_ledger_is_caught_by_the_mirror_and_refuses_the_next_backup_record(mirrored, stack):
    setup, host = mirrored
    ledger = setup.dir / "state" / "evidence" / "ledger.jsonl"
    run = _verify_against_mirror(setup, stack, ledger)
    assert run.code == 0 and run.doc["ok"] and run.doc["mirror"]["last_checkpoint"] >= 1, run.stdout + run.stderr
    whole = ledger.read_bytes()
    ledger.write_bytes(whole.split(b"\n", 1)[0] + b"\n")  # seq 2 cut off: the file alone still verifies
    run = _verify_against_mirror(setup, stack, ledger)
    assert run.code == 1 and run.doc["ledger"]["first_bad_seq"] == 2
    assert any("WORM mirror holds records up to seq 2" in p for p in run.doc["problems"])
    run = setup.cli("backup", "--target", "ev-logs", "--json")
    assert run.code == 1 and "head regression" in run.stdout + run.stderr
    assert ledger.read_bytes().count(b"\n") == 1  # refused: seq 2 was not reused
    assert json.loads((setup.dir / "state" / "evidence" / "regression.json").read_text())["reasons"]
    ledger.write_bytes(whole)  # restored from the mirror: acknowledged, recorded, appends resume
    run = setup.cli("evidence", "acknowledge", "--reason", "restored from the mirror", "--json")
    assert run.code == 0 and run.doc["acknowledged"] and run.doc["seq"] == 3, run.stdout + run.stderr


def test_swapped_in_resigned_ledger_is_caught_by_pull_and_verify_against_the_mirror(mirrored, stack, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from backupd.evidence import record_format

    setup, host = mirrored
    state = setup.dir / "state"
    ledger = state / "evidence" / "ledger.jsonl"
    other, out, prev = Ed25519PrivateKey.generate(), [], record_format.GENESIS
    for line in ledger.read_bytes().split(b"\n")[:-1]:
        rec = record_format.parse(line)
        new = record_format.build(rec["seq"], prev, rec["host"], rec["kind"], {**rec["data"], "status": "failed"},
                                  other, rec["time"])
        out.append(new)
        prev = record_format.line_hash(new)
    ledger.write_bytes(b"".join(l + b"\n" for l in out))
    (state / "keys" / keys.KEY_NAME).unlink()
    keys.write_private(state / "keys" / keys.KEY_NAME, other)
    (state / "keys" / keys.PUB_NAME).write_bytes(keys.public_pem(other.public_key()))
    run = _verify_against_mirror(setup, stack, ledger)
    assert run.code == 1 and run.doc["ledger"]["first_bad_seq"] == 1
    assert any("differs from the WORM mirror" in p for p in run.doc["problems"])
    run = setup.cli("backup", "--target", "ev-logs", "--json")  # the next append is refused
    assert run.code == 1 and "ledger replaced" in run.stdout + run.stderr
    run = setup.cli("evidence", "pull", "--destination", "worm", "--out", str(tmp_path / "p"), "--host", host,
                    "--json", "--credentials", str(stack.secrets_dir / "s3-auditor.env"))
    assert run.code == 0 and run.doc["hosts"][0]["checkpoints"] >= 1  # the mirror still holds the true ledger


def test_key_rotation_is_mirrored_and_verifies_from_the_first_key(mirrored, stack, tmp_path):
    setup, host = mirrored
    run = setup.cli("evidence", "rotate-key", "--reason", "test", "--json")
    assert run.code == 0, run.stdout + run.stderr
    run = setup.cli("backup", "--target", "ev-logs", "--json")
    assert run.code == 0, run.stdout + run.stderr
    run = setup.cli("evidence", "pull", "--destination", "worm", "--out", str(tmp_path / "p"), "--host", host,
                    "--json", "--credentials", str(stack.secrets_dir / "s3-auditor.env"))
    [got] = run.doc["hosts"]
    assert run.code == 0 and got["records"] == 4, run.stdout  # anchored at the first key, rotation accepted
    assert got["last_checkpoint"] == 3  # the rotation pushed a checkpoint signed by the new key


def _record_failed_drill(setup, host):
    """A failed drill record (mirrored by the next backup's push, like any pending record)."""
    from backupd.config.loader import Config
    from backupd.evidence import record

    return record(Config(path=None, state_dir=setup.dir / "state", host=host), "drill",
                  {"target": "ev-logs", "status": "failed", "verdict": "restore failed"})["seq"]


def _resigned_export(setup, stack, host, drop_seq, tmp_path):
    """Root on the host: a copy of the state whose ledger lacks record drop_seq (later records renumbered and
    re-signed with the host's own key), exported from a config without the mirror (it would refuse)."""
    import shutil

    from backupd.evidence import record_format

    from tests.integration.conftest import Setup

    state = tmp_path / "forger" / "state"
    shutil.copytree(setup.dir / "state", state)
    key = keys.load_or_create(state)
    path, out, prev = state / "evidence" / "ledger.jsonl", [], record_format.GENESIS
    for line in path.read_bytes().split(b"\n")[:-1]:
        rec = record_format.parse(line)
        if rec["seq"] != drop_seq:
            out.append(record_format.build(len(out) + 1, prev, host, rec["kind"], rec["data"], key, rec["time"]))
            prev = record_format.line_hash(out[-1])
    path.write_bytes(b"".join(line + b"\n" for line in out))
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "checkpoint.json"):
        (state / "evidence" / name).unlink(missing_ok=True)
    config = tmp_path / "forger" / "backupd.yaml"
    config.write_text("".join(line for line in setup.config.read_text().splitlines(keepends=True)
                              if not line.startswith(("state_dir:", "evidence:"))) + f"state_dir: '{state}'\n")
    bundle = tmp_path / "forged.tar.gz"
    run = Setup(stack, tmp_path / "forger", config).cli("evidence", "export", "--out", str(bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr
    return bundle


def test_resigned_bundle_and_edited_report_are_caught_against_the_mirror(mirrored, stack, tmp_path):
    from backupd.evidence import bundle

    setup, host = mirrored
    failed = _record_failed_drill(setup, host)  # seq 3
    run = setup.cli("backup", "--target", "ev-logs", "--json")  # seq 4; pushes 3 and 4
    assert run.code == 0, run.stdout + run.stderr
    pub = str(setup.dir / "state" / "keys" / keys.PUB_NAME)
    auditor = ("--credentials", str(stack.secrets_dir / "s3-auditor.env"))
    honest = tmp_path / "honest.tar.gz"
    assert setup.cli("evidence", "export", "--out", str(honest), "--json").code == 0
    run = setup.cli("evidence", "verify", str(honest), "--public-key", pub, "--mirror", "worm", *auditor, "--json")
    assert run.code == 0 and run.doc["ok"], run.stdout + run.stderr
    assert run.doc["mirror"]["identical"] == 4 and run.doc["mirror"]["checkpoints"] >= 1

    forged = _resigned_export(setup, stack, host, failed, tmp_path)
    run = setup.cli("evidence", "verify", str(forged), "--public-key", pub, "--json")
    assert run.code == 0, run.stdout  # the host's own key signed it: offline it verifies
    run = setup.cli("evidence", "verify", str(forged), "--public-key", pub, "--mirror", "worm", *auditor, "--json")
    assert run.code == 1 and run.doc["ledger"]["first_bad_seq"] == failed, run.stdout + run.stderr
    assert any(p.startswith(f"record {failed}: records {failed}..") and "differ from the WORM mirror" in p
               for p in run.doc["problems"]), run.stdout  # the re-signed records after the one left out

    members = bundle.read(honest)
    manifest = json.loads(members.pop(bundle.MANIFEST))
    members.pop(bundle.SIGNATURE)
    members["report.json"] = members["report.json"].replace(b'"status": "failed"', b'"status": "ok"')
    bundle.write(honest, members, {k: v for k, v in manifest.items() if k not in ("format", "files")},
                 keys.load_or_create(setup.dir / "state"))
    run = setup.cli("evidence", "verify", str(honest), "--public-key", pub, "--json")
    assert run.code == 1 and any(p.startswith("report.json: target ev-logs: drills") for p in run.doc["problems"])
