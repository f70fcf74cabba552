"""One cgroup for every confined process of a drill: memory (swap included), task and CPU limits on the
whole drill, where the sandbox's rlimits bound each process alone.

cgroup v2: the drill's group is made beside backupd's own (which moves into a leaf, `LEAF`, so its parent
may enable controllers for children): needs root or a delegated subtree (the unit's `Delegate=yes`).
cgroup v1 (hybrid hosts): one group in each of the memory, pids and cpu hierarchies, below backupd's own.
Processes join without a race: `execute` writes each child into `Group.procs` after fork, before exec.
A group is removed after its processes are killed (`cgroup.kill` where the kernel has it, else SIGKILL to
each process listed, repeated until none is left); so is a group whose backupd was killed (`remove_stale`).
`make()` returns the reason instead of a group when none can be made (not root, no delegation); the units'
MemoryMax=/TasksMax=/CPUQuota= then bound the whole daemon.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from backupd.output import human_bytes
from backupd.process import procs

PREFIX = "backupd-drill-"
#: Where backupd moves itself on cgroup v2, so that its cgroup may have child groups with controllers.
LEAF = "backupd-main"
CONTROLLERS = ("memory", "pids", "cpu")
PERIOD_US = 100_000
#: Times backupd moves its cgroup's processes into LEAF before enabling the controllers (one forked meanwhile
#: into the cgroup makes that write fail with EBUSY).
MOVE_ATTEMPTS = 20
_seq = itertools.count(1)


@dataclass(frozen=True)
class Limits:
    """memory: bytes of RAM and swap together; tasks: processes and threads; cpu: percent of one CPU."""

    memory: int
    tasks: int
    cpu: int


@dataclass
class Group:
    """A made cgroup: `dirs` maps each limited controller to its directory (one directory on v2)."""

    version: int
    dirs: dict[str, Path]
    limits: Limits
    start: dict[str, int] = field(default_factory=dict)

    def procs(self) -> tuple[str, ...]:
        """The cgroup.procs files a process writes itself into to join every hierarchy of the group."""
        return tuple(sorted({str(d / "cgroup.procs") for d in self.dirs.values()}))

    def counts(self) -> dict[str, int]:
        """Times the limits stopped something so far: {"oom_kill": n, "pids_max": n}."""
        memory = self.dirs.get("memory")
        pids = self.dirs.get("pids")
        events = "memory.events" if self.version == 2 else "memory.oom_control"
        return {"oom_kill": _field(memory / events, "oom_kill") if memory else 0,
                "pids_max": _field(pids / "pids.events", "max") if pids else 0}

    def exceeded(self, since: dict[str, int] | None = None, what: str = "the probe") -> str | None:
        """Which limit of the drill stopped `what` since the counts `since` (default: since made), or None."""
        since = since if since is not None else self.start
        now = self.counts()
        if now["oom_kill"] > since.get("oom_kill", 0):
            return f"memory limit of the drill ({human_bytes(self.limits.memory)}) reached: {what} was killed"
        if now["pids_max"] > since.get("pids_max", 0):
            return f"task limit of the drill ({self.limits.tasks}) reached: {what} could not start a process"
        return None

    def remove(self, seconds: float = 5.0) -> bool:
        """Kill the processes still in the group and remove its directories; False when one stays."""
        return not _destroy(set(self.dirs.values()), seconds)


def _destroy(dirs, seconds: float) -> list[Path]:
    """Kill what runs in each group of `dirs` and remove it, again until `seconds` have passed (a process
    forking meanwhile, one dying slowly); returns the directories that stay."""
    end = time.monotonic() + seconds
    left = list(dirs)
    while left:
        for path in left:
            _kill(path)
        left = [d for d in left if not _rmdir(d)]
        if not left or time.monotonic() > end:
            break
        time.sleep(0.05)
    return left


def _kill(path: Path) -> None:
    """SIGKILL every process of the group at `path` (v2: cgroup.kill, which also takes those forking now)."""
    if (path / "cgroup.kill").exists():
        try:
            _write(path / "cgroup.kill", "1")
            return
        except OSError:
            pass
    try:
        pids = {int(p) for p in (path / "cgroup.procs").read_text().split()}
    except (OSError, ValueError):
        return
    for pid in pids - {os.getpid()}:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _field(path: Path, name: str) -> int:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, Path, Path, set[str]]]:
    """(fstype, hierarchy root, mount point, super options) of every cgroup and cgroup2 mount."""
    found = []
    for line in Path(mountinfo).read_text().splitlines():
        head, _, tail = line.partition(" - ")
        fields, extra = head.split(), tail.split()
        if len(fields) >= 5 and len(extra) >= 3 and extra[0] in ("cgroup", "cgroup2"):
            found.append((extra[0], Path(_unescape(fields[3])), Path(_unescape(fields[4])), set(extra[2].split(","))))
    return found


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def memberships(proc_cgroup: str = "/proc/self/cgroup") -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path."""
    found = {}
    for line in Path(proc_cgroup).read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            found[name] = path
    return found


def _inside(mount: Path, root: Path, path: str) -> Path:
    """Where cgroup `path` lies under a mount of hierarchy root `root`."""
    rel = os.path.relpath(path, str(root))
    return mount if rel == "." else mount / rel


def make(limits: Limits, mountinfo: str = "/proc/self/mountinfo",
         proc_cgroup: str = "/proc/self/cgroup") -> tuple[Group | None, str | None]:
    """A new drill group with `limits`, or (None, why not). v1 hierarchies of the controllers win over v2
    (a controller lives in one hierarchy at a time)."""
    try:
        table, mine = mounts(mountinfo), memberships(proc_cgroup)
    except (OSError, ValueError) as exc:
        return None, f"cgroups unreadable ({exc.__class__.__name__})"
    v1 = {c: (root, point) for kind, root, point, opts in table if kind == "cgroup" for c in CONTROLLERS
          if c in opts}
    name = f"{PREFIX}{os.getpid()}-{next(_seq)}"
    try:
        if v1:
            return _make_v1(limits, v1, mine, name), None
        v2 = [(root, point) for kind, root, point, _ in table if kind == "cgroup2"]
        if v2 and "" in mine:
            return _make_v2(limits, *v2[0], mine[""], name)
    except (OSError, ValueError) as exc:  # ValueError: a cgroup.procs that is not a list of PIDs
        return None, f"no cgroup for the drill ({getattr(exc, 'strerror', None) or exc})"
    return None, "no cgroup hierarchy with the memory, pids or cpu controller"


def _make_v1(limits: Limits, v1: dict, mine: dict[str, str], name: str) -> Group:
    dirs: dict[str, Path] = {}
    try:
        for controller, (root, point) in v1.items():
            parent = _inside(point, root, mine.get(controller, "/"))
            remove_stale(parent)
            dirs[controller] = parent / name
            dirs[controller].mkdir()
        if "memory" in dirs:
            _write(dirs["memory"] / "memory.limit_in_bytes", str(limits.memory))
            if (dirs["memory"] / "memory.memsw.limit_in_bytes").exists():  # swap accounting on
                _write(dirs["memory"] / "memory.memsw.limit_in_bytes", str(limits.memory))
        if "pids" in dirs:
            _write(dirs["pids"] / "pids.max", str(limits.tasks))
        if "cpu" in dirs:
            _write(dirs["cpu"] / "cpu.cfs_period_us", str(PERIOD_US))
            _write(dirs["cpu"] / "cpu.cfs_quota_us", str(limits.cpu * PERIOD_US // 100))
    except OSError:
        Group(1, dirs, limits).remove(0)
        raise
    group = Group(1, dirs, limits)
    group.start = group.counts()
    return group


def _make_v2(limits: Limits, root: Path, point: Path, own: str, name: str) -> tuple[Group | None, str | None]:
    here = _inside(point, root, own)
    base = here.parent if here.name == LEAF else here
    offered = set((base / "cgroup.controllers").read_text().split()) & set(CONTROLLERS)
    if not offered:
        return None, ("cgroup v2 without the memory, pids or cpu controller for backupd's cgroup "
                      "(the unit needs Delegate=yes)")
    if here.name != LEAF:
        refused = _into_leaf(base)
        if refused:
            return None, refused
    enabled = set((base / "cgroup.subtree_control").read_text().split())
    for attempt in range(MOVE_ATTEMPTS) if offered - enabled else ():
        try:
            _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(offered - enabled)))
            break
        except OSError as exc:  # EBUSY: a process was forked into `base` since the move; move it too
            if exc.errno != errno.EBUSY or attempt == MOVE_ATTEMPTS - 1:
                raise
        refused = _into_leaf(base)
        if refused:
            return None, refused
    remove_stale(base)
    path = base / name
    path.mkdir()
    try:
        if "memory" in offered:
            _write(path / "memory.max", str(limits.memory))
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", "0")
        if "pids" in offered:
            _write(path / "pids.max", str(limits.tasks))
        if "cpu" in offered:
            _write(path / "cpu.max", f"{limits.cpu * PERIOD_US // 100} {PERIOD_US}")
    except OSError:
        _rmdir(path)
        raise
    group = Group(2, {c: path for c in offered}, limits)
    group.start = group.counts()
    return group, None


def _into_leaf(base: Path) -> str | None:
    """Move backupd and the processes of its cgroup `base` into `base/LEAF`; the reason when it may not."""
    present = [int(p) for p in (base / "cgroup.procs").read_text().split()]
    lineage = _ancestors()
    # a service's cgroup holds only the unit's processes (its shell, a helper it started): they all
    # move; elsewhere (a login session's scope) only backupd, its children and the shell that started it
    unit = base.name.endswith(".service")
    if not unit and any(not _ours(p) and p not in lineage for p in present):
        return "other processes share backupd's cgroup (run it as the shipped unit, Delegate=yes)"
    (base / LEAF).mkdir(exist_ok=True)
    for pid in [p for p in present if (unit or p in lineage or _ours(p)) and p != os.getpid()] + [os.getpid()]:
        try:
            _write(base / LEAF / "cgroup.procs", str(pid))
        except ProcessLookupError:  # it exited meanwhile
            continue
    return None


def _ours(pid: int) -> bool:
    """True for backupd itself and its descendants (a job's restic: children made later follow it)."""
    for _ in range(64):
        if pid == os.getpid():
            return True
        pid = procs.parent(pid)
        if pid <= 1:
            return False
    return False


def _ancestors() -> set[int]:
    """backupd's parent, its parent, ... up to (not including) PID 1."""
    found, pid = set(), os.getppid()
    while pid > 1 and pid not in found and len(found) < 64:
        found.add(pid)
        pid = procs.parent(pid)
    return found


def remove_stale(parent: Path) -> None:
    """Kill the processes of drill groups whose backupd process is gone (a drill killed with -9) and remove
    those groups."""
    procs.remove_orphans(parent, PREFIX, lambda path: _destroy([path], 1.0))
