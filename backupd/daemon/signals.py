"""Signal handlers only set flags; the main loop acts on them within one bounded sleep."""

from __future__ import annotations

import signal
import threading


class Signals:
    """`stop` is set by SIGTERM/SIGINT; `reload` by SIGHUP (cleared by whoever handles it)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.wake = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum, frame) -> None:
        self.stop.set()
        self.wake.set()

    def _on_hup(self, signum, frame) -> None:
        self.reload.set()
        self.wake.set()

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning early on any signal or wake-up."""
        self.wake.wait(max(0.0, seconds))
        self.wake.clear()
