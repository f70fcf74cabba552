"""SIGTERM ends `backupd backup` within 2 s in every phase, with the clean-up of any stop: exit 143, a failed
backup record (state and ledger), no child left, no restic lock.

- the S3 pre-flight against an endpoint that accepts connections and never answers (a black hole);
- the manifest hashing of a large tree (sparse files: gigabytes to read, no disk used);
- the evidence mirror upload, the mirror a black hole while the backup's own storage works;
- the dump streaming (pg_dump | restic backup --stdin), the dump stalled.

The first two need no storage at all (the backup never reaches it), so they run without the shared stack.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backupd.engine import locks as restic_locks
from tests.integration.conftest import FILLER, POLICY_HEAD, ROOT, program_target
from tests.integration.test_deadlines import BlackHole, repo_of, stalling_dump, wait_for

pytestmark = pytest.mark.integration
STOP_WITHIN = 2.0  # seconds from SIGTERM to exit: the contract
BOUND = 60  # waiting for a phase to begin, on a loaded machine

DOCS = """  - name: docs
    category: documentation
    owner: test
    sources: {{paths: ['{tree}']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


def standalone(tmp: Path, endpoint: str, tree: Path) -> Path:
    """backupd.yaml for one `docs` target of `tree` on the S3 endpoint, with fake keys: no stack needed."""
    secrets, pdir, root = tmp / "secrets", tmp / "policies", tmp / "root"
    for d in (secrets, pdir, *(root / sub for sub in ("programs/development", "exports", "logs/network"))):
        d.mkdir(parents=True, exist_ok=True)
        if d.parent == root or d.parent.parent == root:
            (d / "f.txt").write_text("x\n")
    secrets.chmod(0o700)
    for name, text in (("s3-writer.env", "AWS_ACCESS_KEY_ID=AKIDEXAMPLE\nAWS_SECRET_ACCESS_KEY=example-secret-key\n"),
                       ("restic-password", "example-restic-password\n")):
        (secrets / name).write_text(text)
        (secrets / name).chmod(0o600)
    head = POLICY_HEAD.format(endpoint=endpoint, repo_path="repo")
    (pdir / "test.yaml").write_text(head + DOCS.format(tree=tree) + FILLER.format(root=root))
    config = tmp / "backupd.yaml"
    config.write_text(f"policies: ['{pdir}/*.yaml']\nstate_dir: '{tmp / 'state'}'\nsecrets_dir: '{secrets}'\n"
                      "host: it-host\nstorage_timeout_seconds: 30\nretry_attempts: 1\n")
    return config


def start(config: Path, marker: Path, env: dict | None = None) -> subprocess.Popen:
    """`backupd backup --target docs --json` in its own process group. TMPDIR is the marker every child
    inherits (execute passes it on), so a child left behind is found even outside the group."""
    marker.mkdir(exist_ok=True)
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT), "TMPDIR": str(marker)}
    return subprocess.Popen([sys.executable, "-m", "backupd", "backup", "--target", "docs", "--json",
                             "--config", str(config)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def left_behind(pgid: int, marker: Path) -> list[str]:
    """Processes still in the process group, or carrying the marker in their environment."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        group = int(stat.rsplit(")", 1)[1].split()[2])
        if group == pgid or f"TMPDIR={marker}".encode() in env:
            found.append(f"{pid} {stat.split(' (', 1)[1].split(')')[0]}")
    return found


def _reaper(pid: int) -> bool:
    try:
        return b"backupd.drill.reaper" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def terminate(proc: subprocess.Popen, marker: Path) -> tuple[str, str]:
    """SIGTERM; asserts it exited within STOP_WITHIN leaving no process behind; (stdout, stderr)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=STOP_WITHIN + 30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    took = time.monotonic() - t0
    # a drill's sandbox reaper (backupd.drill.reaper) is meant to outlive the command, briefly: it must end
    # on its own, and nothing else may be left
    wait_for(lambda: not [p for p in left_behind(proc.pid, marker) if _reaper(int(p.split()[0]))],
             "the sandbox reaper to finish", bound=10)
    leftovers = left_behind(proc.pid, marker)
    for line in leftovers:  # never leave them to the next test
        os.kill(int(line.split()[0]), signal.SIGKILL)
    assert took < STOP_WITHIN, f"SIGTERM took {took:.1f} s to take effect (or more: killed then)"
    assert not leftovers, f"left behind: {leftovers}"
    assert "Traceback" not in err, err
    return out, err


def recorded(state: Path) -> tuple[list, list]:
    """(backup rows of state.sqlite, backup records of the ledger) of a state directory."""
    with sqlite3.connect(state / "state.sqlite") as db:
        rows = db.execute("SELECT target, status FROM runs WHERE job = 'backup'").fetchall()
    ledger = [json.loads(line) for line in (state / "evidence" / "ledger.jsonl").read_text().splitlines()]
    return rows, [r["data"] for r in ledger if r["kind"] == "backup"]


def assert_stopped(doc: dict, rows: list, records: list, status: str = "failed") -> None:
    assert doc["exit_code"] == 128 + signal.SIGTERM
    (result,) = doc["results"]
    assert result["status"] == status, result
    assert rows == [("docs", status)], "the stopped backup is in the run history"
    assert [r["status"] for r in records] == [status], "and in the evidence ledger"


def test_sigterm_during_a_black_hole_pre_flight_stops_within_2_s(tmp_path):
    hole = BlackHole()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    config = standalone(tmp_path, hole.url, tree)
    marker = tmp_path / "marker"
    try:
        t0 = time.monotonic()
        proc = start(config, marker)
        wait_for(lambda: hole.held, "the pre-flight to reach the black hole", bound=BOUND)
        time.sleep(max(0.0, 3.0 - (time.monotonic() - t0)))  # "3 s in", as reported
        doc = json.loads(terminate(proc, marker)[0])
    finally:
        hole.close()
    assert_stopped(doc, *recorded(config.parent / "state"))
    assert "cancelled" in doc["results"][0]["error"]


def _reading(pid: int, tree: Path) -> bool:
    """The process has a file of `tree` open (it is hashing it)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(tree)):
                return True
        except OSError:
            continue
    return False


def test_sigterm_mid_hash_of_a_large_tree_stops_within_2_s(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(4):  # 24 GB to hash: minutes; sparse, so no disk is used
        with open(tree / f"big{i}.bin", "wb") as f:
            f.truncate(6 << 30)
    config = standalone(tmp_path, "http://127.0.0.1:9", tree)  # never reached
    marker = tmp_path / "marker"
    proc = start(config, marker)
    wait_for(lambda: _reading(proc.pid, tree), "the hashing to begin", bound=BOUND)
    time.sleep(0.5)
    doc = json.loads(terminate(proc, marker)[0])
    assert_stopped(doc, *recorded(config.parent / "state"))
    assert not (config.parent / "state" / "hashcache" / "docs.json").exists(), "no half-built hash cache kept"


MIRROR_HOLE = """  hole:
    kind: s3
    endpoint: {endpoint}
    bucket: evidence
    object_lock: true
    credentials_file: s3-writer.env
    password_file: restic-password
"""


def test_sigterm_during_a_black_hole_evidence_upload_stops_within_2_s(policy, stack, tmp_path):
    """The backup itself works; its evidence record meets a mirror that never answers. The record stays in
    the ledger (pending: the next push takes it); restic is gone and left no lock."""
    hole = BlackHole()
    repo_path = f"t-mirror-hole-{tmp_path.name}"
    try:
        setup = policy(DOCS.format(tree=Path(stack.env["TOS_ROOT"]) / "docs"), repo_path,
                       storage_timeout_seconds=30, **{"evidence": "{mirror: hole}"})
        pfile = setup.dir.parent / "policies" / "test.yaml"
        pfile.write_text(pfile.read_text().replace("targets:\n", MIRROR_HOLE.format(endpoint=hole.url)
                                                   + "targets:\n", 1))
        marker = tmp_path / "marker"
        proc = start(setup.config, marker, stack.env)
        wait_for(lambda: hole.held, "the evidence record to reach the mirror", bound=BOUND * 3)
        time.sleep(0.5)
        doc = json.loads(terminate(proc, marker)[0])
    finally:
        hole.close()
    assert_stopped(doc, *recorded(setup.dir / "state"), status="ok")
    assert not restic_locks.list_locks(repo_of(setup))


def test_sigterm_during_dump_streaming_stops_within_2_s(policy, stack, tmp_path):
    mark, go = tmp_path / "MARK", tmp_path / "GO"
    setup = policy(stalling_dump(mark, go).replace("name: slow", "name: docs"), f"t-dump-{tmp_path.name}")
    marker = tmp_path / "marker"
    proc = start(setup.config, marker, stack.env)
    wait_for(mark.exists, "the dump to be streaming", bound=BOUND * 3)
    doc = json.loads(terminate(proc, marker)[0])
    assert_stopped(doc, *recorded(setup.dir / "state"))
    assert not restic_locks.list_locks(repo_of(setup)), "restic was stopped with SIGINT and removed its lock"


#: A probe that ignores SIGINT and SIGTERM (so does the sleep it becomes); its argv is unique, to be found.
STUBBORN_SPEC = """version: 1
name: stubborn
kind: full
probes:
  - kind: command
    command: [/bin/sh, -c, "trap '' INT TERM; exec /usr/bin/sleep 23.456789"]
    expect_exit: 0
    timeout: 2m
"""


def _stubborn() -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == b"/usr/bin/sleep\x0023.456789\x00":
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_sigterm_during_a_probe_that_ignores_signals_stops_the_drill_within_2_s(policy, stack, tmp_path):
    programs, specs = tmp_path / "programs", tmp_path / "specs"
    (programs / "bin").mkdir(parents=True)
    (programs / "bin" / "tool").write_text("#!/bin/sh\necho ok\n")
    specs.mkdir()
    (specs / "stubborn.yaml").write_text(STUBBORN_SPEC)
    setup = policy(program_target("docs", "stubborn", programs), f"t-probe-stop-{tmp_path.name}",
                   restore_tests=f"'{specs}'")
    assert setup.cli("backup", "--target", "docs").code == 0
    marker = tmp_path / "marker"
    marker.mkdir()
    env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT), "TMPDIR": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "backupd", "drill", "--target", "docs", "--full", "--json",
                             "--config", str(setup.config)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: _stubborn() or proc.poll() is not None, "the probe to run", bound=BOUND * 3)
    except AssertionError:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("no probe ran: " + "".join(proc.communicate())[-3000:]) from None
    assert proc.poll() is None, "the drill ended before its probe ran: " + "".join(proc.communicate())
    try:
        terminate(proc, marker)
        assert not _stubborn(), "the probe was killed"
    finally:
        for pid in _stubborn():
            os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_the_daemon_within_2_s_while_its_job_probes_a_black_hole(tmp_path):
    """The daemon's catch-up backup is in its storage probe when SIGTERM comes: the job ends cancelled at
    once and the stop does not probe the black hole again (nothing of restic ran there to leave a lock)."""
    hole = BlackHole()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    config = standalone(tmp_path, hole.url, tree)
    marker = tmp_path / "marker"
    marker.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "backupd", "daemon", "--config", str(config)], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for(lambda: hole.held, "the daemon's job to probe the black hole", bound=BOUND)
        _, err = terminate(proc, marker)
    finally:
        hole.close()
    assert proc.returncode == 0
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (end,) = [e for e in events if e["event"] == "job_end"]
    assert end["outcome"] == "cancelled", end
