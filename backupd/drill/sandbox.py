"""A private directory for one drill: mode 0700, size-limited, always removed (also after a failure or
SIGTERM; a sandbox left behind by a killed drill is removed by the next one).

A drill's sandbox can be removed off its critical path: renamed at once to a `removing-` name in the same
parent (so no drill ever finds a half-removed `drill-` sandbox), locked (flock on the directory), and handed
to a detached reaper process (backupd.drill.reaper) that holds the lock while it removes the tree. A later
drill leaves a locked `removing-` tree alone, finishes one whose reaper died (lock free), and waits for them
when its restore would not fit otherwise."""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from backupd.errors import BackupdError, Finding
from backupd.process import execute

PREFIX = "drill-"
OWNER_FILE = ".backupd-drill-pid"
#: A sandbox being removed by a reaper (renamed from drill-...: never matched by PREFIX).
TRASH = "removing-"
#: Longest a reaper works on one sandbox; a later drill finishes what it left.
REAPER_SECONDS = 900
#: Longest a drill waits for earlier sandboxes' removal to free the space its restore needs.
FREE_WAIT_SECONDS = 300


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: rmtree passes _remove makes at most (one per level of unreadable restored directories)
REMOVE_PASSES = 32


def _remove(path: Path) -> None:
    """Remove the tree at `path` without following a symlink in it (rmtree works through directory fds);
    an entry that resists is made writable and tried again (a restored 0500 directory), never a symlink."""
    top = os.path.abspath(path)

    def writable(func, name, _exc):
        if os.path.abspath(name) == top:  # the sandbox itself (gone, or not ours): its parent stays as it is
            return
        try:
            os.chmod(os.path.dirname(name), 0o700)
            if not os.path.islink(name):  # chmod follows a link: never change what one points to
                os.chmod(name, stat.S_IRWXU)
            if func in (os.rmdir, os.unlink):  # a directory that could not be opened: the next pass lists it
                func(name)
        except OSError:
            pass
    # a restored 0000 directory can only be listed once made readable by the pass that failed to list it:
    # each pass opens one more level, so the passes are bounded by the tree's depth of such directories
    for _ in range(REMOVE_PASSES):
        if not os.path.lexists(path):
            return
        shutil.rmtree(path, onerror=writable)


def _locked(path: Path, block: bool = False, cancel: execute.Cancel | None = None) -> int | None:
    """An fd of the directory `path` (not a symlink) holding its exclusive flock; None when another
    process holds it (a reaper at work; with `block`, only after FREE_WAIT_SECONDS or once `cancel` is
    set) or it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    end = time.monotonic() + (FREE_WAIT_SECONDS if block else 0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() >= end or (cancel.wait(0.05) if cancel is not None else time.sleep(0.05)):
                os.close(fd)
                return None


def removing(parent: Path) -> list[Path]:
    """Sandboxes under `parent` handed to a reaper and not gone yet."""
    return sorted(Path(parent).glob(TRASH + "*"))


def _finish(path: Path, block: bool = False, cancel: execute.Cancel | None = None) -> bool:
    """Remove a handed-over sandbox whose reaper is gone (its lock free); True when it is gone now."""
    fd = _locked(path, block, cancel)
    if fd is None:
        return not os.path.lexists(path)
    try:
        _remove(path)
    finally:
        os.close(fd)
    return True


def hand_off(path: Path) -> Path:
    """Rename the sandbox `path` to a TRASH name in its parent and have a detached reaper remove it; returns
    the new path. Removed here (and at once) when it cannot be renamed or the reaper cannot start."""
    trash = path.with_name(TRASH + path.name[len(PREFIX):] if path.name.startswith(PREFIX) else TRASH + path.name)
    try:
        os.rename(path, trash)  # atomic: a drill sees a whole sandbox or none under its own name
    except OSError:  # not renamable (busy, parent changed): removed as before hand-offs, not an error
        _remove(path)
        return path
    fd = _locked(trash)
    if fd is None:  # another process took it already: it is being removed
        return trash
    try:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        # the backupd this process runs; -P: never the working directory's (a planted backupd package)
        env = execute.Environment(plain={"PYTHONPATH": root})
        execute.detach([sys.executable, "-P", "-m", "backupd.drill.reaper", os.path.abspath(trash), str(fd),
                        str(REAPER_SECONDS)], env, pass_fds=(fd,))  # absolute: the reaper runs in /
    except (OSError, BackupdError):
        _remove(trash)
    finally:
        os.close(fd)  # the reaper holds the lock through its copy of the fd
    return trash


def empty(path: Path) -> None:
    """Remove everything under `path` (what a stopped restore left), keeping `path` itself."""
    for entry in Path(path).iterdir():
        if entry.is_dir() and not entry.is_symlink():
            _remove(entry)
        else:
            entry.unlink()


def _owner(path: Path) -> int:
    """The pid of the drill a sandbox belongs to, from its name (drill-<pid>-...: created in the same step
    as the directory, so a concurrent drill never sees a sandbox without an owner); sandboxes of older
    versions name it in OWNER_FILE. 0 when unknown."""
    head = path.name[len(PREFIX):].split("-", 1)[0]
    if head.isdigit() and "-" in path.name[len(PREFIX):]:
        return int(head)
    try:
        return int((path / OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return 0


def remove_stale(parent: Path) -> list[str]:
    """Remove sandboxes whose drill process is gone, and handed-over ones whose reaper is gone (a locked one
    is left to its reaper); returns their paths."""
    removed = []
    for path in parent.glob(PREFIX + "*"):
        pid = _owner(path)
        if not pid or not _alive(pid):
            _remove(path)
            removed.append(str(path))
    for path in removing(parent):
        fd = _locked(path)
        if fd is not None:
            try:
                _remove(path)
            finally:
                os.close(fd)
            removed.append(str(path))
    return removed


def private_dir(path: Path, mode: int = 0o711) -> Path | None:
    """Create `path` or accept an existing one only when it is a real directory (not a symlink) owned by
    this user, then set `mode` through the opened directory; None when something else is in the way
    (another user's directory or a symlink planted in a shared /tmp)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            return None
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return Path(path)


class Sandbox:
    """`with Sandbox(parent, max_bytes) as box:` -> box.path (0700), box.restore_dir; removed on exit.
    With `detached` it is handed to a reaper on exit (hand_off: renamed at once, removed by a detached
    process that nobody waits for; unlinking a restored gigabyte takes seconds, more on a disk mounted with
    discard); `box.removed_as` is then where it is being removed."""

    def __init__(self, parent: Path, max_bytes: int, detached: bool = False, min_free: int = 0,
                 cancel: execute.Cancel | None = None):
        self.parent, self.max_bytes, self.detached = Path(parent), max_bytes, detached
        self.cancel = cancel  # ends a wait for earlier sandboxes' removal (reserve)
        self.removed_as: Path | None = None
        self.min_free = min_free  # what a restore must leave free (spec sandbox.min_free)
        self.path: Path | None = None
        self.stale_removed: list[str] = []

    @property
    def restore_dir(self) -> Path:
        return self.path / "restore"

    def __enter__(self) -> Sandbox:
        self.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.stale_removed = remove_stale(self.parent)
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=self.parent))
        os.chmod(self.path, 0o700)
        (self.path / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.restore_dir.mkdir(mode=0o700)
        return self

    def __exit__(self, *exc) -> None:
        if self.path is None or not self.path.exists():
            return
        if not self.detached:
            _remove(self.path)
            return
        self.removed_as = hand_off(self.path)

    def reserve(self, needed: int) -> None:
        """Finding when `needed` bytes exceed the sandbox limit or the free space less min_free (counted once
        the sandboxes still being removed under the same parent are gone, when they are in the way)."""
        if needed > self.max_bytes:
            raise Finding(f"drill needs {needed} bytes, over the sandbox limit of {self.max_bytes} bytes "
                          "(raise sandbox.max_bytes in the drill spec or run a sample drill)")
        free = shutil.disk_usage(self.path).free
        if needed > free - self.min_free and removing(self.parent):
            for path in removing(self.parent):
                _finish(path, block=True, cancel=self.cancel)  # released when its reaper is done (or died)
                if self.cancel is not None and self.cancel.is_set():
                    raise execute.Interrupted("drill cancelled while waiting for free space")
            free = shutil.disk_usage(self.path).free
        if needed > free - self.min_free:
            raise Finding(f"drill needs {needed} bytes but only {free} are free under {self.parent}"
                          + (f", of which it must leave {self.min_free} (sandbox.min_free)" if self.min_free else ""))

    def grant(self, user: str, *paths: Path) -> None:
        """Give `user` (e.g. postgres) the sandbox, the given paths and the directories between them."""
        if os.geteuid() != 0:
            return
        pw = pwd.getpwnam(user)
        for path in paths:
            chain = [Path(path)] + [p for p in Path(path).parents if self.path in p.parents or p == self.path]
            for item in chain:
                os.chown(item, pw.pw_uid, pw.pw_gid)


@contextmanager
def sigterm_cancels(cancel: execute.Cancel):
    """While inside, SIGTERM sets `cancel`: running children are killed and the drill unwinds through
    its `finally` blocks (cluster stopped, sandbox removed) instead of dying mid-way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
