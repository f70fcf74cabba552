"""A trojaned program in a real snapshot cannot reach backupd's secrets, the network or the host from a
drill: it runs in the probe sandbox (backupd.process.sandbox), breaks its limits, and the drill fails with the
reason; no process of it survives (real restic, SeaweedFS, `backupd drill --full`)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from backupd.process import sandbox
from tests.integration.conftest import ROOT, program_target

pytestmark = pytest.mark.integration

MARKERS = ("654321", "876543", "765432")  # sleep arguments of the setsid child, the fork bomb, the last exec
SPEC = """version: 1
name: evil
kind: full
sandbox: {processes: 32, memory: 256MiB}
probes:
  - kind: programs
    command: [bin/tos-evil]
    timeout: 15s
"""
#: Each attempt prints "attempt NAME: denied" when the sandbox stopped it, anything else when it worked.
TROJAN = """#!/bin/sh
outcome() {{ if [ "$2" = 0 ]; then echo "attempt $1: $3"; else echo "attempt $1: denied"; fi; }}
try_read() {{ read -r line < "$2" 2>/dev/null; outcome "$1" $? "READ $line"; }}
try_read password '{secrets}/restic-password'
try_read s3-keys '{secrets}/s3-writer.env'
try_read signing-key '{state}/keys/evidence-ed25519.key'
try_read backupd-config '{config}'
python3 -c 'import socket; socket.create_connection(("{host}", {port}), timeout=3)' 2>/dev/null
outcome connect-s3 $? CONNECTED
echo owned 2>/dev/null > '{state}/evil-marker'; outcome write-state $? WROTE
echo owned 2>/dev/null > "$0.evil"; outcome write-restored-tree $? WROTE
echo owned > '{host_tmp}' && echo "wrote {host_tmp} (the sandbox's private /tmp)"
python3 -c 'bytearray(1 << 30)' 2>/dev/null; outcome memory $? ALLOCATED
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp)' /proc/self/status
python3 -c 'import ctypes, sys; sys.exit(ctypes.CDLL(None).syscall(250, 0, -3, 0) < 0)'
outcome keyring $? KEYRING
setsid sleep 654321 </dev/null >/dev/null 2>&1 &
(i=0; while [ $i -lt 5000 ]; do
  sleep 876543 </dev/null >/dev/null 2>&1 & i=$((i+1)); echo $i >/tmp/n; done) 2>/dev/null
read -r n < /tmp/n
[ "$n" -lt 5000 ]; outcome fork-bomb $((1 - $?)) "RAN $n"
echo "sleeping forever"
exec sleep 765432
"""


def _survivors() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline.startswith("sleep ") and any(m in cmdline for m in MARKERS):
            found.append(f"{pid}: {cmdline}")
    return found


def _secret_values(setup) -> list[str]:
    values = [Path(setup.stack.secrets_dir, "restic-password").read_text().strip()]
    for line in Path(setup.stack.secrets_dir, "s3-writer.env").read_text().splitlines():
        values.append(line.partition("=")[2].strip().strip("'\""))
    key = setup.dir / "state" / "keys" / "evidence-ed25519.key"
    values += [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]
    return [v for v in values if len(v) >= 8]


def test_a_trojaned_program_in_a_snapshot_is_contained_and_fails_the_drill(policy, stack, tmp_path):
    programs = tmp_path / "evil" / "programs"
    (programs / "bin").mkdir(parents=True)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "evil.yaml").write_text(SPEC)
    setup = policy(program_target("evil-programs", "evil", programs), "t-probe-sandbox", restore_tests=f"'{specs}'")
    endpoint = urlparse(stack.env["BACKUPD_S3_ENDPOINT"])
    host_tmp = Path("/tmp") / f"backupd-evil-{uuid.uuid4().hex}"
    trojan = programs / "bin" / "tos-evil"
    trojan.write_text(TROJAN.format(secrets=stack.secrets_dir, state=setup.dir / "state", config=setup.config,
                                    host=endpoint.hostname, port=endpoint.port, host_tmp=host_tmp))
    trojan.chmod(0o755)
    assert setup.cli("backup", "--target", "evil-programs").code == 0

    run = setup.cli("drill", "--target", "evil-programs", "--full", "--json", timeout=600)

    assert run.code == 1, run.stdout + run.stderr
    (drill,) = run.doc["drills"]
    (probe,) = drill["probes"]
    assert drill["verdict"] == "FAIL" and drill["verification"]["ok"], drill
    assert probe["details"]["mismatched"] == []  # the trojan is exactly what was backed up
    assert "bin/tos-evil timed out after 15s" in probe["problems"][0], probe
    out = probe["details"]["stdout"]
    attempts = dict(line.removeprefix("attempt ").split(": ", 1) for line in out.splitlines()
                    if line.startswith("attempt "))
    assert set(attempts) == {"password", "s3-keys", "signing-key", "backupd-config", "connect-s3",
                             "write-state", "write-restored-tree", "memory", "fork-bomb", "keyring"}, out
    for name, outcome in attempts.items():
        assert outcome.startswith("denied"), f"{name}: {outcome}"
    assert "sleeping forever" in out
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert f"{cap}:\t0000000000000000" in out
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out  # keyctl (keyring) denied by the filter
    # the host is unchanged, nothing of the trojan runs on, none of backupd's secrets reached its output
    assert not host_tmp.exists() and not (setup.dir / "state" / "evil-marker").exists()
    assert not (trojan.parent / "tos-evil.evil").exists()
    assert _survivors() == []
    for secret in _secret_values(setup):
        assert secret not in run.stdout and secret not in run.stderr
    assert not Path(drill["sandbox"]).exists()


#: As a service would: run a probe in a Jail (the restored file is its service user's, mode 0600) and
#: keep it running until told on stdin.
AS_SERVICE = r"""
import os, sys
from pathlib import Path
from backupd.process.sandbox import Jail
box = Path(sys.argv[1])
jail = Jail(readonly=(box / "restore",), writable=(box / "work",), root=box)
server = jail.start(["sh", "-c", "cat ../restore/secret > copy && exec sleep 765409"], cwd=str(box / "work"))
print("euid", os.geteuid(), flush=True)
sys.stdin.readline()
server.stop()
"""


def _probe_pid(marker: str, seconds: float = 60, until=lambda: False) -> int | None:
    """The pid of the process whose argv is `sleep marker`, polled for until `seconds` or `until()`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if os.path.basename(args[0]) == b"sleep" and args[1:2] == [marker.encode()]:
                    return int(pid)
            except OSError:
                pass
        time.sleep(0.1)
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="creates a service user and pins its user namespace")
def test_a_non_root_service_runs_its_probes_under_a_subordinate_uid_neither_root_nor_its_own(tmp_path):
    """What backupd-verifier.service does: probe-userns allocates and pins, the service enters the namespace
    (nsenter, with no_new_privs and no capabilities, as systemd starts it), and the probe process is seen
    from the host under the service user's subordinate id 65530 - 1 + start, never as root or the user."""
    script, user = ROOT / "deploy" / "systemd" / "probe-userns.sh", f"bkp{uuid.uuid4().hex[:8]}"
    pin = Path("/run/backupd-userns-test") / user
    subprocess.run(["useradd", "--system", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", user],
                   check=True)
    box = Path(tempfile.mkdtemp(prefix="backupd-userns-test-"))
    child = None
    try:
        subprocess.run(["bash", str(script), "allocate", user], check=True)
        subprocess.run(["bash", str(script), "pin", user, str(pin)], check=True)
        pw = pwd.getpwnam(user)
        start = next(int(ln.split(":")[1]) for ln in Path("/etc/subuid").read_text().splitlines()
                     if ln.split(":")[0] == user)
        (box / "restore").mkdir()
        (box / "work").mkdir()
        (box / "restore" / "secret").write_text("restored\n")
        (box / "restore" / "secret").chmod(0o600)
        for path in (box, box / "restore", box / "restore" / "secret", box / "work"):
            os.chown(path, pw.pw_uid, pw.pw_gid)
        box.chmod(0o700)
        child = subprocess.Popen(
            ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--inh-caps=-all",
             "--no-new-privs", "--", "nsenter", f"--user={pin}", "--", "/usr/bin/python3", "-c", AS_SERVICE,
             str(box)], env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}, cwd="/",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout.readline().split() == ["euid", "0"], child.stderr.read() if child.poll() else ""
        pid = _probe_pid("765409")
        assert pid is not None
        status = dict(ln.split(":", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines())
        uids = {int(u) for u in status["Uid"].split()}
        assert uids == {start + sandbox.UID - 1}, status["Uid"]
        assert 0 not in uids and pw.pw_uid not in uids
        assert status["Seccomp"].strip() == "2"
        copy = box / "work" / "copy"
        assert copy.read_text() == "restored\n" and copy.stat().st_uid == start + sandbox.UID - 1
        child.communicate("\n", timeout=60)
        assert child.returncode == 0
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        shutil.rmtree(box, ignore_errors=True)
        subprocess.run(["bash", str(script), "unpin", str(pin)], check=False)
        subprocess.run(["rmdir", "--ignore-fail-on-non-empty", str(pin.parent)], check=False)
        subprocess.run(["userdel", user], check=False)
        for name in ("/etc/subuid", "/etc/subgid"):
            lines = Path(name).read_text().splitlines(keepends=True)
            Path(name).write_text("".join(ln for ln in lines if ln.split(":")[0] != user))


#: A probe that lives long enough to be looked at from the host (sleep takes fractions: a unique argv).
SLOW_SPEC = """version: 1
name: slow
kind: full
probes:
  - kind: command
    command: [/usr/bin/sleep, "12.765417"]
    expect_exit: 0
    timeout: 2m
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="pins a user namespace")
def test_a_daemon_drill_runs_its_probes_in_the_probe_user_namespace(policy, stack, tmp_path, monkeypatch):
    """backupd.service's scheduled drills (actions.drill_userns): `backupd drill` runs inside the pinned
    namespace and its probe is a subordinate id on the host, not the caller's uid or the sandbox's 65530;
    the drill's report comes back to the daemon."""
    from concurrent.futures import ThreadPoolExecutor

    from backupd.actions import drill_userns
    from backupd.config import loader as config

    script, pin = ROOT / "deploy" / "systemd" / "probe-userns.sh", Path("/run/backupd-userns-test/daemon")
    ids = {name: Path(name).read_text() if Path(name).exists() else None for name in ("/etc/subuid", "/etc/subgid")}
    programs, specs = tmp_path / "programs", tmp_path / "specs"
    programs.mkdir()
    (programs / "tool").write_text("#!/bin/sh\n")
    specs.mkdir()
    (specs / "slow.yaml").write_text(SLOW_SPEC)
    setup = policy(program_target("userns-programs", "slow", programs), "t-probe-userns", restore_tests=f"'{specs}'")
    assert setup.cli("backup", "--target", "userns-programs").code == 0
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(drill_userns, "PASSED", drill_userns.PASSED + tuple(stack.env))
    try:
        subprocess.run(["bash", str(script), "allocate", "root"], check=True)
        subprocess.run(["bash", str(script), "pin", "root", str(pin)], check=True)
        start = next(int(ln.split(":")[1]) for ln in Path("/etc/subuid").read_text().splitlines()
                     if ln.split(":")[0] == "root")
        with ThreadPoolExecutor(1) as pool:
            drill = pool.submit(drill_userns.run, config.load(setup.config), "userns-programs", full=True,
                                userns=str(pin))
            pid = _probe_pid("12.765417", 300, until=drill.done)
            uid_line = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split("\n")[0] if pid else ""
            (report,) = drill.result(timeout=600)
        assert report["status"] == "ok" and report["verdict"] == "PASS", report
        assert {int(u) for u in uid_line.split()} == {start + sandbox.UID - 1}, uid_line
        assert report["status"] == "ok" and report["verdict"] == "PASS", report
        assert not Path(report["sandbox"]).exists()
    finally:
        subprocess.run(["bash", str(script), "unpin", str(pin)], check=False)
        subprocess.run(["rmdir", "--ignore-fail-on-non-empty", str(pin.parent)], check=False)
        for name, text in ids.items():
            if text is None:
                Path(name).unlink(missing_ok=True)
            else:
                Path(name).write_text(text)
