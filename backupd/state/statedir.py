"""state_dir is private: 0700 directories and 0600 files, owned by the user backupd runs as.

It holds job history, manifests (every backed-up path and hash), the hash cache, restic's cache and the
evidence signing key. ``ensure_private(state_dir)`` runs at every command's start: it creates the
directory 0700, refuses one owned by another user (exit 2; root is warned instead, since incident restores
run as root on the service's state), and tightens a directory found open to group or others, or not yet
migrated, with everything below it. Returns warnings: what it changed, or whose directory root is using.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from backupd.errors import ConfigError

#: Written once everything below state_dir was made private; later runs check only the top directory.
MARKER = ".private"
UMASK = 0o077


def ensure_private(state_dir: Path) -> list[str]:
    """Create or check state_dir; returns notes about what was tightened. ConfigError when unusable."""
    state_dir = Path(state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = state_dir.stat()
    except OSError as exc:
        raise ConfigError(f"state_dir {state_dir}: cannot create or open it ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"state_dir {state_dir}: not a directory")
    notes = []
    if st.st_uid != os.geteuid():
        if os.geteuid() != 0:
            raise ConfigError(f"state_dir {state_dir} belongs to uid {st.st_uid}, not to this user "
                              f"(uid {os.geteuid()}); run backupd as the owner of its state, or chown it")
        notes.append(f"state_dir {state_dir} belongs to uid {st.st_uid}; files root creates there stay root's "
                     "and the service cannot write them: prefer runuser -u <that user> -- backupd ...")
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if not loose and (state_dir / MARKER).exists():
        return notes
    changed = _tighten(state_dir)
    try:
        (state_dir / MARKER).touch(mode=0o600)
    except OSError as exc:
        raise ConfigError(f"state_dir {state_dir}: not writable ({exc.strerror or exc})") from None
    if not loose and not changed:
        return notes
    return notes + [f"state_dir {state_dir} was readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}, "
            f"{changed} item(s) inside); made it private: 0700 directories, 0600 files"]


def _tighten(top: Path) -> int:
    """chmod go-rwx on top and everything below (symlinks untouched); returns how many items changed.
    Items another user owns (a drill's sandbox handed to postgres) are left to their own code."""
    changed = 0
    for path in [top, *_walk(top)]:
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                continue
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700 | (0o700 if stat.S_ISDIR(st.st_mode) else 0))
            changed += path != top
        except OSError:
            continue
    return changed


def _walk(top: Path):
    for root, dirs, files in os.walk(top, followlinks=False):
        for name in dirs + files:
            yield Path(root) / name
