"""Time each phase of a drill: selection, restore, verify, probes."""

from __future__ import annotations

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
