"""Untrusted text (a name or setting a restored dump planted, a server's error) made safe to show: no
terminal escape, no line break, bounded. Imports nothing of backupd, so every layer may use it."""

from __future__ import annotations

import re

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def printable(text: str, limit: int = 200) -> str:
    """text with every character outside printable ASCII (controls, DEL, C1, any non-ASCII) as `?`,
    cut to limit characters."""
    return _UNPRINTABLE.sub("?", text)[:limit]
