"""Walking a tree an attacker may have shaped (a restored snapshot, a drill sandbox): lstat only,
never through a symlink, entries vanishing meanwhile skipped."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator


def lstat_walk(top: str) -> Iterator[tuple[str, os.stat_result]]:
    """(path, lstat) of top and every entry under it, once each, never following a symlink."""
    try:
        st = os.lstat(top)
    except OSError:
        return
    yield top, st
    stack = [top] if stat.S_ISDIR(st.st_mode) else []
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    yield entry.path, st
        except OSError:
            continue
