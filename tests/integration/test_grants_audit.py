"""The verifier judges the writer's S3 grants itself, from the SeaweedFS identities file it is handed
(`grants: {seaweedfs_identities: ...}`), not from the audited host's own keys."""

from __future__ import annotations

import json
import shutil

import pytest

from demo.seaweed import VERIFIER_HOST
from tests.integration.conftest import Setup

pytestmark = pytest.mark.integration

REPO = "t-grants"
SECRETS = ("s3-auditor.env", "s3-canary.env", "restic-password")


def verifier(stack, tmp_path, policy, identities) -> Setup:
    """A verifier (auditor and canary keys only) for the backup host it-host, handed `identities`."""
    main = policy("", REPO)
    policy_file = main.dir.parent / "policies" / "test.yaml"
    policy_file.write_text(policy_file.read_text().replace(
        "    credentials_file: s3-writer.env\n", "    credentials_file: s3-writer.env\n"
        "    auditor_credentials_file: s3-auditor.env\n    canary_credentials_file: s3-canary.env\n"))
    secrets = tmp_path / "verifier-secrets"
    secrets.mkdir(mode=0o700)
    for name in SECRETS:
        shutil.copy(stack.secrets_dir / name, secrets / name)
    vdir = tmp_path / "verifier"
    vdir.mkdir()
    config = vdir / "verifier.yaml"
    config.write_text("\n".join([
        "role: verifier", f"policies: ['{policy_file.parent}/*.yaml']", f"state_dir: '{vdir / 'state'}'",
        f"secrets_dir: '{secrets}'", f"host: {VERIFIER_HOST}", "hosts: [it-host]",
        f"grants: {{seaweedfs_identities: '{identities}'}}"]) + "\n")
    return Setup(stack, vdir, config)


def grant_checks(setup: Setup) -> dict[str, dict]:
    run = setup.cli("audit", "storage", "--json")
    assert run.code in (0, 1), run.stdout + run.stderr
    (dest,) = run.doc["destinations"]
    return {c["name"]: c for c in dest["checks"] if c["name"].startswith("grants")}


def test_the_verifier_reports_the_broad_writer_from_the_stacks_identities_file(stack, tmp_path, policy):
    stacks_file = stack.seaweed.workdir / "s3-identities.json"
    writer = {i["name"]: i["actions"] for i in json.loads(stacks_file.read_text())["identities"]}["writer"]
    assert f"Write:{stack.bucket}/*" in writer  # the stack's test writer: every key of the bucket

    checks = grant_checks(verifier(stack, tmp_path, policy, stacks_file))
    found = checks["grants_write_reach:writer"]
    assert not found["ok"] and found["severity"] == "error"
    assert f"Write:{stack.bucket}/*" in found["detail"] and f"evidence/{VERIFIER_HOST}/" in found["detail"]
    assert checks["grants_file_secrets"]["severity"] == "warning"  # it was handed every identity's keys
    assert "secretKey" not in json.dumps(checks) and "grants" not in checks  # no pass beside a finding

    # The same store with the writer confined to its restic path and its own evidence prefix: no finding.
    doc = json.loads(stacks_file.read_text())
    for identity in doc["identities"]:
        identity.pop("credentials")
        if identity["name"] == "writer":
            identity["actions"] = [f"Read:{stack.bucket}", f"List:{stack.bucket}", f"Write:{stack.bucket}/{REPO}/*",
                                   f"Write:{stack.bucket}/evidence/it-host/*"]
    confined = tmp_path / "confined.json"
    confined.write_text(json.dumps(doc))
    (tmp_path / "c").mkdir()
    checks = grant_checks(verifier(stack, tmp_path / "c", policy, confined))
    assert checks["grants"]["ok"], checks
    assert not any(not c["ok"] and c["severity"] == "error" for c in checks.values()), checks


def test_an_unreadable_identities_file_is_a_config_error_naming_the_field(stack, tmp_path, policy):
    run = verifier(stack, tmp_path, policy, tmp_path / "missing.json").cli("audit", "storage")
    assert run.code == 2 and "grants.seaweedfs_identities" in run.stderr and "missing.json" in run.stderr
