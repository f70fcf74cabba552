"""S3 credentials files (secrets_dir): KEY=VALUE lines with the AWS_* keys restic and boto3 need."""

from __future__ import annotations

from pathlib import Path

from backupd.errors import ConfigError

CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def read_credentials(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an S3 credentials file; only the AWS_* keys restic needs."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read credentials file ({exc.strerror})") from None
    keys: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        if not sep or name not in CREDENTIAL_KEYS:
            raise ConfigError(f"{path}:{number}: expected AWS_ACCESS_KEY_ID=... or AWS_SECRET_ACCESS_KEY=...")
        keys[name] = value.strip().strip("'\"")
    if "AWS_ACCESS_KEY_ID" not in keys or "AWS_SECRET_ACCESS_KEY" not in keys:
        raise ConfigError(f"{path}: needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    return keys
