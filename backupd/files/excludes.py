"""restic-style exclude patterns, so the manifest lists exactly what restic stores.

A pattern is matched component by component with shell globbing (`*` stays inside one
component, `**` spans any number). A pattern starting with `/` is anchored at the root;
any other pattern may match at any depth. Matching a directory excludes all below it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase


def _match(pattern: list[str], parts: list[str]) -> bool:
    """True when pattern matches a prefix of parts."""
    if not pattern:
        return True
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], head) and _match(rest, parts[1:])


def is_excluded(path: str, patterns: list[str]) -> bool:
    """True when any restic-style pattern excludes path (an absolute path)."""
    parts = [p for p in path.split("/") if p]
    for pattern in patterns:
        anchored = pattern.startswith("/")
        pat = [p for p in pattern.strip("/").split("/") if p]
        starts = [0] if anchored else range(len(parts))
        if pat and any(_match(pat, parts[i:]) for i in starts):
            return True
    return False
