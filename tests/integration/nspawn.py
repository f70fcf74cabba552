"""A throw-away machine with systemd as PID 1 for the real-systemd test (test_systemd_boot.py).

`Machine` boots this host's own /usr with `systemd-nspawn --volatile=yes --boot`: a fresh tmpfs root (empty
/etc and /var, so users, configs and units are what the install makes), a writable overlay over /usr (the
writes land in the work directory), the host's dpkg database at /srv/dpkg (copy it to /var/lib/dpkg so the
bundle's install sees the Debian packages this host has), the few files of its /etc listed in HOST_ETC, and
loopback-only networking.
Commands run in it with `nsenter --all` into the leader's namespaces; `stop()` powers it off and kills what
is left, always. `python -m tests.integration.nspawn seaweed DIR` (run inside the machine's network
namespace) starts SeaweedFS there, makes the Object Lock bucket with `backupd storage init`, writes
DIR/ready.json and serves until SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT = 90.0
#: What a Debian host's /etc has that the packages' defaults do not give an empty one: the alternatives (awk,
#: which), login.defs (useradd makes a user's group only with its USERGROUPS_ENAB) and PAM (runuser).
HOST_ETC = ("/etc/alternatives", "/etc/login.defs", "/etc/pam.d", "/etc/security")
#: Kills the machine once its standard input ends, i.e. when the test process ended however (even by SIGKILL,
#: which skips stop()): the container's PID 1 (by pidfd: never a reused PID), which takes every process of
#: its PID namespace along, and whatever else runs in its network namespace (SeaweedFS).
GUARD = """
import os, signal, sys
leader = int(sys.argv[1])
pidfd, net = os.pidfd_open(leader), os.readlink(f"/proc/{leader}/ns/net")
sys.stdin.buffer.read()
shared = net == os.readlink("/proc/self/ns/net")  # never with --private-network: then kill only the machine
for pid in [] if shared else filter(str.isdigit, os.listdir("/proc")):
    try:
        if int(pid) != os.getpid() and os.readlink(f"/proc/{pid}/ns/net") == net:
            os.kill(int(pid), signal.SIGKILL)
    except OSError:
        pass
try:
    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


class Machine:
    """One booted container; `share` (a host directory) is mounted read-only at /srv/share inside."""

    def __init__(self, workdir: Path, share: Path, name: str = "backupd-it"):
        self.workdir, self.share, self.name = Path(workdir), Path(share), name
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None
        self.guard: subprocess.Popen | None = None
        self.console = self.workdir / "console.log"

    def boot(self) -> None:
        """Start the container and wait (bounded) until its boot finished."""
        (self.workdir / "usr").mkdir(parents=True, exist_ok=True)
        argv = ["systemd-nspawn", "--quiet", "-D", "/", "--volatile=yes", "--boot", "--register=no",
                "--keep-unit", "--private-network", f"--machine={self.name}",
                f"--overlay=/usr:{self.workdir / 'usr'}:/usr",
                "--bind-ro=/var/lib/dpkg:/srv/dpkg", *(f"--bind-ro={p}" for p in HOST_ETC), f"--bind-ro={self.share}:/srv/share",
                "systemd.firstboot=off", "systemd.unit=multi-user.target",
                # loopback only: network-online.target (the units' After=) would wait 2 min for a link
                "systemd.mask=systemd-networkd-wait-online.service"]
        with open(self.console, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while self.leader is None:
            self._check_alive(deadline)
            self.leader = self._find_leader()
            time.sleep(0.2)
        self.guard = subprocess.Popen([sys.executable, "-c", GUARD, str(self.leader)], stdin=subprocess.PIPE,
                                      start_new_session=True)
        while True:  # `is-system-running --wait` could wait forever: poll with a deadline instead
            self._check_alive(deadline)
            state = self.run("systemctl is-system-running", timeout=10).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)

    def _check_alive(self, deadline: float) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited with {self.proc.returncode}:\n{self.console_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the container did not boot in {BOOT_TIMEOUT:.0f}s:\n{self.console_tail()}")

    def _find_leader(self) -> int | None:
        """The container's PID 1 as this host sees it: systemd-nspawn's child running systemd."""
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        for pid in children:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except OSError:
                continue
        return None

    def console_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no console log)"

    def nsenter(self, *namespaces: str) -> list[str]:
        """argv prefix entering the container (all namespaces, or only those named, e.g. "-n")."""
        return ["nsenter", "-t", str(self.leader), *(namespaces or ("-a",)), "--"]

    def run(self, script: str, timeout: float = 120, env: dict[str, str] | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
        """Run a bash script as root inside the container with a clean environment."""
        clean = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "SYSTEMD_PAGER": "", **(env or {})}
        argv = [*self.nsenter(), "env", "-i", *(f"{k}={v}" for k, v in clean.items()), "bash", "-c", script]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"in the container: {script}\nexit {done.returncode}\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def stop(self) -> None:
        """Power off (bounded), then kill the container's PID 1 and systemd-nspawn; safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self.leader is not None:
            try:
                os.kill(self.leader, signal.SIGRTMIN + 4)  # systemd: poweroff
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            if self.leader is not None:
                _kill(self.leader)  # PID 1 of a PID namespace: the kernel kills all of its processes
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self.proc = None
        if self.guard is not None:
            self.guard.stdin.close()
            self.guard.wait(timeout=30)
            self.guard = None

    def __enter__(self) -> "Machine":
        try:
            self.boot()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def serve_seaweed(workdir: Path, bucket: str, retention: str) -> int:
    """Inside the machine's network namespace: SeaweedFS, the bucket (`backupd storage init`), DIR/ready.json
    ({"endpoint": ...}, keys in DIR/secrets/s3-<identity>.env), then wait for SIGTERM."""
    from demo.seaweed import SeaweedFS

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with SeaweedFS(workdir, buckets=[bucket]) as sw:
        done = subprocess.run([sys.executable, "-m", "backupd", "storage", "init", "--admin-credentials",
                               str(sw.secrets_dir / "s3-admin.env"), "--bucket", bucket, "--endpoint",
                               sw.endpoint, "--retention", retention, "--json"],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return 1
        (workdir / "ready.json.tmp").write_text(json.dumps({"endpoint": sw.endpoint}))
        (workdir / "ready.json.tmp").rename(workdir / "ready.json")
        while True:
            signal.pause()


if __name__ == "__main__":
    if sys.argv[1:2] == ["seaweed"] and len(sys.argv) == 5:
        sys.exit(serve_seaweed(Path(sys.argv[2]), sys.argv[3], sys.argv[4]))
    sys.exit("usage: python -m tests.integration.nspawn seaweed DIR BUCKET RETENTION")
