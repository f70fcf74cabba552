"""Repository locks the daemon runs into: never a blind `restic unlock`.

A lock is *provably stale* only when all hold: it was made on this host, its PID is dead, no job of
ours runs on the repository, and either it is older than restic's own stale threshold (30 min:
restic refreshes live locks every 5 min) or it was made by our own user account (a backup of ours
killed by SIGTERM or a crash: restic 0.14 removes its lock only on SIGINT). restic 0.14 lets such a
lock block `check`/`forget` until someone unlocks, so leaving it would fail the next check. `restic unlock` (never --remove-all) is called only when every
lock restic itself would remove is provably stale; otherwise we wait with a bound and report who
holds the lock.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from backupd.engine import locks as restic_locks
from backupd.engine.locks import Lock

STALE_AFTER = timedelta(minutes=30)  # restic's staleTimeout
POLL_SECONDS = 15.0


def pid_alive(pid: int) -> bool:
    """True unless the PID provably does not exist here (PID <= 0 or other errors: assume alive)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _age(lock: Lock, now: datetime) -> timedelta | None:
    return (now - lock.time) if lock.time else None


def _me() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def provably_stale(lock: Lock, *, hostname: str, now: datetime, ours_running: bool,
                   alive: Callable[[int], bool] = pid_alive, user: str | None = None) -> bool:
    age = _age(lock, now)
    user = _me() if user is None else user
    old_or_ours = (age is not None and age > STALE_AFTER) or (bool(user) and lock.username == user)
    return not ours_running and lock.hostname == hostname and old_or_ours and not alive(lock.pid)


def restic_would_remove(lock: Lock, *, hostname: str, now: datetime,
                        alive: Callable[[int], bool] = pid_alive) -> bool:
    """restic's own Stale(): too old, or made on this host by a process that is gone."""
    age = _age(lock, now)
    if age is not None and age > STALE_AFTER:
        return True
    return lock.hostname == hostname and not alive(lock.pid)


def describe(lock: Lock) -> dict:
    return {"id": lock.id[:8], "host": lock.hostname, "pid": lock.pid, "exclusive": lock.exclusive,
            "since": lock.time.isoformat() if lock.time else None}


def decide(locks: list[Lock], *, hostname: str, now: datetime, ours_running: bool,
           alive: Callable[[int], bool] = pid_alive, user: str | None = None) -> str:
    """'clear' (no locks), 'remove' (unlock is safe and helps) or 'wait'."""
    if not locks:
        return "clear"
    removable = [lk for lk in locks if restic_would_remove(lk, hostname=hostname, now=now, alive=alive)]
    proven = [lk for lk in removable
              if provably_stale(lk, hostname=hostname, now=now, ours_running=ours_running, alive=alive,
                                 user=user)]
    if removable and len(proven) == len(removable):
        return "remove"
    return "wait"


@dataclass
class Resolution:
    outcome: str  # clear | removed | locked
    removed: list[dict] = field(default_factory=list)
    holders: list[dict] = field(default_factory=list)


def resolve(repo, *, wait_seconds: float, ours_running: bool = False,
            sleep: Callable[[float], bool] | None = None, hostname: str | None = None) -> Resolution:
    """Wait (at most wait_seconds) until repo has no lock, removing provably stale ones.

    `sleep(seconds)` returns True when the caller wants to stop waiting (e.g. SIGTERM)."""
    hostname = hostname or socket.gethostname()
    sleep = sleep or (lambda s: time.sleep(s) or False)
    deadline = time.monotonic() + wait_seconds
    removed: list[dict] = []
    while True:
        locks = restic_locks.list_locks(repo)
        now = datetime.now(timezone.utc)
        action = decide(locks, hostname=hostname, now=now, ours_running=ours_running)
        if action == "clear":
            return Resolution("removed" if removed else "clear", removed)
        if action == "remove" and not removed:  # one attempt: a lock that will not go is reported
            removed += [describe(lk) for lk in locks
                        if restic_would_remove(lk, hostname=hostname, now=now)]
            restic_locks.remove_stale(repo)
            continue
        left = deadline - time.monotonic()
        if left <= 0 or sleep(min(POLL_SECONDS, left)):
            return Resolution("locked", removed, [describe(lk) for lk in locks])
