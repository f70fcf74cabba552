"""The demo's verifier: a second identity that drills the backup host's snapshots with only the auditor's
read-only S3 keys, the repository password, its evidence-only keys and the canary identity.

    config = write_config(stack, ROOT / "policies", workdir / "verifier")
"""
from __future__ import annotations

import json
from pathlib import Path

from demo._util import write_secret
from demo.seaweed import VERIFIER_HOST
from demo.stack import HOST, LocalStack

ROOT = Path(__file__).resolve().parent.parent
#: What the verifier holds; never the writer's or the maintainer's keys.
SECRETS = ("restic-password", "s3-auditor.env", "s3-verifier.env", "s3-canary.env")
WRITER_KEYS = "    credentials_file: s3-writer.env"


def with_auditor(policy: str) -> str:
    """The policy text naming the auditor's keys beside the writer's, unless it already does (the shipped
    policy does: a second key would be a duplicate-key error)."""
    if "auditor_credentials_file:" in policy:
        return policy
    lines = [line + ("\n    auditor_credentials_file: s3-auditor.env" if line.startswith(WRITER_KEYS) else "")
             for line in policy.splitlines()]
    return "\n".join(lines) + "\n"


def write_config(stack: LocalStack, policy_dir: Path, workdir: Path) -> Path:
    """Copies of the policies naming the auditor's keys, a secrets dir with SECRETS only, and verifier.yaml."""
    policies, secrets = workdir / "policies", workdir / "secrets"
    policies.mkdir(parents=True, exist_ok=True)
    for source in sorted(Path(policy_dir).glob("*.yaml")):
        (policies / source.name).write_text(with_auditor(source.read_text()))
    for name in SECRETS:
        write_secret(secrets / name, (stack.secrets_dir / name).read_text())
    q = json.dumps  # a JSON string is a valid YAML scalar
    config = workdir / "verifier.yaml"
    config.write_text(
        f"role: verifier\npolicies: [{q(str(policies / '*.yaml'))}]\nstate_dir: {q(str(workdir / 'state'))}\n"
        f"secrets_dir: {q(str(secrets))}\nhost: {VERIFIER_HOST}\nhosts: [{HOST}]\n"
        f"restore_tests: {q(str(ROOT / 'restore_tests'))}\n"
        "evidence: {mirror: worm-primary, credentials_file: s3-verifier.env}\n")
    return config
