"""restic list locks / cat lock / unlock: read the lock files, remove only the ones restic deems stale."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from backupd.engine import command
from backupd.engine.repository import Repository

_ID = re.compile(rb"^[0-9a-f]{64}$")


@dataclass
class Lock:
    """One restic lock file: who holds it and since when (restic refreshes it every 5 minutes)."""

    id: str
    time: datetime | None
    exclusive: bool
    hostname: str
    pid: int
    username: str = ""


def parse_lock(lock_id: str, data: bytes) -> Lock:
    """A lock from `restic cat lock` JSON (time like 2026-11-22T12:00:00.123456789+09:00)."""
    doc = json.loads(data)
    raw = str(doc.get("time", ""))
    when = None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", raw)
    if m:
        frac = (m.group(2) or "")[:7]  # Python takes at most microseconds
        when = datetime.fromisoformat(m.group(1) + frac + m.group(3).replace("Z", "+00:00"))
    return Lock(lock_id, when, bool(doc.get("exclusive", False)), str(doc.get("hostname", "")),
                int(doc.get("pid", 0) or 0), str(doc.get("username", "")))


def list_ids(repo: Repository, timeout: float = 300) -> list[str]:
    done = command.run(repo, "list", "locks", "--no-lock", what=f"list locks of {repo.name}",
                       json=False, timeout=timeout)
    return [ln.strip().decode() for ln in done.stdout.splitlines() if _ID.match(ln.strip())]


def read(repo: Repository, lock_id: str, timeout: float = 300) -> Lock | None:
    """The lock, or None when it vanished between list and cat (its holder finished)."""
    done = command.run(repo, "cat", "lock", lock_id, "--no-lock", what=f"read lock of {repo.name}",
                       json=False, timeout=timeout, check=False)
    if done.returncode != 0:
        return None
    try:
        return parse_lock(lock_id, done.stdout)
    except (ValueError, TypeError):
        return None


def list_locks(repo: Repository) -> list[Lock]:
    return [lk for lk in (read(repo, i) for i in list_ids(repo)) if lk is not None]


def remove_stale(repo: Repository, timeout: float = 300, *, remove_all: bool = False) -> None:
    """`restic unlock`: restic removes only locks it judges stale itself. remove_all only for a caller
    that has proven every lock present stale (backupd.actions.locks)."""
    args = ["--remove-all"] if remove_all else []
    command.run(repo, "unlock", *args, what=f"unlock {repo.name}", json=False, timeout=timeout)
