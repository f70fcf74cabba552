"""Runs untrusted processes confined: restored programs, custom probe commands and the throw-away
PostgreSQL cluster of a drill (a program in a snapshot may be a trojan).

Each process gets fresh user, mount, PID, network, IPC and UTS namespaces (bubblewrap), runs as an
unprivileged uid (`UID` when backupd is root, also as root of the shipped units' pinned user namespace,
where UID is a subordinate id of the service user: actions/drill_userns.py; else backupd's own uid
mapped to nobody) with no capabilities (bounding, ambient, inheritable all empty) and no_new_privs,
under a seccomp filter that denies what a probe never needs (backupd.process.seccomp: mounts, keyrings, bpf,
ptrace, namespaces, ...), without network (only its own loopback) and without creating further user
namespaces. Its mount view is an allow-list: /usr and the /bin, /lib* links, the few /etc files
programs need (passwd, group, ld.so, alternatives, time zone), a private /tmp, /dev and /dev/shm,
/proc of its own PID namespace, the restored tree read-only and only the given sandbox directories
writable. Nothing else of the host exists in it:
not /etc/backupd, state_dir, secrets_dir, $CREDENTIALS_DIRECTORY, the evidence key or the S3 keys.

Limits: wall time (the caller's timeout), RLIMIT_AS, RLIMIT_NPROC (counted in the sandbox's own user
namespace), RLIMIT_FSIZE, no core files, a size-capped /tmp; in a drill also the drill's cgroup
(backupd.process.cgroups: memory, tasks and CPU of all its processes together), entered before exec. Killing
the sandbox kills its PID namespace's init, which takes every process in it along (setsid ones
included). Output is untrusted: only its tail is kept, secrets and control characters are scrubbed
before anyone sees it.

`drill/sandbox.py` makes a drill's private directory; this module runs processes inside it, and only
through `backupd.process.execute`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from backupd.errors import DependencyError
from backupd.process import execute, seccomp

#: The host uid/gid sandboxed processes run as when backupd is root: unnamed and unused (Debian keeps
#: 65000-65533 out of every allocation), so RLIMIT_NPROC and file ownership concern the sandbox alone.
UID = 65530
#: The uid/gid a process sees inside the sandbox (nobody, so programs find a passwd entry).
INNER_ID = 65534
BWRAP, SETPRIV, PRLIMIT = "bwrap", "setpriv", "/usr/bin/prlimit"
NAMESPACES = ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
              "--unshare-cgroup-try")
#: Top-level system directories shown read-only (or as the symlinks they are on merged-/usr systems).
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: The only /etc entries shown: what the dynamic linker, user lookups and time zones need.
ETC_FILES = ("passwd", "group", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
             "alternatives", "localtime", "timezone")
ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")  # keeps tab and newline
MIN_SECRET = 4
#: How long the end of a killed sandbox may take before its PID-namespace init is killed directly.
END_WAIT = 10.0


@dataclass(frozen=True)
class Limits:
    """Per-process memory (RLIMIT_AS), processes in the sandbox (RLIMIT_NPROC), largest file written
    (RLIMIT_FSIZE), size of the private /tmp and bytes of each output stream kept."""

    memory: int = 2 << 30
    processes: int = 256
    file_size: int = 20 << 30
    tmp: int = 256 << 20
    output: int = 64 << 10


def default_uid() -> int | None:
    """UID when we are root (we can and must drop to it), else None (keep our uid, mapped to nobody)."""
    return UID if os.geteuid() == 0 else None


def drop_privileges(uid: int | None) -> list[str]:
    """setpriv prefix: clear inheritable and ambient capabilities (bwrap refuses to start with any)
    and set no_new_privs; as root also switch to `uid` without groups and empty the bounding set."""
    argv = [SETPRIV]
    if uid is not None:
        argv += [f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--bounding-set=-all"]
    return argv + ["--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs", "--"]


def system_view(root: str = "/") -> list[str]:
    """bwrap arguments for the read-only system part of the mount view (the allow-list)."""
    args: list[str] = ["--perms", "0755", "--dir", "/etc"]
    entries = [(name, "/" + name) for name in SYSTEM_DIRS] + [(f"etc/{n}", f"/etc/{n}") for n in ETC_FILES]
    for rel, dest in entries:
        host = os.path.join(root, rel)
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), dest]
        elif os.path.exists(host):
            args += ["--ro-bind", host, dest]
    return args


def reachable(path: Path, uid: int | None) -> bool:
    """True when `uid` (no groups) can traverse every directory down to path; always for None."""
    if uid is None:
        return True
    for item in [Path(path), *Path(path).parents]:
        try:
            st = item.stat()
        except OSError:
            return False
        if not (st.st_mode & 0o001 or (st.st_uid == uid and st.st_mode & 0o100)):
            return False
    return True


def binds(readonly, writable) -> list[str]:
    """bwrap arguments showing `readonly` and `writable` host paths at the same paths: their missing
    ancestors as plain 0755 directories (the host's modes of those do not matter), then the binds,
    outer before inner (a writable work dir may lie inside the read-only tree)."""
    mounts = [("--ro-bind", Path(p)) for p in readonly] + [("--bind", Path(p)) for p in writable]
    mounts.sort(key=lambda m: len(m[1].parts))
    tops = {m[1] for m in mounts}
    system = {Path("/"), Path("/tmp")} | {Path("/" + d) for d in SYSTEM_DIRS}
    dirs: list[Path] = []
    for _, path in mounts:
        for parent in reversed(path.parents):
            inside = parent in tops or any(t in parent.parents for t in tops)
            if parent not in system and not inside and parent not in dirs:
                dirs.append(parent)
    args: list[str] = []
    for folder in dirs:
        args += ["--perms", "0755", "--dir", str(folder)]
    for flag, path in mounts:
        args += [flag, str(path), str(path)]
    return args


def secret_forms(secrets) -> list[bytes]:
    """Each secret as written, base64- and hex-encoded, longest first (so no fragment survives)."""
    forms: set[bytes] = set()
    for secret in secrets:
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(raw) >= MIN_SECRET:
            forms |= {raw, base64.b64encode(raw).rstrip(b"="), raw.hex().encode()}
    return sorted(forms, key=len, reverse=True)


def scrub(data: bytes, secrets) -> bytes:
    """Untrusted output made safe to show: secrets replaced by [REDACTED], control characters dropped."""
    for form in secret_forms(secrets):
        data = data.replace(form, b"[REDACTED]")
    return _CONTROL.sub(b"", data)


def bound(data: bytes, limit: int) -> bytes:
    """The last `limit` bytes, marked when cut."""
    return data if len(data) <= limit else b"[...]" + data[-limit:]


def secrets_in(*places) -> tuple[str, ...]:
    """Values to scrub from the files at `places` (files, or the regular files of directories, e.g.
    secrets_dir, $CREDENTIALS_DIRECTORY, the key directory): every line and every KEY=VALUE value."""
    found: set[str] = set()
    for place in places:
        if not place:
            continue
        place = Path(place)
        files = sorted(p for p in place.iterdir() if p.is_file()) if place.is_dir() else [place]
        for path in files:
            try:
                text = path.read_bytes()[:1 << 16].decode("utf-8", "replace")
            except OSError:
                continue
            for line in text.splitlines():
                line = line.strip()
                if not line or line.startswith("-----"):
                    continue
                found.add(line)
                found.add(line.partition("=")[2].strip().strip("'\""))
    return tuple(sorted(s for s in found if len(s) >= MIN_SECRET))


def limit_reached(done: execute.Completed, limits: Limits) -> str | None:
    """Which sandbox limit a failed process most likely hit: the drill cgroup's when it counted one
    (done.exceeded), else guessed from its exit and output; None when none."""
    if done.exceeded:
        return done.exceeded
    text = done.stderr + done.stdout[-4096:].decode("utf-8", "replace")
    if done.returncode in (128 + 25, -25) or "File too large" in text:
        return f"file size limit ({limits.file_size} bytes) reached"
    if re.search(r"[Cc]annot fork|fork: .*(Resource temporarily unavailable|retry)", text):
        return f"process limit ({limits.processes}) reached"
    if re.search(r"Cannot allocate memory|out of memory|MemoryError|std::bad_alloc", text):
        return f"memory limit ({limits.memory} bytes per process) reached"
    return None


def outer_proc(proc: str = "/proc") -> list[str]:
    """The outer bwrap's /proc: one the inner bwrap may mount a fresh proc over (the kernel wants a fully
    visible proc first) and, where it can, one that shows the inner bwrap's child under the PID it knows
    (bwrap reads /proc/<pid>/ns). bwrap covers sys, sysrq-trigger, irq and bus of a fresh proc read-only
    when this root may write them (root of the host), and the kernel counts covers as hiding: then the
    host /proc (a host always has the PID, a kernel thread). Else (root of the units' probe user namespace,
    maybe in a container without that PID on the host /proc) the outer's own, left uncovered."""
    covered = any(os.access(f"{proc}/{name}", os.W_OK) for name in ("sys", "sysrq-trigger", "irq", "bus"))
    return ["--bind", "/proc", "/proc"] if covered else ["--proc", "/proc"]


@dataclass
class Jail:
    """Where and how probe processes run: `readonly` and `writable` host paths appear at the same
    paths inside; `root` is the drill's private directory, the only place `hand_over` changes."""

    readonly: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    root: Path | None = None
    limits: Limits = field(default_factory=Limits)
    secrets: tuple[str, ...] = ()
    cancel: execute.Cancel | None = None
    uid: int | None = field(default_factory=default_uid)
    #: the drill's cgroup (backupd.process.cgroups.Group): every process of the jail runs in it, when there is one
    group: object | None = None
    _handed: set = field(default_factory=set, repr=False)

    def argv(self, command: list[str], *, cwd: str | None = None, writable=None,
             info_fd: int | None = None, seccomp_fd: int | None = None) -> list[str]:
        """The full argv: privilege drop, namespaces, mount view, limits, then the command.

        Not root: one bwrap builds the view while it creates the namespaces. Root: an outer bwrap (still
        root, a mount and a PID namespace) builds the view, so the paths may lie below directories only root
        can traverse; it then drops to UID and the inner bwrap creates the namespaces inside that view.
        `info_fd` receives the JSON of the bwrap whose PID namespace holds every process of the command
        (its init, and the namespace). `seccomp_fd` holds the syscall filter (backupd.process.seccomp) the
        bwrap that makes the namespaces installs on the command; as root it reaches that inner bwrap
        through the outer one and setpriv, which both leave inherited descriptors open.
        """
        writable = self.writable if writable is None else tuple(writable)
        lim = self.limits
        # no --hostname: systemd's ProtectHostname= forbids sethostname even in a new UTS namespace
        inner = [BWRAP, *NAMESPACES, "--uid", str(INNER_ID), "--gid", str(INNER_ID), "--disable-userns",
                 "--die-with-parent", "--new-session", "--clearenv"]
        if seccomp_fd is not None:
            inner += ["--seccomp", str(seccomp_fd)]
        for name, value in ENVIRONMENT.items():
            inner += ["--setenv", name, value]
        info = ["--info-fd", str(info_fd)] if info_fd is not None else []
        view = system_view() + ["--perms", "1777", "--size", str(lim.tmp), "--tmpfs", "/tmp"] \
            + binds(self.readonly, writable)
        fresh = ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(lim.tmp),
                 "--tmpfs", "/dev/shm"]
        tail = ["--chdir", cwd or (str(writable[0]) if writable else "/tmp"), "--", PRLIMIT,
                f"--as={lim.memory}", f"--nproc={lim.processes}", f"--fsize={lim.file_size}", "--core=0",
                "--", *command]
        if self.uid is None:
            return drop_privileges(None) + inner + info + view + fresh + tail
        # the outer's /proc (outer_proc) lets the inner bwrap mount a fresh one, which covers it and the
        # sandbox cannot unmount it. The outer bwrap has a PID namespace of its own: its init stays root,
        # so the parent-death signal reaches it (a process without capabilities may not signal the sandbox
        # uid), and when it dies the kernel kills every process below, even after backupd was killed -9.
        outer = [BWRAP, "--die-with-parent", "--unshare-pid", *info, *view, *outer_proc(),
                 "--dev", "/dev", "--", *drop_privileges(self.uid)]
        return outer + inner + ["--bind", "/", "/"] + fresh + tail

    def hand_over(self, *paths) -> None:
        """As root: give the sandbox uid the given trees (recursively, symlinks not followed), so it can
        read the restored files and write its work directories. A no-op when we are not root."""
        if self.uid is None:
            return
        for top in map(Path, paths):
            if self.root is not None and top != self.root and self.root not in top.parents:
                raise ValueError(f"{top} lies outside the sandbox {self.root}")
            if top in self._handed or not top.exists():
                continue
            self._handed.add(top)
            _chown_tree(top, self.uid)

    def _prepare(self, writable) -> tuple:
        if shutil.which(BWRAP) is None:
            raise DependencyError("bwrap not found: probes run only in a sandbox; install the Debian package "
                                  "bubblewrap (scripts/setup.sh does)")
        writable = self.writable if writable is None else tuple(writable)
        self.hand_over(*self.readonly, *writable)
        return writable

    def run(self, command: list[str], *, timeout: float, cwd: str | None = None,
            writable=None, stdin=None) -> execute.Completed:
        """Run command confined to the end or its timeout; output bounded and scrubbed. `stdin`: chunks
        of bytes fed to its input (execute.run), e.g. a dump the sandbox cannot read itself."""
        writable = self._prepare(writable)
        counts = self.group.counts() if self.group is not None else None
        with self._launch(command, cwd, writable) as (argv, fds, info):
            done = execute.run(argv, timeout=timeout, cancel=self.cancel, max_output=self.limits.output,
                               pass_fds=fds, stdin=stdin, cgroup=self._cgroup())
        await_end(info)
        if self.group is not None:
            done.exceeded = self.group.exceeded(counts)
        return self._clean(done, command)

    def start(self, command: list[str], *, cwd: str | None = None, writable=None) -> Server:
        """Start a long-running command confined (a database server); `stop()` it when done."""
        writable = self._prepare(writable)
        with self._launch(command, cwd, writable) as (argv, fds, info):
            child = execute.start(argv, cancel=self.cancel, max_output=self.limits.output, pass_fds=fds,
                                  cgroup=self._cgroup())
        return Server(self, command, child, info)

    @contextmanager
    def _launch(self, command: list[str], cwd: str | None, writable: tuple):
        """(bwrap argv, the fds the child inherits, the read end of bwrap's info pipe) for one confined
        child; the child's ends are closed here once it started, the read end too when it did not."""
        rules = seccomp.filter_fd()
        info, write_end = os.pipe()
        try:
            yield (self.argv(command, cwd=cwd, writable=writable, info_fd=write_end, seccomp_fd=rules),
                   (write_end, rules), info)
        except BaseException:
            os.close(info)
            raise
        finally:
            os.close(write_end)
            os.close(rules)

    def _cgroup(self) -> tuple[str, ...]:
        return self.group.procs() if self.group is not None else ()

    def _clean(self, done: execute.Completed, command: list[str]) -> execute.Completed:
        done.argv = list(command)  # what the probe ran; the sandbox wrapping is always the same
        done.stdout = scrub(done.stdout, self.secrets)
        done.stderr = scrub(done.stderr.encode("utf-8", "replace"), self.secrets).decode("utf-8", "replace")
        return done


class Server:
    """A confined long-running process: `alive()`, `stop()` (kills its whole PID namespace)."""

    def __init__(self, jail: Jail, command: list[str], child: execute.Background, info: int):
        self.jail, self.command, self.child, self.info = jail, command, child, info

    def alive(self) -> bool:
        return self.child.alive()

    def wait_for(self, ready, seconds: float, poll: float = 0.1) -> bool:
        """Poll `ready()` until true (True), the server died, was cancelled or time ran out (False)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and self.alive():
            if ready():
                return True
            if self.jail.cancel is not None and self.jail.cancel.wait(poll):
                return False
            if self.jail.cancel is None:
                time.sleep(poll)
        return bool(ready())

    def stop(self) -> execute.Completed:
        done = self.child.stop()
        await_end(self.info)
        return self.jail._clean(done, self.command)


def await_end(info: int, seconds: float = END_WAIT) -> bool:
    """After bwrap returned: wait until its PID namespace is empty, so no process of a probe outlives
    it (not even one in its own session). Reads bwrap's --info-fd JSON from the pipe `info` (closed
    here) and waits on the namespace's init, which the kernel lets exit only after every other process
    in it; an init still there after `seconds` is killed (checked to be that namespace's). True when
    the namespace is gone or was never made."""
    try:
        os.set_blocking(info, False)
        doc = json.loads(os.read(info, 1 << 16).split(b"}")[0] + b"}")  # bwrap's own first object
        pid, namespace = int(doc["child-pid"]), int(doc["pid-namespace"])
    except (OSError, ValueError, KeyError, TypeError):
        return True  # bwrap failed before it made the namespace
    finally:
        os.close(info)
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if not select.select([handle], [], [], seconds)[0] and _pid_namespace(pid) == namespace:
            signal.pidfd_send_signal(handle, signal.SIGKILL)
            select.select([handle], [], [], seconds)
        return bool(select.select([handle], [], [], 0)[0])
    finally:
        os.close(handle)


def _pid_namespace(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def _chown_tree(top: Path, uid: int) -> None:
    os.lchown(top, uid, uid)
    if top.is_symlink() or not top.is_dir():
        return
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), uid, uid)
