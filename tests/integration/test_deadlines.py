"""No hang, no orphan, no false damage, on real restic and SeaweedFS.

- an S3 endpoint that accepts connections and never answers: `backupd backup` exits 3 within its deadline,
  both when the pre-flight catches it and when the storage stalls after the pre-flight (job deadline);
- a dead storage with several targets: one pre-flight, every target exits 3 with the same reason;
- SIGTERM and SIGKILL of `backupd backup` mid-run: no restic left, the next run needs no unlock;
- restic killed with -9 mid-backup: `backupd check` removes the stale lock, reads its slice, reports no
  damage and records coverage.

Bounds below are generous: they prove "returns", not speed. The shared stack is never stopped: dead
storage is a closed port or a black-hole listener of the test's own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backupd.actions.common import repository
from backupd.config import loader as config_mod
from backupd.engine import check as restic_check
from backupd.engine import locks as restic_locks
from backupd.policy.lint import load_policy_set
from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.restic]
BOUND = 180  # seconds: "it returned", on a loaded 2-core machine


class BlackHole:
    """A TCP listener that accepts and never answers. With `forward_to`, requests from boto3 (the
    pre-flight) are relayed to a real endpoint, so the pre-flight passes and only restic's requests
    vanish: storage that stalls after answering once."""

    def __init__(self, forward_to: tuple[str, int] | None = None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.forward_to = forward_to
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.forward_to:
                threading.Thread(target=self._route, args=(conn,), daemon=True).start()

    def _route(self, conn: socket.socket) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
        except OSError:
            return
        if b"backupd-preflight" not in head.lower():
            return  # restic's request: never answered
        upstream = socket.create_connection(self.forward_to)
        upstream.sendall(head)
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._relay, args=(a, b), daemon=True).start()

    @staticmethod
    def _relay(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for c in self.held:
            c.close()
        self.sock.close()


def stalling_storage(stack) -> BlackHole:
    host, port = stack.env["BACKUPD_S3_ENDPOINT"].split("//")[-1].rsplit(":", 1)
    return BlackHole(forward_to=(host, int(port)))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def restics(repo_path: str) -> list[int]:
    """PIDs of restic processes working on a repository whose URL contains repo_path (from /proc)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if comm == "restic" and any(e.startswith(b"RESTIC_REPOSITORY=") and repo_path.encode() in e for e in env):
            found.append(int(pid))
    return found


def wait_for(predicate, what: str, bound: float = BOUND):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def no_restic_left(repo_path: str) -> None:
    wait_for(lambda: not restics(repo_path), "every restic of the run to be gone", bound=20)


def cli_proc(setup, *args: str) -> subprocess.Popen:
    env = {**os.environ, **setup.stack.env, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "backupd", *args, "--config", str(setup.config)], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def repo_of(setup):
    cfg = config_mod.load(setup.config)
    ps = load_policy_set(cfg.policy_files(), cfg.secrets_dir, env=setup.stack.env)
    return repository(cfg, "worm", ps.destinations["worm"])


DOCS = """  - name: docs
    category: documentation
    owner: test
    sources: {paths: ['${TOS_ROOT}/docs']}
    frequency: 1d
    retention: {keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
"""


def stalling_dump(mark: Path, go: Path) -> str:
    """A dump target: 8 MB reach restic, then the dump stalls (exec: no grandchild) until GO exists."""
    script = f"head -c 8000000 /dev/urandom; if [ ! -e {go} ]; then touch {mark}; exec sleep 600; fi"
    return f"""  - name: slow
    category: container_data
    owner: test
    sources: {{dump: {{kind: command, command: [sh, -c, '{script}']}}}}
    frequency: 1h
    rto: 8h
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


def test_a_black_hole_storage_fails_the_backup_within_the_deadline(policy, tmp_path):
    hole = BlackHole()
    try:
        setup = policy(DOCS, f"t-hole-{tmp_path.name}", endpoint=hole.url, retry_attempts=1,
                       storage_timeout_seconds=3, job_timeout_seconds=60)
        t0 = time.monotonic()
        run = setup.cli("backup", "--target", "docs", "--json", timeout=BOUND)
        took = time.monotonic() - t0
    finally:
        hole.close()
    assert run.code == 3, run.stderr
    (result,) = run.doc["results"]
    assert result["status"] == "unavailable" and "no answer within 3 s" in result["error"]
    assert took < BOUND
    no_restic_left(f"t-hole-{tmp_path.name}")


def test_storage_that_stalls_after_the_pre_flight_is_bounded_by_the_job_deadline(policy, stack, tmp_path):
    hole = stalling_storage(stack)  # the pre-flight reaches SeaweedFS; restic's requests vanish
    repo_path = f"t-stall-{tmp_path.name}"
    try:
        setup = policy(DOCS, repo_path, endpoint=hole.url, retry_attempts=1, storage_timeout_seconds=5,
                       job_timeout_seconds=20)
        t0 = time.monotonic()
        run = setup.cli("backup", "--target", "docs", "--json", timeout=BOUND)
        took = time.monotonic() - t0
    finally:
        hole.close()
    assert run.code == 3, run.stderr
    (result,) = run.doc["results"]
    assert result["status"] == "unavailable" and "timed out" in result["error"], result
    assert took < BOUND
    no_restic_left(repo_path)


def test_dead_storage_costs_one_pre_flight_for_every_target(policy, tmp_path):
    setup = policy(DOCS, "t-dead", endpoint=f"http://127.0.0.1:{closed_port()}", retry_attempts=3,
                   retry_wait_seconds=2)
    run = setup.cli("backup", "--json", timeout=BOUND)
    assert run.code == 3, run.stderr
    results = run.doc["results"]
    assert len(results) >= 3 and all(r["status"] == "unavailable" for r in results)
    assert len({r["error"] for r in results}) == 1 and "pre-flight" in results[0]["error"]
    assert not any("attempt" in n for r in results for n in r["notes"])  # nobody retried on its own


def test_sigterm_and_sigkill_of_backup_leave_no_restic_and_no_lock_to_unlock(policy, tmp_path):
    mark, go = tmp_path / "MARK", tmp_path / "GO"
    repo_path = f"t-signals-{tmp_path.name}"
    setup = policy(stalling_dump(mark, go), repo_path)
    repo = repo_of(setup)

    proc = cli_proc(setup, "backup", "--target", "slow", "--json")
    wait_for(mark.exists, "the backup to be mid-way")
    assert restics(repo_path)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=BOUND)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert json.loads(out)["exit_code"] == 128 + signal.SIGTERM, "--json says how the run ended"
    assert "Traceback" not in err
    no_restic_left(repo_path)
    assert not restic_locks.list_locks(repo)  # restic was stopped with SIGINT and removed its lock

    mark.unlink()
    proc = cli_proc(setup, "backup", "--target", "slow", "--json")
    wait_for(mark.exists, "the backup to be mid-way again")
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the same clean stop, the shell's exit code
    out, err = proc.communicate(timeout=BOUND)
    assert proc.returncode == 128 + signal.SIGINT, err
    no_restic_left(repo_path)
    assert not restic_locks.list_locks(repo)

    mark.unlink()
    proc = cli_proc(setup, "backup", "--target", "slow", "--json")
    wait_for(mark.exists, "the third backup to be mid-way")
    victims = restics(repo_path)
    assert victims
    proc.kill()  # SIGKILL: no handler runs; the parent-death signal must take restic down
    proc.communicate(timeout=BOUND)
    no_restic_left(repo_path)

    go.touch()
    run = setup.cli("backup", "--target", "slow", "--json", timeout=BOUND)  # no manual unlock
    assert run.code == 0, run.stdout + run.stderr
    assert run.doc["results"][0]["status"] == "ok"
    assert not restic_locks.list_locks(repo)
    assert restic_check.check(repo).ok


def test_a_killed_restics_lock_is_not_damage_for_check(policy, tmp_path):
    mark, go = tmp_path / "MARK", tmp_path / "GO"
    repo_path = f"t-killed-{tmp_path.name}"
    setup = policy(stalling_dump(mark, go), repo_path)
    repo = repo_of(setup)
    go.touch()
    assert setup.cli("backup", "--target", "slow", "--json", timeout=BOUND).code == 0  # data to check
    go.unlink()

    proc = cli_proc(setup, "backup", "--target", "slow", "--json")
    wait_for(mark.exists, "the backup to be mid-way")
    for pid in restics(repo_path):
        os.kill(pid, signal.SIGKILL)  # restic dies, backupd lives: its lock stays behind
    proc.communicate(timeout=BOUND)
    assert restic_locks.list_locks(repo), "restic's lock should outlive a SIGKILL"

    run = setup.cli("check", "--json", timeout=BOUND)
    assert run.code == 0, run.stdout + run.stderr
    (result,) = run.doc["results"]
    assert result["status"] == "ok" and result["coverage"] > 0 and "damaged" not in run.stdout
    assert not restic_locks.list_locks(repo)
    assert restic_check.check(repo).ok


def test_a_file_targets_restic_dies_with_a_terminated_or_killed_backup_and_daemon(policy, stack, tmp_path):
    """The file-target path (plain restic, not a dump pipeline), stuck on storage that stopped answering:
    SIGTERM stops it (exit 143), SIGKILL of the CLI or of the daemon (restic started by a worker thread)
    takes it down through the parent-death signal."""
    hole = stalling_storage(stack)
    repo_path = f"t-file-kill-{tmp_path.name}"
    try:
        setup = policy(DOCS, repo_path, endpoint=hole.url, job_timeout_seconds=600, daemon="{jitter_seconds: 0}")

        proc = cli_proc(setup, "backup", "--target", "docs", "--json")
        wait_for(lambda: restics(repo_path), "restic to be stuck on the storage")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=BOUND)
        assert proc.returncode == 128 + signal.SIGTERM, err
        no_restic_left(repo_path)

        proc = cli_proc(setup, "backup", "--target", "docs", "--json")
        wait_for(lambda: restics(repo_path), "restic to be stuck again")
        proc.kill()
        proc.communicate(timeout=BOUND)
        no_restic_left(repo_path)

        env = {**os.environ, **setup.stack.env, "PYTHONPATH": str(ROOT)}
        env.pop("NOTIFY_SOCKET", None)
        daemon = subprocess.Popen([sys.executable, "-m", "backupd", "daemon", "--config", str(setup.config)],
                                  env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: restics(repo_path), "the daemon's restic to be stuck")
        finally:
            daemon.kill()  # only the daemon: no process-group or cgroup kill helps here
            daemon.wait(timeout=BOUND)
        no_restic_left(repo_path)
    finally:
        hole.close()


def test_a_stale_exclusive_lock_in_a_backups_way_is_removed_and_the_backup_written(policy, tmp_path):
    """A backup lists no locks up front (a restic start-up per run); the exclusive lock of a prune killed
    with -9 stops restic, so the backup clears the provably stale lock, records it, and backs up."""
    repo_path = f"t-xlock-{tmp_path.name}"
    setup = policy(DOCS, repo_path)
    repo = repo_of(setup)
    assert setup.cli("backup", "--target", "docs", "--json", timeout=BOUND).code == 0
    env = repo.environment()
    prune = subprocess.Popen(["restic", "prune", "--limit-download", "1"], env={**env.plain, **env.secret,
                             "PATH": os.environ["PATH"]}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(lk.exclusive for lk in restic_locks.list_locks(repo)), "prune's exclusive lock")
    finally:
        prune.kill()
        prune.wait(timeout=BOUND)

    run = setup.cli("backup", "--target", "docs", "--json", timeout=BOUND)
    assert run.code == 0, run.stdout + run.stderr
    assert run.doc["results"][0]["status"] == "ok"
    assert not restic_locks.list_locks(repo)
    ledger = (setup.dir / "state" / "evidence" / "ledger.jsonl").read_text().splitlines()
    removed = [r["data"] for r in map(json.loads, ledger) if r["kind"] == "locks"]
    assert [(r["event"], [lk["pid"] for lk in r["removed"]]) for r in removed] == [("stale_removed", [prune.pid])]
