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


class FirstEntry:
    """`with FirstEntry(dir) as first:` -> first.seconds: how long until anything appeared in `dir` (None
    if nothing did). For a restore that is restic's start-up (repository opened, index and snapshot tree
    loaded), which does not grow with the files restored; the projection keeps it fixed."""

    def __init__(self, path, poll: float = 0.02) -> None:
        self.path, self.poll = path, poll
        self.seconds: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="first-entry", daemon=True)

    def __enter__(self) -> FirstEntry:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                with os.scandir(self.path) as entries:
                    if next(entries, None) is not None:
                        self.seconds = round(time.monotonic() - self._t0, 3)
                        return
            except OSError:
                pass
            self._stop.wait(self.poll)
