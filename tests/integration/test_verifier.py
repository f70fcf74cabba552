"""The verifier role on real restic, SeaweedFS and PostgreSQL: restore drills, a check slice and evidence
from a second identity that holds only the auditor's read-only S3 keys, the repository password, its own
signing key and keys that may only add objects under its own evidence prefix."""

from __future__ import annotations

import shutil

import pytest
from botocore.exceptions import ClientError

from demo.seaweed import VERIFIER_HOST
from tests.integration.conftest import ROOT, Setup

pytestmark = pytest.mark.integration

TARGETS = """  - name: v-programs
    category: system_program
    environment: production
    owner: test
    sources: {{paths: ['{root}/programs/production']}}
    frequency: 1d
    rto: 8h
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
    drill: programs
  - name: v-tos-db
    category: container_data
    owner: test
    sources:
      dump: {{kind: pg_dump, database: tos, host: '{pghost}', port: {pgport}, user: '{pguser}'}}
    frequency: 1h
    rto: 4h
    retention: {{keep_hourly: 24, keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
    drill: tos-db
"""
REPO = "t-verifier"
VERIFIER_SECRETS = ("s3-auditor.env", "s3-verifier.env", "s3-canary.env", "restic-password")


@pytest.fixture
def pair(policy, stack, tmp_path):
    """(backup host setup with both targets backed up, verifier setup on the same policy)."""
    env = stack.env
    main = policy(TARGETS.format(root=env["TOS_ROOT"], pghost=env["TOS_PGHOST"], pgport=env["TOS_PGPORT"],
                                 pguser=env["TOS_PGUSER"]), REPO, restore_tests=f"'{ROOT / 'restore_tests'}'")
    policy_file = tmp_path / "policies" / "test.yaml"
    text = policy_file.read_text().replace(
        "    credentials_file: s3-writer.env\n",
        "    credentials_file: s3-writer.env\n    auditor_credentials_file: s3-auditor.env\n"
        "    canary_credentials_file: s3-canary.env\n")
    policy_file.write_text(text)
    for target in ("v-programs", "v-tos-db"):
        run = main.cli("backup", "--target", target, "--json")
        assert run.code == 0, run.stdout + run.stderr
    secrets = tmp_path / "verifier-secrets"
    secrets.mkdir(mode=0o700)
    for name in VERIFIER_SECRETS:  # never the writer's or maintainer's keys
        shutil.copy(stack.secrets_dir / name, secrets / name)
        (secrets / name).chmod(0o600)
    vdir = tmp_path / "verifier"
    vdir.mkdir()
    config = vdir / "verifier.yaml"
    config.write_text("\n".join([
        "role: verifier", f"policies: ['{tmp_path / 'policies'}/*.yaml']", f"state_dir: '{vdir / 'state'}'",
        f"secrets_dir: '{secrets}'", f"host: {VERIFIER_HOST}", "hosts: [it-host]",
        f"restore_tests: '{ROOT / 'restore_tests'}'",
        "evidence: {mirror: worm, credentials_file: s3-verifier.env}"]) + "\n")
    return main, Setup(stack, vdir, config)


def test_a_verifier_with_read_only_keys_drills_both_targets_and_signs_with_its_own_key(pair, stack):
    main, verifier = pair
    for target in ("v-programs", "v-tos-db"):
        run = verifier.cli("drill", "--full", "--target", target, "--json", timeout=1800)
        assert run.code == 0, run.stdout + run.stderr
        (drill,) = run.doc["drills"]
        assert drill["verdict"] == "PASS" and drill["verification"]["ok"], drill
        assert drill["snapshot_host"] == "it-host"  # the backup host's snapshot, found by `hosts`
        assert all(p["status"] == "ok" for p in drill["probes"]), drill["probes"]
    for target in ("v-programs", "v-tos-db"):  # the full drills just passed: nothing is due
        run = verifier.cli("drill", "--due", "--target", target, "--json")
        assert run.code == 0 and run.doc["drills"] == [], run.stdout + run.stderr
    run = verifier.cli("check", "--json")
    assert run.code == 0, run.stdout + run.stderr
    # The storage audit with read-only keys and the canary identity: the lock is proven; the stack's
    # 1-day default retention is shorter than min_history (6w), which it must report.
    run = verifier.cli("audit", "storage", "--json")
    checks = {c["name"]: c for c in run.doc["destinations"][0]["checks"]}
    assert all(checks[n]["ok"] for n in ("versioning", "object_lock", "lock_mode", "delete_canary")), checks
    assert checks["writer_probes"]["severity"] == "warning"  # it holds no writer keys to probe with
    failed = {n for n, c in checks.items() if not c["ok"] and c["severity"] == "error"}
    assert run.code == 1 and failed == {"default_retention", "retention_readback"}, checks

    # Its ledger verifies under the verifier's own public key, and not under the backup host's.
    ledger = verifier.dir / "state" / "evidence" / "ledger.jsonl"
    own_key = verifier.dir / "state" / "keys" / "evidence-ed25519.pub"
    run = verifier.cli("evidence", "verify", str(ledger), "--public-key", str(own_key), "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.doc["ledger"]["hosts"] == [VERIFIER_HOST] and run.doc["ledger"]["records"] >= 3
    host_key = main.dir / "state" / "keys" / "evidence-ed25519.pub"
    assert verifier.cli("evidence", "verify", str(ledger), "--public-key", str(host_key)).code == 1
    keyring = verifier.dir / "keyring.yaml"  # the auditors' view: who may attest what
    keyring.write_text(f"roles:\n  backup-host: {{public_key: '{host_key}'}}\n"
                       f"  verifier: {{public_key: '{own_key}', kinds: [drill, check, storage_audit]}}\n")
    run_ring = verifier.cli("evidence", "verify", str(ledger), "--keyring", str(keyring), "--json")
    assert run_ring.code == 0, run_ring.stdout + run_ring.stderr
    drills = [a for a in run_ring.doc["attestations"] if a["kind"] == "drill"]
    assert len(drills) == 2 and {a["role"] for a in drills} == {"verifier"}, run_ring.doc["attestations"]

    # Its export bundle (inventory read from the backup host's snapshots) verifies under its key.
    bundle = verifier.dir / "verifier-evidence.tar.gz"
    run_export = verifier.cli("evidence", "export", "--out", str(bundle), "--json")
    assert run_export.code == 0, run_export.stdout + run_export.stderr
    run_bundle = verifier.cli("evidence", "verify", str(bundle), "--public-key", str(own_key), "--json")
    assert run_bundle.code == 0 and run_bundle.doc["type"] == "bundle", run_bundle.stdout + run_bundle.stderr

    # Mirrored to WORM under its own prefix with its evidence-only keys; auditors pull it back intact.
    listed = stack.seaweed.client("admin").list_objects_v2(
        Bucket=stack.bucket, Prefix=f"evidence/{VERIFIER_HOST}/records/")
    assert listed.get("KeyCount") == len(ledger.read_bytes().splitlines())  # the export's record too
    run = main.cli("evidence", "pull", "--destination", "worm", "--host", VERIFIER_HOST,
                   "--out", str(main.dir / "pulled"), "--json")
    assert run.code == 0 and run.doc["hosts"][0]["ok"], run.stdout + run.stderr

    # restic never wrote a lock for the verifier: every read ran with --no-lock.
    locks = stack.seaweed.client("admin").list_objects_v2(Bucket=stack.bucket, Prefix=f"{REPO}/locks/")
    assert locks.get("KeyCount", 0) == 0


def test_the_verifier_refuses_to_write_and_its_keys_cannot(pair, stack):
    _, verifier = pair
    run = verifier.cli("backup", "--target", "v-programs", "--json")
    assert run.code == 2 and "backup refused" in run.doc["error"] and "role: verifier" in run.doc["error"]
    for argv in (["forget"], ["prune"], ["extend-locks"], ["copy"]):
        assert verifier.cli(*argv).code == 2, argv
    for identity, key in (("auditor", f"{REPO}/data/00/planted"), ("verifier", f"{REPO}/locks/planted"),
                          ("verifier", "evidence/it-host/records/999999999999.json")):
        with pytest.raises(ClientError) as err:
            stack.seaweed.client(identity).put_object(Bucket=stack.bucket, Key=key, Body=b"x")
        assert err.value.response["Error"]["Code"] == "AccessDenied", (identity, key)
