"""The one place where backupd spawns a subprocess.

Every child runs in its own process group so a timeout or cancellation kills the whole tree
(restic and anything a dump command started). Secrets reach children only through the
environment or files, never argv, and are scrubbed from any captured output.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from backupd.errors import DependencyError

#: Variables a child inherits from our own environment; everything else is explicit.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")
KILL_GRACE_SECONDS = 10.0
PR_SET_PDEATHSIG = 1
CHUNK = 1 << 20


@dataclass
class Completed:
    """Outcome of one child: argv (safe to log), exit code, captured output, duration."""

    argv: list[str]
    returncode: int
    stdout: bytes = b""
    stderr: str = ""
    duration: float = 0.0
    timed_out: bool = False
    cancelled: bool = False


@dataclass
class Environment:
    """Environment for a child: plain variables plus secret ones that are scrubbed from output."""

    plain: dict[str, str] = field(default_factory=dict)
    secret: dict[str, str] = field(default_factory=dict)

    def build(self) -> dict[str, str]:
        """The full child environment: a minimal inherited base plus ours."""
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env.setdefault("LANG", "C.UTF-8")
        env.update(self.plain)
        env.update(self.secret)
        return env

    def scrub(self, text: str) -> str:
        """Replace every secret value in text by a marker."""
        for value in self.secret.values():
            if value and len(value) >= 4:
                text = text.replace(value, "[REDACTED]")
        return text


class Cancel:
    """A flag shared with running children; `set()` terminates them (e.g. on SIGTERM)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the spawning thread dies.

    Used for the consumer of a pipeline: if backupd itself is killed mid-dump, restic must not
    read end-of-input and commit a truncated dump as a good snapshot. (The kernel closes the dead
    parent's pipe microseconds before the signal arrives; restic needs far longer to commit.)
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the consumer is still killed on every failure path we observe


def _spawn(argv: list[str], env: Environment, stdin, stdout, cwd=None, *,
           die_with_parent: bool = False) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env.build(),
            cwd=cwd, start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    except FileNotFoundError:
        raise DependencyError(f"{argv[0]}: program not found; install it or fix its path") from None
    except PermissionError:
        raise DependencyError(f"{argv[0]}: not executable") from None


def kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_SECONDS) -> None:
    """Stop the child's process group: SIGINT, then SIGTERM, then SIGKILL.

    SIGINT first because restic removes its repository lock only on SIGINT; a SIGTERM'd restic
    leaves a lock behind that blocks later check and forget runs.
    """
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, grace / 2), (signal.SIGTERM, grace / 2), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Drain(threading.Thread):
    """Reads a pipe to the end in the background, so a chatty child never blocks on it."""

    def __init__(self, pipe, on_line: Callable[[bytes], None] | None = None, keep: bool = True):
        super().__init__(daemon=True)
        self.pipe, self.on_line, self.keep = pipe, on_line, keep
        self.chunks: list[bytes] = []

    def run(self) -> None:
        for line in iter(self.pipe.readline, b""):
            if self.on_line:
                self.on_line(line)
            if self.keep:
                self.chunks.append(line)
        self.pipe.close()

    def data(self) -> bytes:
        self.join()
        return b"".join(self.chunks)


def _wait(procs: list[subprocess.Popen], deadline: float | None, cancel: Cancel | None) -> tuple[bool, bool]:
    """Wait for all procs; on timeout or cancel kill them. Returns (timed_out, cancelled)."""
    while any(p.poll() is None for p in procs):
        if cancel is not None and cancel.is_set():
            for p in procs:
                kill_group(p)
            return False, True
        if deadline is not None and time.monotonic() > deadline:
            for p in procs:
                kill_group(p)
            return True, False
        try:  # returns the moment the child exits, unlike a fixed sleep
            next(p for p in procs if p.poll() is None).wait(timeout=0.05)
        except (subprocess.TimeoutExpired, StopIteration):
            pass
    return False, False


def run(
    argv: list[str],
    env: Environment | None = None,
    *,
    timeout: float | None = None,
    cancel: Cancel | None = None,
    on_stdout_line: Callable[[bytes], None] | None = None,
    keep_stdout: bool = True,
    cwd: str | None = None,
) -> Completed:
    """Run argv to completion, capturing stdout (bytes) and stderr (text, secrets scrubbed)."""
    env = env or Environment()
    start = time.monotonic()
    proc = _spawn(argv, env, subprocess.DEVNULL, subprocess.PIPE, cwd)
    out, err = _Drain(proc.stdout, on_stdout_line, keep_stdout), _Drain(proc.stderr)
    out.start(), err.start()
    deadline = start + timeout if timeout else None
    timed_out, cancelled = _wait([proc], deadline, cancel)
    return Completed(
        argv=list(argv), returncode=proc.wait(), stdout=out.data(),
        stderr=env.scrub(err.data().decode("utf-8", "replace")),
        duration=time.monotonic() - start, timed_out=timed_out, cancelled=cancelled,
    )


@dataclass
class PipelineResult:
    """Outcome of producer | consumer: both children's results."""

    producer: Completed
    consumer: Completed
    bytes: int


def run_pipeline(
    producer: list[str],
    consumer: list[str],
    *,
    producer_env: Environment,
    consumer_env: Environment,
    tap: Callable[[bytes], None] | None = None,
    timeout: float | None = None,
    cancel: Cancel | None = None,
    on_stdout_line: Callable[[bytes], None] | None = None,
) -> PipelineResult:
    """Stream producer's stdout into consumer's stdin through `tap`.

    The consumer's stdin is closed only after the producer exited with 0. If the producer
    fails, dies or times out, the consumer is killed before it sees end-of-input, so a
    streaming `restic backup --stdin` never commits a snapshot of a truncated dump.
    """
    start = time.monotonic()
    deadline = start + timeout if timeout else None
    cons = _spawn(consumer, consumer_env, subprocess.PIPE, subprocess.PIPE, die_with_parent=True)
    try:
        prod = _spawn(producer, producer_env, subprocess.DEVNULL, subprocess.PIPE)
    except BaseException:
        kill_group(cons, grace=1.0)
        raise
    drains = [_Drain(cons.stdout, on_stdout_line), _Drain(cons.stderr), _Drain(prod.stderr)]
    for d in drains:
        d.start()
    guard = _Watchdog(prod, deadline, cancel)
    guard.start()
    total, broken = _pump(prod, cons, tap)
    timed_out, cancelled = _wait([prod], deadline, cancel)
    guard.stop.set()
    timed_out, cancelled = timed_out or guard.timed_out, cancelled or guard.cancelled
    prod_rc = prod.wait()
    if prod_rc != 0 or broken or timed_out or cancelled:
        kill_group(cons, grace=2.0)
    else:
        _close(cons.stdin)
        t2, c2 = _wait([cons], deadline, cancel)
        timed_out, cancelled = timed_out or t2, cancelled or c2
    cons_rc = cons.wait()
    end = time.monotonic() - start
    return PipelineResult(
        producer=Completed(list(producer), prod_rc, b"",
                           producer_env.scrub(drains[2].data().decode("utf-8", "replace")),
                           end, timed_out, cancelled),
        consumer=Completed(list(consumer), cons_rc, drains[0].data(),
                           consumer_env.scrub(drains[1].data().decode("utf-8", "replace")),
                           end, timed_out, cancelled),
        bytes=total,
    )


class _Watchdog(threading.Thread):
    """Kills a producer that outlives its deadline or is cancelled, even while it is silent."""

    def __init__(self, proc, deadline, cancel):
        super().__init__(daemon=True)
        self.proc, self.deadline, self.cancel = proc, deadline, cancel
        self.stop = threading.Event()
        self.timed_out = self.cancelled = False

    def run(self) -> None:
        while not self.stop.wait(0.1):
            if self.cancel is not None and self.cancel.is_set():
                self.cancelled = True
            elif self.deadline is not None and time.monotonic() > self.deadline:
                self.timed_out = True
            else:
                continue
            kill_group(self.proc, grace=2.0)
            return


def _pump(prod, cons, tap) -> tuple[int, bool]:
    """Copy producer stdout to consumer stdin; returns (bytes copied, consumer broke)."""
    total = 0
    read = prod.stdout.read1 if hasattr(prod.stdout, "read1") else prod.stdout.read
    while True:
        chunk = read(CHUNK)
        if not chunk:
            return total, False
        if tap:
            tap(chunk)
        try:
            cons.stdin.write(chunk)
        except (BrokenPipeError, OSError):
            kill_group(prod, grace=2.0)
            return total, True
        total += len(chunk)


def _close(pipe) -> None:
    try:
        pipe.close()
    except (BrokenPipeError, OSError):
        pass


def iter_json_lines(data: bytes) -> Iterable[dict]:
    """Parse newline-delimited JSON, skipping lines that are not JSON objects."""
    import json

    for line in data.splitlines():
        line = line.strip()
        if not line.startswith(b"{"):
            continue
        try:
            yield json.loads(line)
        except ValueError:
            continue


def env_from(mapping: Mapping[str, str], secret_keys: Iterable[str]) -> Environment:
    """Split a mapping into plain and secret variables."""
    secret_keys = set(secret_keys)
    return Environment(
        plain={k: v for k, v in mapping.items() if k not in secret_keys},
        secret={k: v for k, v in mapping.items() if k in secret_keys},
    )
