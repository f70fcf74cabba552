"""What /proc says about a process (its stat fields, its parent), and the removal of what a process that is
gone left behind under a name carrying its PID (a drill's cgroup, its space reserve)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: [0] state, [1] parent PID, [19] start time
    (clock ticks since boot); None when unreadable (the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return None


def parent(pid: int) -> int:
    """The parent PID of `pid`; 0 when unknown."""
    fields = stat_fields(pid)
    try:
        return int(fields[1]) if fields else 0
    except (ValueError, IndexError):
        return 0


def remove_orphans(parent_dir: Path, prefix: str, remove: Callable[[Path], object]) -> list[Path]:
    """Call `remove` on every entry of `parent_dir` named `prefix` + <pid>[-<anything>] whose process is gone
    (its owner was killed with -9); returns those entries."""
    try:
        entries = list(Path(parent_dir).glob(prefix + "*"))
    except OSError:
        return []
    gone = []
    for entry in entries:
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            remove(entry)
            gone.append(entry)
    return gone
