"""restic key: add, list and remove repository keys (passwords) for key rotation."""

from __future__ import annotations

import json
from pathlib import Path

from backupd.engine import command
from backupd.engine.repository import Repository


def add(repo: Repository, new_password_file: Path) -> None:
    """Add a key whose password is in new_password_file (never on argv)."""
    command.run(repo, "key", "add", "--new-password-file", str(new_password_file),
                what=f"add key to {repo.name}", json=False, timeout=600)


def list_keys(repo: Repository) -> list[dict]:
    """Keys as restic lists them: id, userName, hostName, created, current (the one we opened with)."""
    done = command.run(repo, "key", "list", what=f"list keys of {repo.name}", timeout=600)
    return json.loads(done.stdout or b"[]") or []


def current_id(repo: Repository) -> str | None:
    """Id of the key that repo's password opens."""
    return next((k["id"] for k in list_keys(repo) if k.get("current")), None)


def remove(repo: Repository, key_id: str) -> None:
    """Remove a key by id (restic refuses to remove the key in use)."""
    command.run(repo, "key", "remove", key_id, what=f"remove key from {repo.name}", json=False, timeout=600)
