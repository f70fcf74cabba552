"""Repository locks met by backup, check and the daemon: stale ones removed, live ones waited for.

Never a blind `restic unlock --remove-all`. A lock is *provably stale* when its owner is provably gone:
- made on this host, and its PID is dead, or the PID now belongs to a process that started after the
  lock was written (PID reuse; restic rewrites its lock every 5 minutes, so a live holder is never
  younger than its lock); or
- made on another host and older than STALE_AFTER (restic refreshes live locks every 5 minutes and
  itself deems a lock stale after 30).
A lock of a job the daemon runs itself (`ours_running`) is never stale. Host names must be unique per
PID namespace (two containers sharing a hostname would see each other's PIDs as dead).

Removal: when every lock restic itself would remove is provably stale, `restic unlock` (restic removes
exactly those). A reused-PID lock restic keeps (it sees the PID alive) is removed with --remove-all only
when *every* lock present is provably stale, re-listed just before. Anything else is waited for, at most
`wait_seconds`, and then reported as busy with its holders: a lock is never reported as damage.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

from backupd.engine import locks as restic_locks
from backupd.engine.exitcodes import Busy
from backupd.engine.locks import Lock
from backupd.process import procs

STALE_AFTER = timedelta(minutes=30)  # restic's staleTimeout
POLL_SECONDS = 5.0
REUSE_SLACK = timedelta(seconds=2)  # clock ticks vs the lock's nanosecond time


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


def pid_running(pid: int) -> bool:
    """pid_alive, but a zombie (exited, not yet reaped by its new parent) is gone: it holds no lock.
    restic's own check (signal 0) still sees a zombie alive, so its lock is removed as restic cannot."""
    if not pid_alive(pid):
        return False
    fields = procs.stat_fields(pid)
    return not fields or fields[0] not in ("Z", "X")


def pid_started(pid: int) -> datetime | None:
    """When process `pid` started (from /proc), None when unknown."""
    try:
        ticks = int((procs.stat_fields(pid) or [])[19])  # field 22: starttime in clock ticks since boot
        boot = next(int(ln.split()[1]) for ln in open("/proc/stat", encoding="ascii") if ln.startswith("btime"))
        return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), timezone.utc)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _owner_gone(lock: Lock, alive: Callable[[int], bool], started: Callable[[int], datetime | None]) -> bool:
    """This host's lock: its PID is dead, or taken by a process younger than the lock."""
    if not alive(lock.pid):
        return True
    born = started(lock.pid)
    return born is not None and lock.time is not None and born > lock.time + REUSE_SLACK


def provably_stale(lock: Lock, *, hostname: str, now: datetime, ours_running: bool,
                   alive: Callable[[int], bool] = pid_running,
                   started: Callable[[int], datetime | None] = pid_started) -> bool:
    if ours_running:
        return False
    if lock.hostname == hostname:
        return lock.pid > 0 and _owner_gone(lock, alive, started)
    return lock.time is not None and now - lock.time > STALE_AFTER


def restic_would_remove(lock: Lock, *, hostname: str, now: datetime,
                        alive: Callable[[int], bool] = pid_alive) -> bool:
    """restic's own Stale(): too old, or made on this host by a process that is gone."""
    if lock.time is not None and now - lock.time > STALE_AFTER:
        return True
    return lock.hostname == hostname and not alive(lock.pid)


def describe(lock: Lock) -> dict:
    return {"id": lock.id[:8], "host": lock.hostname, "pid": lock.pid, "exclusive": lock.exclusive,
            "since": lock.time.isoformat() if lock.time else None}


def decide(locks: list[Lock], *, hostname: str, now: datetime, ours_running: bool,
           alive: Callable[[int], bool] = pid_alive,
           started: Callable[[int], datetime | None] = pid_started,
           running: Callable[[int], bool] | None = None) -> str:
    """'clear' (no locks), 'remove' (restic unlock removes exactly the stale ones), 'remove_all'
    (every lock is provably stale, some only by PID reuse or a zombie owner, which restic cannot see)
    or 'wait'. `alive` is restic's view of a PID (signal 0), `running` ours (default: pid_running)."""
    if not locks:
        return "clear"
    running = running or (pid_running if alive is pid_alive else alive)
    stale = [provably_stale(lk, hostname=hostname, now=now, ours_running=ours_running, alive=running,
                            started=started) for lk in locks]
    removable = [restic_would_remove(lk, hostname=hostname, now=now, alive=alive) for lk in locks]
    if all(stale):
        return "remove" if all(removable) else "remove_all"
    if any(r and not s for r, s in zip(removable, stale)):
        return "wait"  # restic unlock would also remove a lock we cannot prove dead
    return "remove" if any(removable) else "wait"


@dataclass
class Resolution:
    outcome: str  # clear | removed | locked
    removed: list[dict] = field(default_factory=list)
    holders: list[dict] = field(default_factory=list)

    def busy(self, what: str) -> Busy:
        """The error to report when the lock did not go: busy (exit 3), never damage."""
        who = ", ".join(f"{h['host']} pid {h['pid']}" + (" (exclusive)" if h["exclusive"] else "")
                        for h in self.holders) or "another process"
        return Busy(f"{what}: repository busy, locked by {who}; try again when it has finished")


def resolve(repo, *, wait_seconds: float, ours_running: bool = False,
            sleep: Callable[[float], bool] | None = None, hostname: str | None = None,
            blocking: Callable[[Lock], bool] = lambda lk: True) -> Resolution:
    """Remove provably stale locks of repo, then wait (at most wait_seconds) until no lock that
    `blocking` selects is left. `sleep(seconds)` returns True when the caller wants to stop waiting
    (e.g. SIGTERM). Outcome 'clear' (nothing was in the way), 'removed' or 'locked'."""
    hostname = hostname or socket.gethostname()
    sleep = sleep or (lambda s: time.sleep(s) or False)
    deadline = time.monotonic() + wait_seconds
    removed: list[dict] = []
    tried: set[str] = set()
    while True:
        locks = restic_locks.list_locks(repo)
        now = datetime.now(timezone.utc)
        action = decide(locks, hostname=hostname, now=now, ours_running=ours_running)
        ids = {lk.id for lk in locks}
        if action in ("remove", "remove_all") and not ids <= tried:  # one attempt per lock
            tried |= ids
            if action == "remove_all" and set(restic_locks.list_ids(repo)) != ids:
                continue  # a lock came or went meanwhile: judge again
            gone = [lk for lk in locks if provably_stale(lk, hostname=hostname, now=now, ours_running=ours_running)]
            removed += [describe(lk) for lk in gone]
            restic_locks.remove_stale(repo, remove_all=action == "remove_all")
            continue
        in_way = [lk for lk in locks if blocking(lk)]
        if not in_way:
            return Resolution("removed" if removed else "clear", removed)
        left = deadline - time.monotonic()
        if left <= 0 or sleep(min(POLL_SECONDS, left)):
            return Resolution("locked", removed, [describe(lk) for lk in in_way])


# Owed lock clean-ups. A backup lists the repository's locks (a restic start-up, ~0.6 s) only when a restic of
# backupd's may have left one: a marker `<destination>@<pid>` in state_dir/restic-at-work exists while a backup
# works on a destination and goes when restic ended by itself (it then removed its own lock). A marker of a
# process that is gone (killed with -9, its restic with it) or a job of this process that ended otherwise
# means a lock may be left over: the next backup clears stale locks first. Locks of other hosts in a backup's
# way make restic refuse; the backup then clears them (actions/backup.py).
AT_WORK = "restic-at-work"
_working: dict[str, int] = {}
_left: set[str] = set()
_guard = threading.Lock()


def _markers(state_dir: Path, name: str) -> list[tuple[Path, int]]:
    out = []
    for path in (state_dir / AT_WORK).glob("*@*"):
        dest, _, pid = path.name.rpartition("@")
        if dest == name and pid.isdigit():
            out.append((path, int(pid)))
    return out


def owed(state_dir: Path, name: str) -> bool:
    """True when a restic of backupd's may have left a lock on destination `name` (see AT_WORK)."""
    with _guard:
        if name in _left:
            return True
    return any(pid != os.getpid() and not pid_running(pid) for _, pid in _markers(state_dir, name))


def settled(state_dir: Path, name: str) -> None:
    """Stale locks on `name` were cleared: forget the markers that owed it."""
    with _guard:
        _left.discard(name)
    for path, pid in _markers(state_dir, name):
        if pid != os.getpid() and not pid_running(pid):
            path.unlink(missing_ok=True)


@contextmanager
def at_work(state_dir: Path, name: str) -> Iterator[None]:
    """Marks destination `name` as worked on by this process while the block runs; the marker stays when
    the block raised (restic may have been killed with its lock in place)."""
    marker = state_dir / AT_WORK / f"{name}@{os.getpid()}"
    with _guard:
        _working[name] = _working.get(name, 0) + 1
        marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        marker.touch()
    ok = False
    try:
        yield
        ok = True
    finally:
        with _guard:
            _working[name] -= 1
            if not ok:
                _left.add(name)
            elif not _working[name] and name not in _left:
                marker.unlink(missing_ok=True)
