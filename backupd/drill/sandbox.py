"""A private directory for one drill: mode 0700, size-limited, always removed (also after a failure or
SIGTERM; a sandbox left behind by a killed drill is removed by the next one)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from backupd.errors import Finding
from backupd.process import execute

PREFIX = "drill-"
OWNER_FILE = ".backupd-drill-pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    def writable(func, name, _exc):
        try:
            os.chmod(os.path.dirname(name), 0o700)
            os.chmod(name, stat.S_IRWXU)
            func(name)
        except OSError:
            pass
    shutil.rmtree(path, onerror=writable)


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
    """Remove sandboxes whose drill process is gone; returns their paths."""
    removed = []
    for path in parent.glob(PREFIX + "*"):
        pid = _owner(path)
        if not pid or not _alive(pid):
            _remove(path)
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
    With `removals` (a list) the removal runs in a thread appended to it, which the caller joins (a drill
    records and reports meanwhile: unlinking a restored tree is slow on a disk mounted with discard); the
    thread is not a daemon, so even an exiting process finishes it."""

    def __init__(self, parent: Path, max_bytes: int, removals: list[threading.Thread] | None = None,
                 min_free: int = 0):
        self.parent, self.max_bytes, self.removals = Path(parent), max_bytes, removals
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
        if self.removals is None:
            _remove(self.path)
            return
        thread = threading.Thread(target=_remove, args=(self.path,), name="sandbox-remove")
        thread.start()
        self.removals.append(thread)

    def reserve(self, needed: int) -> None:
        """Finding when `needed` bytes exceed the sandbox limit or the free space less min_free."""
        if needed > self.max_bytes:
            raise Finding(f"drill needs {needed} bytes, over the sandbox limit of {self.max_bytes} bytes "
                          "(raise sandbox.max_bytes in the drill spec or run a sample drill)")
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
