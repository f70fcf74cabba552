"""Where a WORM bucket holds evidence, which must stay locked for `evidence.retention` (not the bucket's shorter
default): the signed ledger mirror (`evidence/<host>/`), the incident markers (`.backupd-incident/`) and the
sealed password escrows beside each repository (`<path>/.backupd-escrow/`).

``prefixes(repo_path, mirror)`` -> the prefixes of one destination; ``versions(s3, bucket, prefixes)`` -> every
object version under them (delete markers aside): the oldest version is the one auditors and recovery trust,
so every version keeps its lock, not only the latest.
"""

from __future__ import annotations

from backupd.storage.freeze import PREFIX as INCIDENT_PREFIX
from backupd.storage.versions import Version, list_versions

EVIDENCE_PREFIX = "evidence/"
ESCROW_DIR = ".backupd-escrow"


def prefixes(repo_path: str, mirror: bool) -> list[str]:
    """Evidence prefixes of a destination whose repository is at repo_path; mirror: it holds evidence/ too."""
    found = [f"{repo_path}/{ESCROW_DIR}/", INCIDENT_PREFIX]  # as actions/keys.py writes the escrow
    return found + [EVIDENCE_PREFIX] if mirror else found


def versions(s3, bucket: str, prefixes: list[str]) -> list[Version]:
    """Every object version under the prefixes (paginated listings), delete markers left out."""
    return [v for prefix in prefixes for v in list_versions(s3, bucket, prefix) if not v.delete_marker]
