"""The one place where backupd spawns a subprocess.

Every child runs in its own process group so a timeout or cancellation kills the whole tree
(restic and anything a dump command started), and gets SIGKILL when the thread that started it
dies, so no child outlives a killed backupd. Every wait is bounded: by the call's timeout and by
the job deadline of the calling thread (`deadline()`). Secrets reach children only through the
environment or files, never argv, and are scrubbed from any captured output.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, wait
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

from backupd.errors import BackupdError, DependencyError

#: Variables a child inherits from our own environment; everything else is explicit.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")
KILL_GRACE_SECONDS = 10.0
PR_SET_PDEATHSIG = 1
CHUNK = 1 << 20
T = TypeVar("T")


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
    limit: float | None = None  # seconds the child was allowed (call timeout or job deadline)
    truncated: bool = False  # output beyond run(max_output=) was dropped
    exceeded: str | None = None  # the resource limit of its cgroup the child reached (set by the sandbox)


class Interrupted(BackupdError):
    """Nothing was started: the caller was cancelled (SIGTERM/SIGINT) before the child could run."""


class DeadlineExceeded(DependencyError):
    """Nothing was started: the job's deadline has passed."""


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
        """Replace every secret value in text by a marker (longest first, so no fragment survives)."""
        for value in sorted(self.secret.values(), key=len, reverse=True):
            if value and len(value) >= 4:
                text = text.replace(value, "[REDACTED]")
        return text


class Cancel:
    """A flag shared with running children; `set()` terminates them (e.g. on SIGTERM).
    `signum` is the signal that set it, when one did."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None
        self.set_at: float | None = None  # monotonic time of the first set()

    def set(self) -> None:
        if self.set_at is None:
            self.set_at = time.monotonic()
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True (at once) when cancelled meanwhile."""
        return self._event.wait(max(0.0, seconds))


@contextlib.contextmanager
def cancel_on_signals(signals=(signal.SIGTERM, signal.SIGINT)) -> Iterator[Cancel]:
    """Within the block, SIGTERM/SIGINT only set the yielded Cancel: running children are stopped
    the gentle way (restic gets SIGINT and removes its lock) and the caller finishes its records.
    Main thread only; the previous handlers come back afterwards."""
    cancel = Cancel()

    def handler(signum, frame):
        cancel.signum = cancel.signum or signum
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield cancel
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


_local = threading.local()


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Bound every child this thread starts within the block to end `seconds` from now
    (nested deadlines keep the earlier one). None: no job deadline."""
    before = getattr(_local, "deadline", None)
    if seconds is not None:
        mine = time.monotonic() + seconds
        _local.deadline = mine if before is None else min(before, mine)
    try:
        yield
    finally:
        _local.deadline = before


@contextlib.contextmanager
def cancelled_by(cancel: Cancel | None) -> Iterator[None]:
    """Within the block, every child this thread starts also stops when `cancel` is set, including
    those of engine calls that take no cancel of their own (SIGTERM during `restic cat config`)."""
    before = getattr(_local, "cancel", None)
    _local.cancel = cancel if before is None else (before if cancel is None else _Either(before, cancel))
    try:
        yield
    finally:
        _local.cancel = before


class _Either:
    """Set when any of its cancels is."""

    def __init__(self, *cancels) -> None:
        self.cancels = cancels

    def is_set(self) -> bool:
        return any(c.is_set() for c in self.cancels)

    @property
    def set_at(self) -> float | None:
        times = [c.set_at for c in self.cancels if c.is_set() and getattr(c, "set_at", None) is not None]
        return min(times) if times else None


def _with_ambient(cancel):
    """The call's cancel combined with the thread's (cancelled_by)."""
    ambient = getattr(_local, "cancel", None)
    if ambient is None or ambient is cancel:
        return cancel
    return ambient if cancel is None else _Either(cancel, ambient)


#: How often a caller waiting on a blocking call checks its cancel (signal handlers run in between).
POLL_SECONDS = 0.1


def current_cancel():
    """This thread's cancel (cancelled_by), or None: to hand to worker threads, which do not inherit it."""
    return getattr(_local, "cancel", None)


def cancelled(grace: float = 0.0) -> bool:
    """True when this thread's cancel (cancelled_by) is set, `grace` seconds ago or longer: a long loop of our
    own (hashing) stops there."""
    ambient = getattr(_local, "cancel", None)
    return ambient is not None and _past_grace(ambient, grace)


def interruptible(fn: Callable[[], T], what: str, cancel: Cancel | None = None, grace: float = 0.0) -> T:
    """fn() (a blocking call that takes no cancel: an HTTP request, a boto3 call), ended by the call's or the
    thread's cancel within POLL_SECONDS: Interrupted then. `grace`: fn may still finish until that many seconds
    after the cancel was set (a record of the stopped job reaching a mirror that answers). fn runs in a daemon
    thread that is left to end by its own timeout (a process exits without waiting for it), so fn must be safe
    to abandon mid-way; it sees neither this thread's deadline nor its cancel. Without any cancel, fn() runs here."""
    cancel = _with_ambient(cancel)
    if cancel is None:
        return fn()
    if _past_grace(cancel, grace):
        raise Interrupted(f"{what}: not started, cancelled")
    done, box = threading.Event(), {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name=f"interruptible: {what}"[:60], daemon=True).start()
    # short waits, not one long one: Python runs a signal handler (which sets the cancel) only between them
    while not done.wait(POLL_SECONDS):
        if _past_grace(cancel, grace):
            raise Interrupted(f"{what}: cancelled")
    if "error" in box:
        raise box["error"]
    return box["value"]


def wait_all(pool, futures: list, cancel, what: str) -> None:
    """Until every future of `pool` (a ThreadPoolExecutor) is done, in short waits (a signal handler, which sets
    the cancel, runs only between them); on cancel the queued tasks are dropped, the running ones are waited
    for (they must stop at the cancel themselves) and Interrupted is raised. Failed tasks raise in result()."""
    pending = futures
    while pending:
        done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_EXCEPTION)
        if cancel is not None and cancel.is_set():
            pool.shutdown(wait=True, cancel_futures=True)
            raise Interrupted(f"{what}: cancelled")
        if any(f.exception() is not None for f in done):
            return


def _past_grace(cancel, grace: float) -> bool:
    """The cancel is set, and was set more than `grace` seconds ago."""
    if not cancel.is_set():
        return False
    since = getattr(cancel, "set_at", None)
    return since is None or time.monotonic() - since >= grace


def time_left() -> float | None:
    """Seconds until this thread's job deadline, None without one."""
    end = getattr(_local, "deadline", None)
    return None if end is None else end - time.monotonic()


def _end(start: float, timeout: float | None) -> float | None:
    """The earlier of start + timeout and the job deadline; DeadlineExceeded when already past."""
    ends = [e for e in (start + timeout if timeout else None, getattr(_local, "deadline", None)) if e]
    end = min(ends) if ends else None
    if end is not None and end <= start:
        raise DeadlineExceeded("the job deadline (job_timeout_seconds) has passed; nothing more is started")
    return end


def _load_prctl():
    """libc's prctl, loaded once in the parent: loading a library after fork() in a threaded
    process (the daemon) can deadlock on the loader's lock, so the child only calls it."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: children are still killed on every path backupd lives through


_PRCTL = _load_prctl()


def _join(procs: tuple[str, ...]) -> None:
    """In the child: enter the cgroups whose cgroup.procs files are given ("0" is the writer itself), so
    the command is limited from its first instruction; exit without running it when that fails."""
    for path in procs:
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError:
            os.write(2, b"backupd: cannot enter the drill's cgroup; not started\n")
            os._exit(126)


def _die_with_parent(parent: int, cgroup: tuple[str, ...] = ()) -> Callable[[], None]:
    """preexec_fn for every child: SIGKILL when the spawning thread dies (backupd killed, even
    by SIGKILL), so no restic, dump or probe is left running under PID 1.

    For the consumer of a pipeline this also means restic never reads end-of-input from a killed
    backupd and commits a truncated dump. (The kernel closes the dead parent's pipe microseconds
    before the signal arrives; restic needs far longer to commit.)
    """
    def child() -> None:
        _join(cgroup)
        # An ignored SIGINT/SIGTERM survives exec (cron, nohup, a shell's background job): the child would
        # then miss the gentle stop (SIGINT: restic removes its lock) and wait for escalation.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: the signal would never come
            os._exit(137)
    return child


def _spawn(argv: list[str], env: Environment, stdin, stdout, cwd=None, *,
           cancel: Cancel | None = None, pass_fds: tuple[int, ...] = (),
           cgroup: tuple[str, ...] = ()) -> subprocess.Popen:
    if cancel is not None and cancel.is_set():
        raise Interrupted(f"{os.path.basename(argv[0])}: not started, cancelled")
    try:
        return subprocess.Popen(
            argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env.build(),
            cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent(os.getpid(), cgroup), pass_fds=pass_fds,
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
    kill_groups([proc], grace)


def kill_groups(procs: list[subprocess.Popen], grace: float = KILL_GRACE_SECONDS) -> None:
    """kill_group for several children at once, so stopping a pipeline costs one grace, not two."""
    for sig, wait in ((signal.SIGINT, grace / 2), (signal.SIGTERM, grace / 2), (signal.SIGKILL, 5.0)):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        for p in alive:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + wait
        for p in alive:
            try:
                p.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


class _Drain(threading.Thread):
    """Reads a pipe to the end in the background, so a chatty child never blocks on it.

    With `limit`, only the last `limit` bytes are kept and the pipe is read in chunks, not lines, so
    an untrusted child cannot make us hold unbounded output (not even one endless line).
    """

    def __init__(self, pipe, on_line: Callable[[bytes], None] | None = None, keep: bool = True,
                 limit: int | None = None):
        super().__init__(daemon=True)
        self.pipe, self.on_line, self.keep, self.limit = pipe, on_line, keep, limit
        self.chunks: list[bytes] = []
        self.total = 0

    @property
    def truncated(self) -> bool:
        return self.limit is not None and self.total > self.limit

    def _run_bounded(self) -> None:
        tail = b""
        for chunk in iter(lambda: self.pipe.read1(CHUNK), b""):
            self.total += len(chunk)
            tail = (tail + chunk)[-self.limit:]
            self.chunks = [tail]
        self.pipe.close()

    def run(self) -> None:
        if self.limit is not None:
            self._run_bounded()
            return
        for line in iter(self.pipe.readline, b""):
            if self.on_line:
                self.on_line(line)
            if self.keep:
                self.chunks.append(line)
        self.pipe.close()

    def data(self, wait: float = 30.0) -> bytes:
        # bounded: a grandchild that escaped the process group may hold the pipe open
        self.join(wait)
        return b"".join(self.chunks)


def _wait(procs: list[subprocess.Popen], deadline: float | None, cancel: Cancel | None) -> tuple[bool, bool]:
    """Wait for all procs; on timeout or cancel kill them. Returns (timed_out, cancelled)."""
    while any(p.poll() is None for p in procs):
        if cancel is not None and cancel.is_set():
            kill_groups(procs)
            return False, True
        if deadline is not None and time.monotonic() > deadline:
            kill_groups(procs)
            return True, False
        running = next((p for p in procs if p.poll() is None), None)
        if running is not None:
            _exited_within(running, 0.05)
    return False, False


def _exited_within(proc: subprocess.Popen, seconds: float) -> None:
    """Wait at most `seconds` for proc to exit, woken the moment it does (a pidfd; Popen.wait(timeout)
    polls with sleeps growing to 50 ms, which every run of a short child paid at its end)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (kernel < 5.3) or already reaped
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass
        return
    try:
        select.select([fd], [], [], seconds)
    finally:
        os.close(fd)


def run(
    argv: list[str],
    env: Environment | None = None,
    *,
    timeout: float | None = None,
    cancel: Cancel | None = None,
    on_stdout_line: Callable[[bytes], None] | None = None,
    keep_stdout: bool = True,
    cwd: str | None = None,
    max_output: int | None = None,
    pass_fds: tuple[int, ...] = (),
    stdin: Iterable[bytes] | None = None,
    cgroup: tuple[str, ...] = (),
) -> Completed:
    """Run argv to completion, capturing stdout (bytes) and stderr (text, secrets scrubbed).
    Bounded by timeout and the thread's job deadline; Interrupted when cancelled before the start.
    `max_output` keeps only the last that many bytes of each stream (untrusted children);
    `Completed.truncated` says whether more was written. `pass_fds` stay open in the child; it enters
    the `cgroup` (cgroup.procs files) before it execs.
    `stdin`: chunks written to the child's input by a thread (end-of-input after the last); an error
    producing them kills the child before it sees end-of-input and is raised here."""
    env = env or Environment()
    start = time.monotonic()
    deadline = _end(start, timeout)
    cancel = _with_ambient(cancel)
    proc = _spawn(argv, env, subprocess.DEVNULL if stdin is None else subprocess.PIPE, subprocess.PIPE, cwd,
                  cancel=cancel, pass_fds=pass_fds, cgroup=cgroup)
    out = _Drain(proc.stdout, on_stdout_line, keep_stdout, limit=max_output)
    err = _Drain(proc.stderr, limit=max_output)
    out.start(), err.start()
    feed = _Feed(proc, stdin) if stdin is not None else None
    timed_out, cancelled = _wait([proc], deadline, cancel)
    if feed is not None:
        feed.finish()
    return Completed(
        argv=list(argv), returncode=proc.wait(), stdout=out.data(),
        stderr=env.scrub(err.data().decode("utf-8", "replace")),
        duration=time.monotonic() - start, timed_out=timed_out, cancelled=cancelled,
        limit=None if deadline is None else round(deadline - start, 1),
        truncated=out.truncated or err.truncated,
    )


class _Feed(threading.Thread):
    """Writes chunks to a child's stdin, then closes it. The child ending stops it (a broken pipe);
    an error raised by the chunks' producer kills the child first, so it never takes a cut input
    for the whole, and `finish()` raises it again in the caller's thread."""

    def __init__(self, proc: subprocess.Popen, chunks: Iterable[bytes]):
        super().__init__(daemon=True)
        self.proc, self.chunks, self.error = proc, chunks, None
        self.start()

    def run(self) -> None:
        try:
            for chunk in self.chunks:
                self.proc.stdin.write(chunk)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the child ended (or was stopped) before it read everything: its exit says why
        except Exception as exc:  # noqa: BLE001 - handed to finish()
            self.error = exc
            kill_group(self.proc, grace=1.0)
        finally:
            _close(self.proc.stdin)

    def finish(self, wait: float = 30.0) -> None:
        self.join(wait)  # bounded: the child is gone, so a blocked write has failed by now
        if self.error is not None:
            raise self.error


class Background:
    """A child left running (a throw-away database server): `alive()`, then `stop()` it."""

    def __init__(self, argv: list[str], proc: subprocess.Popen, out: _Drain, err: _Drain, env: Environment):
        self.argv, self.proc, self._out, self._err, self._env = list(argv), proc, out, err, env
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 2.0) -> Completed:
        """Kill the child's process group (SIGINT, SIGTERM, SIGKILL); what it wrote, bounded."""
        kill_group(self.proc, grace=grace)
        return Completed(
            argv=self.argv, returncode=self.proc.wait(), stdout=self._out.data(),
            stderr=self._env.scrub(self._err.data().decode("utf-8", "replace")),
            duration=time.monotonic() - self.started, truncated=self._out.truncated or self._err.truncated,
        )


def start(argv: list[str], env: Environment | None = None, *, cwd: str | None = None,
          cancel: Cancel | None = None, max_output: int = 1 << 16,
          pass_fds: tuple[int, ...] = (), cgroup: tuple[str, ...] = ()) -> Background:
    """Start argv and return at once; the caller must `stop()` it. Output is bounded to max_output."""
    env = env or Environment()
    proc = _spawn(argv, env, subprocess.DEVNULL, subprocess.PIPE, cwd, cancel=cancel, pass_fds=pass_fds,
                  cgroup=cgroup)
    out, err = _Drain(proc.stdout, limit=max_output), _Drain(proc.stderr, limit=max_output)
    out.start(), err.start()
    return Background(argv, proc, out, err, env)


def detach(argv: list[str], env: Environment | None = None, *, pass_fds: tuple[int, ...] = ()) -> int:
    """Start argv to outlive this process and return its pid without waiting: the one kind of child that is
    not killed with its parent (own session, no parent-death signal, no pipes). Only for bounded clean-up
    work that must not hold the caller up (a drill's sandbox removal); the child bounds its own run time.
    It runs in / : it holds no mount busy, and `python -m` finds no module planted in the caller's directory."""
    env = env or Environment()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env.build(), start_new_session=True,
                                pass_fds=pass_fds, cwd="/")
    except FileNotFoundError:
        raise DependencyError(f"{argv[0]}: program not found; install it or fix its path") from None
    except PermissionError:
        raise DependencyError(f"{argv[0]}: not executable") from None
    return proc.pid


@dataclass
class PipelineResult:
    """Outcome of producer | consumer: both children's results. `stalled` names the side that held
    the pipeline up when it timed out: "producer" (sent nothing) or "consumer" (stopped reading).
    `broken`: the consumer ended before end-of-input (it died, or stopped reading and exited)."""

    producer: Completed
    consumer: Completed
    bytes: int
    stalled: str | None = None
    broken: bool = False


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
    streaming `restic backup --stdin` never commits a snapshot of a truncated dump. A watchdog
    stops both ends on timeout or cancel, whichever side is stuck (a silent producer, or a
    consumer that stopped reading while the pump blocks writing to it).
    """
    start = time.monotonic()
    deadline = _end(start, timeout)
    cancel = _with_ambient(cancel)
    cons = _spawn(consumer, consumer_env, subprocess.PIPE, subprocess.PIPE, cancel=cancel)
    try:
        prod = _spawn(producer, producer_env, subprocess.DEVNULL, subprocess.PIPE, cancel=cancel)
    except BaseException:
        kill_group(cons, grace=1.0)
        raise
    drains = [_Drain(cons.stdout, on_stdout_line), _Drain(cons.stderr), _Drain(prod.stderr)]
    for d in drains:
        d.start()
    pump = _Pump(prod, cons, tap)
    guard = _Watchdog([cons, prod], deadline, cancel, pump)
    guard.start()
    pump.run()
    timed_out, cancelled = _wait([prod], deadline, cancel)
    guard.stop.set()
    guard.join()
    timed_out, cancelled = timed_out or guard.timed_out, cancelled or guard.cancelled
    stalled = guard.stalled or ("producer" if timed_out else None)
    broken = pump.broken or guard.consumer_ended
    prod_rc = prod.wait()
    if prod_rc != 0 or broken or timed_out or cancelled:
        kill_group(cons, grace=2.0)
    else:
        _close(cons.stdin)
        t2, c2 = _wait([cons], deadline, cancel)
        timed_out, cancelled = timed_out or t2, cancelled or c2
        stalled = stalled or ("consumer" if t2 else None)
    cons_rc = cons.wait()
    end = time.monotonic() - start
    limit = None if deadline is None else round(deadline - start, 1)
    return PipelineResult(
        producer=Completed(list(producer), prod_rc, b"",
                           producer_env.scrub(drains[2].data().decode("utf-8", "replace")),
                           end, timed_out, cancelled, limit),
        consumer=Completed(list(consumer), cons_rc, drains[0].data(),
                           consumer_env.scrub(drains[1].data().decode("utf-8", "replace")),
                           end, timed_out, cancelled, limit),
        bytes=pump.total, stalled=stalled if timed_out else None, broken=broken,
    )


class _Watchdog(threading.Thread):
    """Stops both ends of a pipeline that outlives its deadline or is cancelled, even while the
    pump is blocked reading a silent producer or writing to a consumer that stopped reading."""

    def __init__(self, procs, deadline, cancel, pump):
        super().__init__(daemon=True)
        self.procs, self.deadline, self.cancel, self.pump = procs, deadline, cancel, pump
        self.stop = threading.Event()
        self.timed_out = self.cancelled = self.consumer_ended = False
        self.stalled: str | None = None

    def run(self) -> None:
        cons, prod = self.procs
        while not self.stop.wait(0.1):
            if cons.poll() is not None and self.pump.state != "done":
                # the consumer died while the pump waits on a silent producer: nobody else would notice
                self.consumer_ended = True
                kill_groups([prod], grace=2.0)
                return
            if self.cancel is not None and self.cancel.is_set():
                self.cancelled = True
            elif self.deadline is not None and time.monotonic() > self.deadline:
                self.timed_out = True
                # blocked writing: the consumer stopped reading; else the producer sends nothing
                self.stalled = "consumer" if self.pump.state == "write" else "producer"
            else:
                continue
            kill_groups(self.procs, grace=2.0)
            return


class _Pump:
    """Copies producer stdout to consumer stdin; `state` says where it blocks (read or write)."""

    def __init__(self, prod, cons, tap):
        self.prod, self.cons, self.tap = prod, cons, tap
        self.total, self.broken, self.state = 0, False, "read"

    def run(self) -> None:
        read = self.prod.stdout.read1 if hasattr(self.prod.stdout, "read1") else self.prod.stdout.read
        while True:
            self.state = "read"
            chunk = read(CHUNK)
            if not chunk:
                self.state = "done"
                return
            if self.tap:
                self.tap(chunk)
            self.state = "write"
            try:
                self.cons.stdin.write(chunk)
                self.cons.stdin.flush()  # a trickle must reach the consumer now, not at 8 KiB
            except (BrokenPipeError, OSError, ValueError):
                self.broken, self.state = True, "done"
                kill_group(self.prod, grace=2.0)
                return
            self.total += len(chunk)


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
