"""The daemon's lock triage lives in backupd.actions.locks (shared with backup and check)."""

from backupd.actions.locks import (  # noqa: F401
    STALE_AFTER, Resolution, decide, describe, pid_alive, pid_started, provably_stale, resolve, restic_would_remove,
)
