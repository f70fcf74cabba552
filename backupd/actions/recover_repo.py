"""`backupd recover-repo`: rebuild a damaged repository as it was at a moment, from S3 object versions,
into a clean prefix; then `restic check --read-data` proves it whole."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import PurePosixPath

from botocore.exceptions import ClientError

from backupd import evidence
from backupd.actions.audit import s3_client
from backupd.actions.common import repository
from backupd.config.loader import Config
from backupd.engine import check as restic_check
from backupd.errors import ConfigError, DependencyError
from backupd.policy.schema import S3Destination
from backupd.storage import client, pitr


def parse_time(text: str) -> datetime:
    """ISO 8601 ('2026-07-04T06:00Z', '2026-07-04 06:00:00+09:00'); naive means UTC."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--as-of {text[:40]!r} is not an ISO 8601 time (e.g. 2026-07-04T06:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def clean_prefix(text: str) -> str:
    parts = PurePosixPath(text.strip("/")).parts
    if not parts or any(p in (".", "..") for p in parts):
        raise ConfigError(f"--to {text[:80]!r} must be a key prefix without '.' or '..' parts")
    return "/".join(parts)


def _destination(policy_set, name: str) -> S3Destination:
    dest = policy_set.destinations.get(name)
    if not isinstance(dest, S3Destination):
        raise ConfigError(f"{name!r} is not an S3 destination; known: {', '.join(policy_set.destinations)}")
    return dest


def run(cfg: Config, policy_set, destination: str, as_of: str, to_prefix: str) -> dict:
    """Copy the versions current at as_of into to_prefix and check the result with --read-data."""
    dest, when, target = _destination(policy_set, destination), parse_time(as_of), clean_prefix(to_prefix)
    out = {"destination": destination, "as_of": when.isoformat(), "to": target, "status": "failed"}
    try:
        with client.reachable(f"recover {destination}"):
            result = pitr.recover(s3_client(dest), dest.bucket, dest.path, target, when)
        out.update(result.to_dict())
        repo = repository(cfg, f"{destination}@{target}", dest.model_copy(update={"path": target}))
        checked = restic_check.check(repo, read_data_subset="1/1")
        out.update(check="ok" if checked.ok else "failed", status="ok" if checked.ok else "failed")
        if not checked.ok:
            out["error"] = "restic check --read-data failed on the recovered repository: " + checked.output[-300:]
        else:
            out["repository"] = repo.url
    except (ValueError, FileExistsError) as exc:
        raise ConfigError(str(exc)) from None
    except DependencyError as exc:
        out.update(status="unavailable", error=str(exc))
    except ClientError as exc:
        out["error"] = f"S3 refused: {client.error_code(exc)}"
    evidence.record(cfg, "recover_repo", out)
    return out
