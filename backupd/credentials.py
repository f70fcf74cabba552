"""S3 credentials files (secrets_dir): KEY=VALUE lines with the AWS_* keys restic and boto3 need."""

from __future__ import annotations

from pathlib import Path

from backupd import envfile

CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def read_credentials(path: Path) -> dict[str, str]:
    """The AWS_* keys of an S3 credentials file; ConfigError naming file and line when malformed."""
    return envfile.read(path, allowed=CREDENTIAL_KEYS, required=CREDENTIAL_KEYS[:2])
