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
    tmp_path.mkdir(exist_ok=True)
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


def handed(tmp_path, source, name: str, writer: list[str] | None):
    """A copy of the identities file `source` without credentials, the writer's actions replaced if given."""
    doc = json.loads(source.read_text())
    for identity in doc["identities"]:
        identity.pop("credentials")
        if writer is not None and identity["name"] == "writer":
            identity["actions"] = writer
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_the_verifier_reports_the_broad_writer_from_the_stacks_identities_file(stack, tmp_path, policy):
    stacks_file = stack.seaweed.workdir / "s3-identities.json"
    writer = {i["name"]: i["actions"] for i in json.loads(stacks_file.read_text())["identities"]}["writer"]

    # The stack's own file: its test writer writes far beyond it-host's restic path and evidence prefix.
    checks = grant_checks(verifier(stack, tmp_path / "stack", policy, stacks_file))
    found = checks["grants_write_reach:writer"]
    assert not found["ok"] and found["severity"] == "error"
    assert any(f"'writer': {grant}:" in found["detail"] for grant in writer), found
    assert checks["grants_file_secrets"]["severity"] == "warning"  # it was handed every identity's keys
    assert "grants" not in checks  # no pass beside a finding

    # The old shipped writer (`Write:<bucket>/*`): named, with the verifier's prefix it may overwrite.
    old = handed(tmp_path, stacks_file, "old.json", [f"Read:{stack.bucket}", f"List:{stack.bucket}",
                                                       f"Write:{stack.bucket}/*", f"Tagging:{stack.bucket}/*"])
    found = grant_checks(verifier(stack, tmp_path / "old", policy, old))["grants_write_reach:writer"]
    assert f"Write:{stack.bucket}/*" in found["detail"] and f"evidence/{VERIFIER_HOST}/" in found["detail"]

    # The same store with the writer confined to its restic path and its own evidence prefix: no finding.
    confined = handed(tmp_path, stacks_file, "confined.json", [
        f"Read:{stack.bucket}", f"List:{stack.bucket}", f"Write:{stack.bucket}/{REPO}/*",
        f"Write:{stack.bucket}/evidence/it-host/*", f"PutObjectRetention:{stack.bucket}/evidence/it-host/*"])
    checks = grant_checks(verifier(stack, tmp_path / "confined", policy, confined))
    assert checks["grants"]["ok"] and "grants_file_secrets" not in checks, checks
    assert not any(not c["ok"] and c["severity"] == "error" for c in checks.values()), checks


def test_an_unreadable_identities_file_is_a_config_error_naming_the_field(stack, tmp_path, policy):
    run = verifier(stack, tmp_path, policy, tmp_path / "missing.json").cli("audit", "storage")
    assert run.code == 2 and "grants.seaweedfs_identities" in run.stderr and "missing.json" in run.stderr
