"""Small helpers shared by the demo stack: free ports, secret files, bounded waits, process cleanup."""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

_LIVE: set[subprocess.Popen] = set()


def free_ports(count: int) -> list[int]:
    """Return `count` distinct TCP ports currently free on 127.0.0.1 (held open until all are picked)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def write_secret(path: Path, text: str) -> Path:
    """Write `text` to `path` with mode 0600 (created with that mode, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    return path


class GaveUp(RuntimeError):
    """Raised by a probe to stop `wait_until` at once (e.g. the awaited process died)."""


def wait_until(probe: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Call `probe` until it returns True; give up after `timeout` seconds or a bounded number of tries."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        try:
            if probe():
                return True
        except GaveUp:
            raise
        except Exception:  # noqa: BLE001 - probe failures just mean "not yet"
            pass
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return False


def spawn(argv: list[str], log: Path, **kw) -> subprocess.Popen:
    """Start a long-running process in its own session, output to `log`; it is killed at interpreter exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)
    _LIVE.add(proc)
    return proc


def terminate(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop `proc` and its process group: SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc is None:
        return
    _LIVE.discard(proc)
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=5)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def log_tail(log: Path, lines: int = 30) -> str:
    """Last `lines` lines of a log file, for startup-failure messages."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        terminate(proc, timeout=3)


class Service:
    """Context-manager protocol for the stack's parts: start on enter (stopping what started if
    start fails half-way), stop on exit. Subclasses define start() and stop()."""

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
