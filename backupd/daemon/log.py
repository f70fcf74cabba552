"""Structured log lines on stderr: one JSON object per event (journald keeps them as they are)."""

from __future__ import annotations

import json
import sys
import threading
import time

_lock = threading.Lock()


def event(name: str, level: str = "info", **fields) -> None:
    """Write {"ts", "level", "event", ...fields} as one line. Callers never pass secrets."""
    line = json.dumps({"ts": round(time.time(), 3), "level": level, "event": name, **fields},
                      sort_keys=False, default=str)
    with _lock:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
