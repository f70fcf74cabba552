"""`backupd extend-locks`: keep every live repository object locked for at least R more.

R is the destination's `lock_extension`, default the longest min_history of its targets. Every version of
every evidence object in the destination (its escrow, the bucket's incident markers and the ledger mirrors
under evidence/) is kept locked for at least evidence.retention more. Runs with the maintainer identity
(`maintainer_credentials_file`); the daemon's writer may not extend."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from botocore.exceptions import ClientError

from backupd import evidence
from backupd.actions.audit import required_history, s3_client
from backupd.config.loader import Config
from backupd.errors import ConfigError, DependencyError
from backupd.evidence import settings as evidence_settings
from backupd.policy.durations import format_duration
from backupd.policy.schema import S3Destination
from backupd.storage import client, evidence_objects
from backupd.storage import extend as extender
from backupd.storage.lock_cache import LockCache


def _one(policy_set, name: str, dest: S3Destination, now: datetime, evidence_opts, state_dir: Path) -> dict:
    out = {"destination": name, "status": "failed"}
    period = dest.lock_extension or required_history(policy_set, name)
    if not dest.maintainer_credentials_file:
        return {**out, "error": "no maintainer_credentials_file: extending locks needs the maintainer identity"}
    try:
        with client.reachable(f"extend-locks {name}"):
            s3 = s3_client(dest, dest.maintainer_credentials_file)
            result = extender.extend(s3, dest.bucket, dest.path, period, now)
            kept = _evidence(s3, name, dest, evidence_opts, now, state_dir)
    except DependencyError as exc:
        return {**out, "status": "unavailable", "error": str(exc)}
    except ClientError as exc:
        return {**out, "error": f"S3 refused: {client.error_code(exc)}"}
    out.update(result.to_dict(), period=str(period), evidence_retention=format_duration(evidence_opts.retention),
               evidence_objects=kept.objects, evidence_extended=kept.extended, evidence_until=kept.until)
    failed = result.failed + kept.failed
    if failed:
        out["error"] = f"{len(failed)} object(s) could not be extended: " + "; ".join(failed[:5])
    else:
        out["status"] = "ok"
    return out


def _evidence(s3, name: str, dest: S3Destination, opts, now: datetime, state_dir: Path) -> extender.ExtendResult:
    """Extend the destination's evidence objects (escrow, incident markers; evidence/ on the mirror)."""
    # evidence/ on every locked destination, not only this config's evidence.mirror: the maintenance
    # role's config names no mirror, and another host's ledger may be mirrored into this bucket
    prefixes = evidence_objects.prefixes(dest.path, mirror=True)
    with LockCache(Path(state_dir) / "evidence-locks.sqlite") as cache:
        return extender.extend_evidence(s3, dest.bucket, prefixes, opts.retention, now, cache=cache)


def run(cfg: Config, policy_set, destination: str | None = None) -> list[dict]:
    """Extend locks on every locked S3 destination (or just `destination`)."""
    dests = {n: d for n, d in policy_set.destinations.items()
             if isinstance(d, S3Destination) and d.object_lock and destination in (None, n)}
    if destination and destination not in dests:
        raise ConfigError(f"no S3 destination with object_lock named {destination!r}")
    now = datetime.now(timezone.utc)
    opts = evidence_settings.of(cfg)
    results = [_one(policy_set, n, d, now, opts, cfg.state_dir) for n, d in dests.items()]
    evidence.record(cfg, "extend_locks", {"destinations": results})
    return results
