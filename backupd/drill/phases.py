"""Time each phase of a drill: selection, restore, verify, probes."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager


class PhaseTimer:
    """Records wall-clock seconds per named phase, in order, even when a phase raises."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.monotonic() - t0, 3)

    @property
    def total(self) -> float:
        return round(sum(self.phases.values()), 3)


class FirstFile:
    """`with FirstFile(dir) as first:` -> first.seconds: how long until the first regular file appeared
    under `dir` (None if none did). restic's restore first opens the repository, loads index and
    snapshot tree and walks it (creating directories, matching --include patterns), and only then
    writes file contents: that start-up does not grow with the bytes restored, and with a sample's
    hundreds of include patterns it is most of a small restore. The projection keeps it fixed."""

    def __init__(self, path, poll: float = 0.05) -> None:
        self.path, self.poll = path, poll
        self.seconds: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="first-file", daemon=True)

    def __enter__(self) -> FirstFile:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.seconds is None and self._any_file():  # written and done between two looks
            self.seconds = round(max(time.monotonic() - self._t0 - self.poll / 2, 0.0), 3)

    def _any_file(self) -> bool:
        stack = [self.path]
        while stack:
            try:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        if entry.is_file(follow_symlinks=False):
                            return True
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
            except OSError:
                continue
        return False

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self._any_file():
                self.seconds = round(time.monotonic() - self._t0, 3)
                return
            self._stop.wait(self.poll)


def bytes_read() -> int | None:
    """Bytes read by this process and the children it reaped (rchar of /proc/self/io: the kernel adds a
    reaped child's I/O to its parent's); around a restore, what restic fetched (network, cache). None
    where /proc does not say."""
    try:
        with open("/proc/self/io", encoding="ascii") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))
    except (OSError, StopIteration, ValueError):
        return None
