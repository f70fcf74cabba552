"""The detached process that removes a drill's handed-over sandbox (sandbox.hand_off):

    python -m backupd.drill.reaper PATH FD SECONDS

PATH is the renamed sandbox (a `removing-` directory), FD the inherited descriptor of that directory that
holds its flock (a later drill leaves the tree alone while it is held, finishes it once it is released).
Only PATH is removed, and only when FD is that very directory: the tree is walked through directory fds,
never through a symlink. Runs at low CPU priority and at most SECONDS (SIGALRM ends it; the lock goes with
it). Imports nothing but the sandbox module: it starts in a few milliseconds."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from backupd.drill.sandbox import TRASH, _remove


def _same(path: Path, fd: int) -> bool:
    """PATH is a real directory named as a handed-over sandbox and is the directory FD holds."""
    try:
        here, held = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (path.name.startswith(TRASH) and os.path.samestat(here, held)
            and not os.path.islink(path) and os.path.isdir(path))


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[1].isdigit() or not argv[2].isdigit():
        return 2
    path, fd, seconds = Path(argv[0]), int(argv[1]), int(argv[2])
    if not _same(path, fd):
        return 1
    signal.alarm(max(1, seconds))  # bounded: the default action ends the process, releasing the lock
    try:
        os.nice(10)  # the next drill's restore and hashing come first
    except OSError:
        pass
    _remove(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
