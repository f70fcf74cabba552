"""What one drill may use of the host, so restored data (a trojaned program, a probe command, a dump fed
to the throw-away server) cannot exhaust it: the drill's cgroup (memory with swap, tasks, CPU of every
confined process together), a disk watchdog and a space reserve in state_dir.

The watchdog (a thread) stops the drill when the sandbox holds more than `sandbox.max_bytes` or the
free space of the sandbox's or state_dir's filesystem falls below `sandbox.min_free`. Each tick (0.25 s)
costs two statvfs calls; the sandbox's usage is walked when the filesystem's free space says it may have
passed its bound, and otherwise now and then, never taking more than `BUDGET` of one CPU (a walk's time
sets the pause before the next one). A watchdog that cannot read a filesystem's free space (statvfs
fails) stops the drill naming the error: a drill never runs unwatched. The reserve, a preallocated file in
state_dir (one per drill, named by PID and a sequence number: drills of one process run side by side), is
released just before the drill's record is written, so that record always finds room.

The drill's report takes `Guard.describe()` when the drill starts and again when the guard exits: a cgroup
that could not be removed (a process of it survived SIGKILL) is named in the report and its evidence.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

from backupd.drill.sandbox import empty
from backupd.errors import Finding
from backupd.files.tree import lstat_walk
from backupd.output import human_bytes as human
from backupd.process import cgroups, execute, procs

TICK = 0.25
#: Share of one CPU the usage walks may take (drills must not slow down measurably).
BUDGET = 0.05
#: Seconds between usage walks when the free space gives no reason for one.
WALK_EVERY = 5.0
RESERVE_BYTES = 32 << 20
RESERVE_PREFIX = ".drill-reserve-"
#: Free inodes a filesystem keeps (a filler of empty files exhausts those, not bytes).
MIN_INODES = 4096
_reserve_seq = itertools.count(1)


class LimitReached(Finding):
    """The drill was stopped: it reached its disk limit or the host's free space its reserve."""


class DrillCancel(execute.Cancel):
    """Set when the drill's limits stop it, or when the caller's cancel (SIGTERM) is."""

    def __init__(self, outer: execute.Cancel):
        super().__init__()
        self.outer = outer

    @property
    def signum(self):
        return self.outer.signum

    @signum.setter
    def signum(self, value) -> None:
        pass  # the caller's cancel carries the signal

    def is_set(self) -> bool:
        return super().is_set() or self.outer.is_set()

    def wait(self, seconds: float) -> bool:
        end = time.monotonic() + max(0.0, seconds)
        while not self.is_set() and time.monotonic() < end:
            super().wait(min(TICK, end - time.monotonic()))
        return self.is_set()


def usage(top: Path) -> int:
    """Bytes allocated under `top` (symlinks not followed; files vanishing meanwhile skipped)."""
    return sum(st.st_blocks * 512 for _, st in lstat_walk(str(top)))


def free(path: Path) -> tuple[int, int | None]:
    """(bytes free to us, inodes free or None when the filesystem has no inode count) at `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, (st.f_favail if st.f_files else None)


class DiskWatch(threading.Thread):
    """Sets `cancel` with `reason` when `top` holds more than `bound` bytes or a filesystem of `places`
    has less than `min_free` bytes (or MIN_INODES inodes) free."""

    def __init__(self, top: Path, bound: int, min_free: int, places: list[Path], cancel: DrillCancel):
        super().__init__(daemon=True, name="drill-disk-watch")
        self.top, self.bound, self.min_free, self.places, self.cancel = top, bound, min_free, places, cancel
        self.halt = threading.Event()
        self.reason: str | None = None

    def trip(self, reason: str) -> None:
        self.reason = reason
        self.cancel.set()

    def run(self) -> None:
        try:
            self._watch()
        except OSError as exc:  # fail closed: a drill the watchdog cannot see is stopped
            if not self.halt.is_set():
                where = exc.filename or "a filesystem of the drill"
                self.trip(f"the drill's disk watchdog could not read the free space of {where} "
                          f"({exc.strerror or exc}); the drill was stopped")

    def _watch(self) -> None:
        walked, base, due, allowed = self._walk()
        while not self.halt.wait(TICK) and self.reason is None:
            if self._short_of_space():
                return
            # what the sandbox's filesystem lost since the last walk may all be the sandbox's
            estimate = walked + max(0, base - free(self.top)[0])
            now = time.monotonic()
            if (estimate > self.bound and now >= allowed) or now >= due:
                walked, base, due, allowed = self._walk()
                if walked > self.bound:
                    self.trip(f"disk limit of the drill ({human(self.bound)}, sandbox.max_bytes) reached: "
                              f"the sandbox held {human(walked)}; the drill was stopped")

    def _walk(self) -> tuple[int, int, float, float]:
        """(usage, free bytes then, when the next walk is due, earliest time a forced one may start)."""
        start = time.monotonic()
        walked, base = usage(self.top), free(self.top)[0]
        end = time.monotonic()
        pause = (end - start) / BUDGET
        return walked, base, end + max(WALK_EVERY, pause), end + pause

    def _short_of_space(self) -> bool:
        for place in self.places:
            space, inodes = free(place)
            if space < self.min_free or (inodes is not None and inodes < MIN_INODES):
                self.trip(f"free space under {place} fell below the drill's reserve (sandbox.min_free "
                          f"{human(self.min_free)}): {human(space)} and {inodes} inodes left; "
                          "the drill was stopped")
                return True
        return False


def reserve(state_dir: Path) -> Path | None:
    """A preallocated file of RESERVE_BYTES in state_dir, this drill's own (stale ones of dead drills
    removed); None when the filesystem cannot preallocate."""
    procs.remove_orphans(Path(state_dir), RESERVE_PREFIX, _unlink)
    path = Path(state_dir) / f"{RESERVE_PREFIX}{os.getpid()}-{next(_reserve_seq)}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError:
        return None
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError:
        path.unlink(missing_ok=True)
        return None
    finally:
        os.close(fd)
    return path


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def cpu_default() -> int:
    """90 % of the CPUs this process may use, in percent of one CPU."""
    return max(100, 90 * len(os.sched_getaffinity(0)))


class Guard:
    """`with Guard(box, spec.sandbox, state_dir, cancel) as guard:` the drill's cgroup (`guard.group`, for
    the jail), the disk watchdog and the reserve. Use `guard.cancel` for every child of the drill. On exit
    what still runs in the cgroup is killed, the cgroup removed and the reserve released (also when entering
    fails part-way); when the watchdog stopped the drill, the sandbox's
    content is removed and LimitReached raised in place of whatever the stop caused."""

    def __init__(self, box, sandbox, state_dir: Path, cancel: execute.Cancel):
        self.box, self.spec, self.state_dir = box, sandbox, Path(state_dir)
        self.cancel = DrillCancel(cancel)
        self.limits = cgroups.Limits(memory=sandbox.memory_max, tasks=sandbox.tasks_max,
                                     cpu=sandbox.cpu or cpu_default())
        self.group: cgroups.Group | None = None
        self.note: str | None = None  # why there is no cgroup
        self.left: str | None = None  # the cgroup stayed after the drill
        self.watch: DiskWatch | None = None
        self.reserved: Path | None = None
        self.report: dict | None = None
        self.removed = False

    def __enter__(self) -> Guard:
        places = [self.box.path] + ([self.state_dir] if _device(self.state_dir) != _device(self.box.path) else [])
        for place in places:
            space = free(place)[0]
            if space < self.spec.min_free:
                raise LimitReached(f"only {human(space)} free under {place}, less than the drill's reserve "
                                   f"(sandbox.min_free {human(self.spec.min_free)}); the drill did not start")
        self.reserved = reserve(self.state_dir)
        try:
            self.group, self.note = cgroups.make(self.limits)
            self.watch = DiskWatch(self.box.path, self.spec.max_bytes, self.spec.min_free, places, self.cancel)
            self.watch.start()
        except BaseException:  # what was set up is undone: no reserve, cgroup or thread left behind
            self._release()
            raise
        return self

    def describe(self) -> dict:
        """The drill's limits for its report; `note` says why a limit is not in force, or that the drill's
        cgroup stayed behind."""
        return {"cgroup": f"v{self.group.version}" if self.group else None,
                "memory_max": self.limits.memory, "tasks_max": self.limits.tasks, "cpu_percent": self.limits.cpu,
                "max_bytes": self.spec.max_bytes, "min_free": self.spec.min_free,
                "note": self.left if self.group else f"{self.note}: the drill's memory, tasks and CPU are bounded "
                                                     "only by the service unit (MemoryMax=, TasksMax=, CPUQuota=)"}

    def describe_into(self, report: dict) -> None:
        """report["limits"] = describe(), now and again when the guard exits (before the record is written)."""
        self.report = report
        report["limits"] = self.describe()

    def exceeded(self, problems: list[str]) -> list[str]:
        """A cgroup limit reached during the drill that no problem names yet (a server killed)."""
        hit = self.group.exceeded(what="a process of the drill") if self.group else None
        return [hit] if hit and not any("limit of the drill" in p for p in problems) else []

    def __exit__(self, kind, exc, tb) -> None:
        self._stop_watch()
        self._remove_group()
        if self.report is not None:
            self.report["limits"] = self.describe()
        reason = self.watch.reason
        if reason is not None:
            empty(self.box.path)  # the record that follows needs the space
        self._release()
        if reason is not None and not (kind is not None and issubclass(kind, KeyboardInterrupt)):
            raise LimitReached(reason) from None

    def _stop_watch(self) -> None:
        if self.watch is not None and self.watch.is_alive():
            self.watch.halt.set()
            self.watch.join()

    def _remove_group(self) -> None:
        """Kill what still runs in the drill's cgroup and remove it (once); `left` names one that stays."""
        group, self.removed = (None if self.removed else self.group), True
        if group is not None and not group.remove():
            where = ", ".join(sorted({str(d) for d in group.dirs.values() if d.exists()}))
            self.left = f"the drill's cgroup could not be removed: a process of it still runs after SIGKILL ({where})"

    def _release(self) -> None:
        """Stop the watchdog, remove the cgroup and release the reserve."""
        self._stop_watch()
        self._remove_group()
        if self.reserved is not None:
            _unlink(self.reserved)


def _device(path: Path) -> int:
    return os.stat(path).st_dev

