"""The probe sandbox (backupd.process.sandbox): the argv it builds, output bounding and scrubbing, secrets."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from backupd.process import execute, sandbox
from backupd.process.sandbox import Jail, Limits

RESTORE, WORK = Path("/var/lib/backupd/sandbox/drill-1/restore"), Path("/var/lib/backupd/sandbox/drill-1/work")
FORBIDDEN = ("/etc/backupd", "/var/lib/backupd/keys", "/var/lib/backupd/state", "/run/credentials", "secrets")


def _jail(uid) -> Jail:
    return Jail(readonly=(RESTORE,), writable=(WORK,), root=RESTORE.parent, uid=uid,
                limits=Limits(memory=1 << 30, processes=64, file_size=1 << 20, tmp=1 << 20))


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_as_root_an_outer_bwrap_builds_the_view_then_drops_to_the_sandbox_uid():
    argv = _jail(sandbox.UID).argv(["bin/tos-server", "--version"], cwd=str(RESTORE))
    assert argv[0] == "bwrap" and "--unshare-user" not in argv[:argv.index("setpriv")]
    drop = argv[argv.index("setpriv"):argv.index("--", argv.index("setpriv")) + 1]
    assert drop == ["setpriv", f"--reuid={sandbox.UID}", f"--regid={sandbox.UID}", "--clear-groups",
                    "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs", "--"]
    inner = argv[argv.index("bwrap", 1):]
    for flag in (*sandbox.NAMESPACES, "--disable-userns", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in inner, flag
    assert inner[inner.index("--uid") + 1] == inner[inner.index("--gid") + 1] == "65534"
    assert ["--bind", "/", "/", "--proc", "/proc", "--dev", "/dev"] == inner[inner.index("--bind"):][:7]
    assert "--share-net" not in argv



def test_the_outer_bwrap_shows_its_own_proc_unless_bwrap_would_cover_it(tmp_path):
    """Root of a user namespace (the units' drills) cannot write /proc/sys: the outer's own proc, whose PIDs the
    inner bwrap reads (a container's /proc lacks them: "open /proc/3/ns failed"); root of the host gets
    read-only covers on a fresh proc that keep the inner bwrap from mounting one: the host's."""
    assert sandbox.outer_proc(str(tmp_path / "unwritable")) == ["--proc", "/proc"]
    (tmp_path / "sys").mkdir()
    assert sandbox.outer_proc(str(tmp_path)) == ["--bind", "/proc", "/proc"]

def test_not_root_one_bwrap_and_the_capabilities_dropped_first():
    argv = _jail(None).argv(["x"])
    assert argv[:5] == ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs", "--"]
    assert argv[5] == "bwrap" and argv.count("bwrap") == 1 and "--reuid" not in " ".join(argv)
    assert _pairs(argv, "--proc") == ["/proc"]


@pytest.mark.parametrize("uid", [sandbox.UID, None])
def test_the_mount_view_is_an_allow_list(uid):
    argv = _jail(uid).argv(["x"])
    assert _pairs(argv, "--ro-bind").count(str(RESTORE)) == 1 and _pairs(argv, "--bind").count(str(WORK)) == 1
    assert str(WORK) not in _pairs(argv, "--ro-bind") and str(RESTORE) not in _pairs(argv, "--bind")
    # as root the inner bwrap re-binds the outer view ("/") and covers the outer's /proc with its own
    inner_only = {"/", "/proc"} if uid is not None else set()
    assert uid is None or argv.index("/proc") < argv.index("setpriv") < len(argv) - argv[::-1].index("--proc")
    shown = [a for a in _pairs(argv, "--ro-bind") + _pairs(argv, "--bind") if a not in inner_only]
    for path in shown:
        assert path.startswith(("/usr", "/bin", "/sbin", "/lib", "/etc/")) or path in (str(RESTORE), str(WORK))
    etc = [p for p in shown if p.startswith("/etc/")]
    assert etc and all(p.removeprefix("/etc/") in sandbox.ETC_FILES for p in etc)
    joined = " ".join(argv)
    for secret_place in FORBIDDEN:
        assert secret_place not in joined
    tmpfs = [argv[i - 3:i + 2] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert ["--perms", "1777", "--size", str(1 << 20), "--tmpfs", "/tmp"] in \
        [argv[i - 4:i + 2] for i, a in enumerate(argv) if a == "--tmpfs"], tmpfs


def test_limits_wrap_the_command():
    argv = _jail(None).argv(["bin/tos-server", "--version"], cwd="/x")
    assert argv[argv.index("--chdir") + 1] == "/x"
    tail = argv[argv.index(sandbox.PRLIMIT):]
    assert tail == [sandbox.PRLIMIT, f"--as={1 << 30}", "--nproc=64", f"--fsize={1 << 20}", "--core=0", "--",
                    "bin/tos-server", "--version"]


def test_binds_create_missing_parents_and_put_nested_writable_dirs_after_their_parent():
    args = sandbox.binds([Path("/srv/box/restore")], [Path("/srv/box/restore/work")])
    assert args == ["--perms", "0755", "--dir", "/srv", "--perms", "0755", "--dir", "/srv/box",
                    "--ro-bind", "/srv/box/restore", "/srv/box/restore",
                    "--bind", "/srv/box/restore/work", "/srv/box/restore/work"]


def test_system_view_keeps_merged_usr_links_and_only_listed_etc_files(tmp_path):
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "shadow", "backupd"):
        (tmp_path / "etc" / name).write_text("x")
    args = sandbox.system_view(str(tmp_path))
    assert ["--symlink", "usr/bin", "/bin"] == args[args.index("--symlink"):][:3]
    assert "/etc/passwd" in args and "/etc/shadow" not in args and "/etc/backupd" not in args


def test_scrub_removes_secrets_in_plain_base64_and_hex_and_control_characters():
    secret = "s3cr3t-Passw0rd"
    text = (f"a {secret} b {base64.b64encode(secret.encode()).decode()} c {secret.encode().hex()} "
            "\x1b[31mred\x07\r\n").encode()
    out = sandbox.scrub(text, [secret, "abc"])
    assert secret.encode() not in out and out.count(b"[REDACTED]") == 3
    assert b"\x1b" not in out and b"\x07" not in out and b"\r" not in out and out.endswith(b"red\n")
    assert sandbox.scrub(b"abc", ["abc"]) == b"abc"  # too short to be a secret worth scrubbing


def test_bound_keeps_the_tail_and_marks_the_cut():
    assert sandbox.bound(b"12345", 10) == b"12345"
    assert sandbox.bound(b"0123456789", 4) == b"[...]6789"


def test_secrets_in_reads_every_line_and_value_of_the_secret_files(tmp_path):
    (tmp_path / "s3-writer.env").write_text("AWS_ACCESS_KEY_ID=AKIDWRITER\n"
                                            "AWS_SECRET_ACCESS_KEY='wJalrXUtnFEMI'\n")
    (tmp_path / "restic-password").write_text("correct horse battery\n")
    key = tmp_path / "keys"
    key.mkdir()
    (key / "evidence-ed25519.key").write_text("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIQ\n"
                                              "-----END PRIVATE KEY-----\n")
    found = sandbox.secrets_in(tmp_path, key, None, tmp_path / "missing")
    for value in ("AKIDWRITER", "wJalrXUtnFEMI", "correct horse battery", "MC4CAQAwBQYDK2VwBCIEIQ"):
        assert value in found
    assert not any(v.startswith("-----") for v in found)


def test_bounded_capture_holds_only_the_tail_even_of_one_endless_line():
    done = execute.run(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo END"], timeout=60,
                       max_output=1000)
    assert len(done.stdout) == 1000 and done.stdout.endswith(b"xEND\n") and done.truncated


def test_limit_hints_name_the_limit_broken():
    lim = Limits(processes=32)
    fork = execute.Completed(argv=["x"], returncode=2, stderr="sh: 0: Cannot fork\n")
    assert "process limit (32)" in sandbox.limit_reached(fork, lim)
    big = execute.Completed(argv=["x"], returncode=153)
    assert "file size limit" in sandbox.limit_reached(big, lim)
    assert sandbox.limit_reached(execute.Completed(argv=["x"], returncode=1, stderr="no"), lim) is None


def test_hand_over_never_touches_a_path_outside_the_sandbox(tmp_path):
    jail = Jail(readonly=(tmp_path / "box" / "restore",), root=tmp_path / "box", uid=sandbox.UID)
    with pytest.raises(ValueError):
        jail.hand_over(tmp_path / "elsewhere")


def test_a_confined_run_is_bounded_and_scrubbed(tmp_path):
    box = tmp_path / "box"
    (box / "restore").mkdir(parents=True)
    (box / "work").mkdir()
    jail = Jail(readonly=(box / "restore",), writable=(box / "work",), root=box, secrets=("hunter2-password",),
                limits=Limits(output=4096))
    done = jail.run(["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' y; echo; echo hunter2-password; "
                     "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; id -u"], timeout=60)
    out = done.stdout.decode()
    assert done.returncode == 0 and done.truncated and len(done.stdout) <= 4096
    assert "hunter2" not in out and "[REDACTED]" in out
    assert "CapEff:\t0000000000000000" in out and "CapBnd:\t0000000000000000" in out
    assert "NoNewPrivs:\t1" in out and out.rstrip().endswith("65534")


def _running(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace"):
                found.append(pid)
        except OSError:
            pass
    return found


def test_when_a_run_returns_no_process_of_it_is_left_not_even_a_setsid_one(tmp_path):
    box = tmp_path / "box"
    (box / "work").mkdir(parents=True)
    jail = Jail(writable=(box / "work",), root=box)
    done = jail.run(["sh", "-c", "setsid sleep 543210 </dev/null >/dev/null 2>&1 & sleep 543211"], timeout=2)
    assert done.timed_out
    assert _running("54321") == []  # checked at once: run() returns only after the PID namespace is empty


SERVICE_RUN = """
import json, sys
from pathlib import Path
from backupd.process.sandbox import Jail
work = Path(sys.argv[1])
def status():
    lines = (ln.split(":", 1) for ln in open("/proc/self/status"))
    return {k: v.strip() for k, v in lines if k.startswith("Cap")}
done = Jail(writable=(work,), root=work.parent).run(
    ["sh", "-c", "grep -E '^Cap' /proc/self/status; id -u; echo x > out && echo wrote"], timeout=60)
print(json.dumps({"daemon": status(), "code": done.returncode, "out": done.stdout.decode(), "err": done.stderr}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged service user")
def test_as_the_service_user_with_its_ambient_capability_a_run_is_confined_without_it():
    """The systemd unit runs backupd as a plain user with ambient CAP_DAC_READ_SEARCH and no_new_privs:
    bwrap refuses to start with a capability, so the sandbox drops it first; the probe has none."""
    box = Path(tempfile.mkdtemp(prefix="backupd-service-test-"))
    try:
        (box / "work").mkdir()
        for path in (box, box / "work"):
            os.chown(path, 65531, 65531)
        root = Path(__file__).resolve().parents[2]
        done = subprocess.run(
            ["setpriv", "--reuid=65531", "--regid=65531", "--clear-groups", "--inh-caps=+dac_read_search",
             "--ambient-caps=+dac_read_search", "--no-new-privs", "--", sys.executable, "-c", SERVICE_RUN,
             str(box / "work")], env={"PATH": os.environ["PATH"], "PYTHONPATH": str(root)}, cwd=box,
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["daemon"]["CapAmb"] == "0000000000000004"  # CAP_DAC_READ_SEARCH, as in the unit
        assert doc["code"] == 0, doc
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert f"{cap}:\t0000000000000000" in doc["out"]
        assert doc["out"].rstrip().endswith("65534\nwrote") and (box / "work" / "out").exists()
    finally:
        shutil.rmtree(box, ignore_errors=True)


#: Run inside the sandbox: its seccomp mode and what each call the filter denies returned (errno name).
FILTER_PROBE = r"""
import ctypes, errno, json
libc = ctypes.CDLL(None, use_errno=True)
def call(number, *args):
    ctypes.set_errno(0)
    return "ok" if libc.syscall(number, *(ctypes.c_long(a) for a in args)) >= 0 else errno.errorcode[ctypes.get_errno()]
calls = {"keyctl": call(250, 0, -3, 0), "unshare-user": call(272, 0x10000000), "unshare-net": call(272, 0x40000000),
         "setns": call(308, 0, 0), "clone3": call(435, 0, 0), "getpid": call(39)}
status = dict(ln.split(":", 1) for ln in open("/proc/self/status"))
print(json.dumps({"seccomp": status["Seccomp"].strip(), "calls": calls}))
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers of x86_64")
@pytest.mark.parametrize("uid", [sandbox.default_uid(), None], ids=["default", "not-root-layout"])
def test_every_probe_process_runs_under_the_syscall_filter(tmp_path, uid):
    box = tmp_path / "box"
    (box / "work").mkdir(parents=True)
    done = Jail(writable=(box / "work",), root=box, uid=uid).run(["python3", "-c", FILTER_PROBE], timeout=60)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["seccomp"] == "2"  # filter mode
    assert doc["calls"] == {"keyctl": "EPERM", "unshare-user": "EPERM", "unshare-net": "EPERM",
                            "setns": "EPERM", "clone3": "ENOSYS", "getpid": "ok"}, doc


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x32 is an ABI of x86_64")
def test_a_call_of_a_foreign_abi_kills_the_probe(tmp_path):
    """The deny list names native numbers; an x32 call (bit 30 set) would slip past it, so it kills."""
    box = tmp_path / "box"
    (box / "work").mkdir(parents=True)
    code = ("import ctypes; print('before', flush=True); "
            "ctypes.CDLL(None).syscall(0x40000000 | 250, 0, -3, 0); print('after')")
    done = Jail(writable=(box / "work",), root=box).run(["python3", "-c", code], timeout=60)
    assert done.stdout.decode().split() == ["before"]
    assert done.returncode in (128 + 31, -31), done  # SIGSYS


def test_without_libseccomp_no_probe_runs_unfiltered(tmp_path, monkeypatch):
    from backupd.errors import DependencyError
    from backupd.process import seccomp

    def missing(*_a, **_k):
        raise OSError("libseccomp.so.2: cannot open shared object file")
    monkeypatch.setattr(seccomp.ctypes, "CDLL", missing)
    seccomp.program.cache_clear()
    (tmp_path / "box" / "work").mkdir(parents=True)
    jail = Jail(writable=(tmp_path / "box" / "work",), root=tmp_path / "box")
    try:
        with pytest.raises(DependencyError, match="libseccomp2"):
            jail.run(["touch", str(tmp_path / "box" / "work" / "ran")], timeout=30)
        assert not (tmp_path / "box" / "work" / "ran").exists()
    finally:
        seccomp.program.cache_clear()
