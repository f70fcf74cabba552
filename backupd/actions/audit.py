"""`backupd audit storage`: prove each S3 destination is WORM by configuration, readback and a
delete canary (run with the dedicated canary identity, `canary_credentials_file`), that no lifecycle
rule can expire a backup version before min_history, that the evidence objects are locked for
evidence.retention, and that the daemon's own credentials cannot weaken the bucket nor write under another host's
evidence prefix (storage/confinement.py)."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

from botocore.exceptions import ClientError

from backupd import evidence
from backupd.actions import grants_audit
from backupd.config.credentials import read_credentials
from backupd.config.loader import Config
from backupd.errors import ConfigError, DependencyError
from backupd.evidence import settings as evidence_settings
from backupd.policy.schema import S3Destination
from backupd.storage import canary, client, confinement, evidence_objects, freeze, lockconfig, readback
from backupd.storage.checks import Check


def s3_client(dest: S3Destination, credentials_file: Path | None = None):
    """boto3 client for dest with the keys of credentials_file (default: the daemon's)."""
    return client.make(dest.endpoint, dest.region, read_credentials(credentials_file or dest.credentials_file))


def required_history(policy_set, dest_name: str) -> timedelta:
    """The longest min_history among the targets that write to dest_name."""
    spans = [t.retention.min_history for t in policy_set.targets if dest_name in t.destinations]
    return max(spans, default=timedelta(0))


def _state_path(cfg: Config) -> Path:
    return cfg.state_dir / "storage-audit.json"


def _last_audits(cfg: Config) -> dict:
    try:
        return json.loads(_state_path(cfg).read_text())
    except (OSError, ValueError):
        return {}


def _save_audit(cfg: Config, name: str, when: datetime) -> None:
    data = _last_audits(cfg)
    data[name] = when.isoformat()
    path = _state_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def _canary(cfg: Config, dest: S3Destination) -> tuple[Check, dict | None]:
    """The delete canary with the canary identity; without one, a finding (and no readback)."""
    keys = getattr(dest, "canary_credentials_file", None)
    if keys is None:
        return Check("delete_canary", False, "no canary identity (canary_credentials_file): the canary cannot "
                     "prove Object Lock, because the writer is denied version deletes by IAM anyway; create "
                     "one from deploy/iam/canary.json"), None
    try:
        s3 = s3_client(dest, keys)
    except ConfigError as exc:
        return Check("delete_canary", False, f"canary identity unusable: {exc}"), None
    try:
        return canary.delete_canary(s3, dest.bucket, canary.canary_key(cfg.host or "host"))
    except ClientError as exc:  # e.g. no PutObject grant: the other checks still run
        return Check("delete_canary", False, f"the canary identity was refused ({client.error_code(exc)}) "
                     f"writing or reading under {canary.CANARY_PREFIX}: fix its grant (deploy/iam/canary.json)"), None


def _writer_probes(cfg: Config, dest: S3Destination, auditor, probe_config) -> list[Check]:
    if getattr(cfg, "verifier", False):
        return [Check("writer_probes", False, "not run in the verifier role (it holds no writer keys); the "
                      "backup host's weekly audit runs them", "warning")]
    writer = s3_client(dest)
    host = cfg.host or socket.gethostname()
    return [*canary.writer_probes(writer, auditor, dest.bucket, probe_config),
            confinement.confinement_probe(writer, dest.bucket, host)]


def _auditor(dest: S3Destination):
    """Reads the bucket settings: the auditor's keys, else the writer's."""
    if dest.auditor_credentials_file:
        return s3_client(dest, dest.auditor_credentials_file)
    return s3_client(dest)


def _checks(cfg: Config, name: str, dest: S3Destination, required: timedelta, now: datetime,
            grants: grants_audit.Documents, policy_set) -> tuple[list, int]:
    auditor = _auditor(dest)
    checks = [lockconfig.versioning_check(auditor, dest.bucket)]
    config = lockconfig.read_lock_config(auditor, dest.bucket)
    canary_check, observed = _canary(cfg, dest)
    checks += lockconfig.lock_checks(config, observed, dest.pilot, required)
    checks.append(canary_check)
    checks.append(lockconfig.lifecycle_check(lockconfig.read_lifecycle(auditor, dest.bucket),
                                             [dest.path, freeze.PREFIX], required))
    probe_config = lockconfig.config_from_observed(observed) if config == "denied" and observed else config
    checks += _writer_probes(cfg, dest, auditor, probe_config)
    checks += grants_audit.checks(grants, policy_set, dest, auditor)  # the store's word, not the writer's keys
    since = _last_audits(cfg).get(name)
    since = datetime.fromisoformat(since) if since else None
    check, read = readback.readback(auditor, dest.bucket, dest.path, since, required, now)
    opts = evidence_settings.of(cfg)
    kept, _ = readback.evidence_readback(auditor, dest.bucket, evidence_objects.prefixes(
        dest.path, mirror=name == opts.mirror), since, opts.retention, now)
    return checks + [check, kept], read


def audit_destination(cfg: Config, policy_set, name: str, dest, grants: grants_audit.Documents | None = None) -> dict:
    """All checks of one destination as a JSON-ready dict with status ok|finding|unavailable|skipped."""
    out = {"destination": name, "status": "ok", "checks": []}
    if not isinstance(dest, S3Destination) or not dest.object_lock:
        return {**out, "status": "skipped", "note": "not an S3 destination with object_lock: true"}
    out.update(bucket=dest.bucket, path=dest.path, endpoint=dest.endpoint)
    now = datetime.now(timezone.utc)
    required = required_history(policy_set, name)
    out["required_retention"] = str(required)
    try:
        with client.reachable(f"audit {name}"):
            checks, out["objects_read_back"] = _checks(cfg, name, dest, required, now,
                                                       grants or grants_audit.load(cfg), policy_set)
    except DependencyError as exc:
        return {**out, "status": "unavailable", "error": str(exc)}
    except ClientError as exc:
        checks = [Check("s3", False, f"{name}: S3 refused the audit: {client.error_code(exc)}")]
    out["checks"] = [c.to_dict() for c in checks]
    if any(not c.ok and c.severity == "error" for c in checks):
        out["status"] = "finding"
    else:
        _save_audit(cfg, name, now)
    return out


def run(cfg: Config, policy_set) -> list[dict]:
    """Audit every destination; one evidence record per run."""
    grants = grants_audit.load(cfg)  # a bad grants: section or document is a config error before any S3 call
    results = [audit_destination(cfg, policy_set, n, d, grants) for n, d in policy_set.destinations.items()]
    evidence.record(cfg, "storage_audit", {"destinations": results})
    return results
