"""`backupd storage init`: one-time creation of the WORM bucket(s) with an administrator identity.

Input: the administrator's credentials file and either the config's S3 destinations (retention: the longest
min_history of the targets on each) or one explicit bucket. Output per bucket: created (with the settings),
exists (already WORM: left as is) or finding (an existing bucket weaker than required: reported, never
changed), plus the identity policies to install: AWS IAM (deploy/iam/*.json) and SeaweedFS
(deploy/seaweedfs/s3-identities.example.json) with the bucket and prefix filled in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from botocore.exceptions import ClientError

from backupd.config import credentials, templates
from backupd.config.credentials import read_credentials
from backupd.errors import ConfigError
from backupd.policy.durations import format_duration
from backupd.policy.lint import lint_paths
from backupd.policy.schema import S3Destination
from backupd.storage import bucket_setup, client, freeze

IDENTITIES = ("writer", "maintainer", "auditor", "canary", "verifier")


@dataclass
class Bucket:
    """One bucket to set up: where, and how long every version must stay."""

    name: str  # the policy destination's name, or the bucket's
    endpoint: str | None
    bucket: str
    region: str
    path: str
    required: timedelta
    host: str | None = None  # the writer's host: its identity is confined to evidence/<host>/
    paths: tuple[str, ...] = ()  # every repository path of that host in the bucket (default: path)


def from_config(cfg, only: str | None, host: str | None = None) -> list[Bucket]:
    """The S3 destinations of the config's policies (schema-valid is enough: secrets may not exist yet); the
    writer's host is `host`, else the config's `host:`, else the policy's site.host."""
    loaded = lint_paths(cfg.policy_files(), cfg.secrets_dir).policies
    policies = [lp.policy for lp in loaded if lp.policy]
    if not policies:
        raise ConfigError("no valid policy file; run backupd policy lint")
    found = []
    host = host or cfg.host or next((p.site.host for p in policies if getattr(p.site, "host", None)), None)
    paths: dict[str, list[str]] = {}
    for policy in policies:
        for dest in policy.destinations.values():
            if isinstance(dest, S3Destination):
                paths.setdefault(dest.bucket, []).append(dest.path.strip("/"))
    for policy in policies:
        for name, dest in policy.destinations.items():
            if not isinstance(dest, S3Destination) or (only and name != only):
                continue
            spans = [t.retention.min_history for t in policy.targets if name in t.destinations]
            found.append(Bucket(name, dest.endpoint, dest.bucket, dest.region, dest.path,
                                max(spans, default=timedelta(0)), host,
                                tuple(dict.fromkeys(paths[dest.bucket]))))
    if not found:
        raise ConfigError(f"no S3 destination {only!r} in the policies" if only
                          else "no S3 destination in the policies")
    return found


def identity_policies(bucket: str, prefix: str | list[str], host: str | None = None,
                      verifier_host: str | None = None) -> dict:
    """The identity policies of one bucket: {"aws_iam": {identity: policy}, "seaweedfs": s3-identities doc}.

    The writer is confined to the repository path(s) (`prefix`: one or more) and to `evidence/<host>/`, the
    verifier to `evidence/<verifier_host>/`; a host left None keeps its placeholder for the operator."""
    paths = [p.strip("/") for p in ([prefix] if isinstance(prefix, str) else prefix)]
    values = {"@BUCKET@": [bucket], "@PREFIX@": paths, "@HOST@": [host] if host else None,
              "@VERIFIER_HOST@": [verifier_host] if verifier_host else None}
    fill = {k: v for k, v in values.items() if v}
    iam = {name: _expand(json.loads(templates.path("deploy", "iam", f"{name}.json").read_text()), fill)
           for name in IDENTITIES}
    seaweed = _expand(json.loads(templates.path("deploy", "seaweedfs", "s3-identities.example.json").read_text()),
                      fill)
    return {"aws_iam": iam, "seaweedfs": seaweed}


def _expand(doc, fill: dict[str, list[str]]):
    """doc with every placeholder replaced; a string in a list with a placeholder of several values (paths)
    becomes one string per value, a lone string a list of them."""
    def strings(text: str) -> list[str]:
        out = [text]
        for key, vals in fill.items():
            if key in text:
                out = [s.replace(key, v) for s in out for v in vals]
        return out

    if isinstance(doc, dict):
        return {k: _expand(v, fill) for k, v in doc.items()}
    if isinstance(doc, list):
        return [s for item in doc for s in (strings(item) if isinstance(item, str) else [_expand(item, fill)])]
    if isinstance(doc, str):
        got = strings(doc)
        return got[0] if len(got) == 1 else got
    return doc


def _one(s3, target: Bucket) -> dict:
    out = {"destination": target.name, "bucket": target.bucket, "endpoint": target.endpoint or "",
           "retention": format_duration(target.required), "status": "created", "steps": [], "checks": []}
    with client.reachable(f"bucket {target.bucket}"):
        try:
            if not bucket_setup.exists(s3, target.bucket):
                out["steps"] = bucket_setup.create(s3, target.bucket, target.region, target.required)
                return out
            checks = bucket_setup.judge_existing(s3, target.bucket, [target.path, freeze.PREFIX], target.required)
        except ClientError as exc:
            return {**out, "status": "failed", "error": f"the storage refused {exc.operation_name}: "
                    f"{client.error_code(exc)} {client.error_message(exc)}".strip()}
    out["checks"] = [c.to_dict() for c in checks]
    weak = [c for c in checks if not c.ok and c.severity == "error"]
    out["status"] = "finding" if weak else "exists"
    out["note"] = ("exists and is weaker than required; storage init never changes an existing bucket: "
                   "create a new one (Object Lock must be enabled when a bucket is created)" if weak
                   else "exists and is already WORM as required; left unchanged")
    return out


def credential_files() -> dict[str, dict]:
    """Per identity: the file its keys go into, the policy (or config) field naming it and the units that load
    it (backupd.config.credentials: the same names as the units, the shipped policy and the operator guide)."""
    out = {}
    for identity, key in credentials.IDENTITY_FIELDS.items():
        roles = [r for r in credentials.UNITS if key in credentials.USES[r]
                 or (key == "evidence.credentials_file" and r == "verifier")]
        out[identity] = {"file": credentials.FILE_NAMES[key], "field": key,
                         "units": [credentials.UNITS[r] for r in roles]}
    return out


def run(targets: list[Bucket], admin_credentials: Path, verifier_host: str | None = None) -> dict:
    """Set up every bucket; the identity policies (writer of target.host, verifier of verifier_host) come
    with each one."""
    keys = read_credentials(admin_credentials)
    results = []
    for target in targets:
        result = _one(client.make(target.endpoint, target.region, keys), target)
        result["identity_policies"] = identity_policies(target.bucket, list(target.paths) or [target.path],
                                                        target.host, verifier_host)
        result["unfilled"] = sorted({k for k in ("@HOST@", "@VERIFIER_HOST@")
                                     if k in json.dumps(result["identity_policies"])})
        result["credential_files"] = credential_files()
        results.append(result)
    return {"destinations": results}
