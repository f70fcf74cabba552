"""Defuse dangerous modes in a restored tree: a backup's content is the attacker's choice, so a setuid-root
program (or a world-writable file) planted on the source host must not land armed in the operator's directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from backupd.files.tree import lstat_walk

SETID = stat.S_ISUID | stat.S_ISGID
LIMIT = 20  # paths listed per kind; the counts are always complete


def _clear(path: str) -> bool:
    """Clear the setuid/setgid bits of the regular file at path (never through a link); True when done."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~SETID)
        return stat.S_ISREG(st.st_mode)
    except OSError:
        return False
    finally:
        os.close(fd)


def _tops(root: str, paths: list[str] | None) -> list[str]:
    """Where restic restored `paths` (a snapshot's paths) under root, reached without a symlink, nested
    ones dropped; [root] without paths. Keeps a restore --force into / from walking the whole host."""
    if paths is None:
        return [root]
    real = os.path.realpath(root)
    tops = sorted({os.path.normpath(os.path.join(real, p.lstrip("/"))) for p in paths})
    inside = [t for t in tops if _under(t, real) and os.path.realpath(t) == t]
    return [t for i, t in enumerate(inside) if not any(_under(t, o) for o in inside[:i])]


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def defuse(root: Path, keep_setid: bool = False, paths: list[str] | None = None) -> dict:
    """Find setuid/setgid regular files (bits cleared unless keep_setid) and world-writable files and
    directories without the sticky bit under root (only under the snapshot's `paths` when given): complete
    counts, a warning for each of the first LIMIT of each kind."""
    counts = {"setid_cleared": 0, "setid_kept": 0, "setid_failed": 0, "world_writable": 0}
    warnings: list[str] = []
    for path, st in (found for top in _tops(str(root), paths) for found in lstat_walk(top)):
        kind = _kind(path, st.st_mode, keep_setid)
        for k in filter(None, (kind, _writable(st.st_mode))):
            counts[k] += 1
            if counts[k] <= LIMIT:
                warnings.append(f"{WHAT[k]} {path} (was {oct(stat.S_IMODE(st.st_mode))}, owner uid {st.st_uid})")
    warnings += [f"... and {n - LIMIT} more: {WHAT[k]} (not listed)" for k, n in counts.items() if n > LIMIT]
    return {**counts, "warnings": warnings}


WHAT = {"setid_cleared": "cleared setuid/setgid of", "setid_kept": "kept setuid/setgid (--keep-setuid) of",
        "setid_failed": "could not clear setuid/setgid of", "world_writable": "world-writable, no sticky bit:"}


def _kind(path: str, mode: int, keep_setid: bool) -> str | None:
    """What happened to a setuid/setgid regular file (None for any other entry)."""
    if not (stat.S_ISREG(mode) and mode & SETID):
        return None
    if keep_setid:
        return "setid_kept"
    return "setid_cleared" if _clear(path) else "setid_failed"


def _writable(mode: int) -> str | None:
    writable = (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and mode & stat.S_IWOTH and not mode & stat.S_ISVTX
    return "world_writable" if writable else None
