"""Signal handlers only set flags; the main loop acts on them when it wakes.

The main loop sleeps in select() on a pipe that is also Python's signal wake-up fd: the kernel may
deliver SIGTERM/SIGHUP to any thread (workers, the alert sender, the metrics server), and Python runs
handlers only in the main thread, so without the pipe a long idle sleep would not notice the signal.
Workers write to the same pipe (`wake.set()`) when they finish.
"""

from __future__ import annotations

import os
import select
import signal
import threading


class _Wake:
    """`set()` wakes the main loop from any thread (one byte into the pipe; a full pipe wakes it too)."""

    def __init__(self, fd: int):
        self._fd = fd

    def set(self) -> None:
        try:
            os.write(self._fd, b"w")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (the loop will wake) or closed (we are exiting)


class Signals:
    """`stop` is set by SIGTERM/SIGINT; `reload` by SIGHUP (cleared by whoever handles it)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self.wake = _Wake(self._write)

    def install(self) -> None:
        """Call from the main thread before any other thread starts."""
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum, frame) -> None:
        self.stop.set()
        self.wake.set()  # the handler may run just after the loop drained the pipe: wake it again

    def _on_hup(self, signum, frame) -> None:
        self.reload.set()
        self.wake.set()

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning early on any signal or wake-up (no polling in between)."""
        if self.stop.is_set() or self.reload.is_set():
            return
        try:
            select.select([self._read], [], [], max(0.0, seconds))
        except InterruptedError:
            pass
        while True:
            try:
                if not os.read(self._read, 4096):
                    return
            except BlockingIOError:
                return
