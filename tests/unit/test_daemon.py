"""Daemon building blocks without restic: scheduling, lock triage, sd_notify, settings."""

from __future__ import annotations

import random
import socket
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from backupd.actions import locks
from backupd.config.loader import Config
from backupd.daemon import schedule, settings
from backupd.daemon.sdnotify import Notifier
from backupd.engine.locks import Lock, parse_lock
from backupd.errors import ConfigError
from backupd.state.jobs import Job, JobStore

NOW = 1_800_000_000.0


def target(name, seconds):
    return SimpleNamespace(name=name, frequency=timedelta(seconds=seconds))


def test_catch_up_runs_shortest_rpo_first_and_new_targets_are_due():
    stored = {"backup:db": Job("backup:db", "db", 3600, NOW - 7200, NOW - 10800),
              "backup:logs": Job("backup:logs", "logs", 86400, NOW - 90000, NOW - 176400),
              "backup:docs": Job("backup:docs", "docs", 60, NOW + 30, NOW - 30)}
    jobs = schedule.reconcile(stored, [target("logs", 86400), target("db", 3600), target("docs", 60),
                                       target("new", 600)], NOW)
    assert [j.target for j in schedule.due_in_order(jobs, NOW)] == ["new", "db", "logs"]


def test_shorter_frequency_pulls_due_time_in_and_removed_targets_drop():
    stored = {"backup:a": Job("backup:a", "a", 86400, NOW + 80000, NOW - 6400),
              "backup:gone": Job("backup:gone", "gone", 60, NOW)}
    jobs = schedule.reconcile(stored, [target("a", 3600)], NOW)
    assert {j for j in jobs if j.startswith("backup:")} == {"backup:a"}
    assert jobs["backup:a"].next_due == NOW - 6400 + 3600


def test_drills_checks_and_audits_are_scheduled_after_the_first_backups():
    jobs = schedule.reconcile({}, [target("a", 3600)], NOW, {"a": {"sample": 30 * 86400, "full": 5.0}})
    assert jobs["backup:a"].next_due == NOW
    assert jobs["drill-sample:a"].next_due == NOW + schedule.FIRST_DELAY
    assert jobs["drill-full:a"].next_due == NOW + 5.0  # a short schedule runs sooner than a day
    assert jobs["check:*"].frequency == schedule.CHECK_EVERY and jobs["audit:*"].next_due > NOW
    due = schedule.due_in_order(jobs, NOW + 2 * 86400)
    assert due[0].job == "backup:a", "catch-up restores the tightest recovery points first"


def test_jitter_only_starts_early_and_failures_retry_sooner():
    job = Job("backup:a", "a", 3600, NOW)
    rng = random.Random(1)
    dues = [schedule.next_due(job, True, NOW, NOW + 5, 600, 300, rng) for _ in range(100)]
    assert all(NOW + 3600 - 360 <= d <= NOW + 3600 for d in dues) and len(set(dues)) > 1
    assert schedule.next_due(job, False, NOW, NOW + 5, 600, 300) == NOW + 305


def test_job_store_persists_across_instances(tmp_path):
    store = JobStore(tmp_path)
    job = Job("backup:a", "a", 60, NOW)
    store.started(job, NOW)
    assert JobStore(tmp_path).all()["backup:a"].last_status == "running"


#: One clock for the parametrised locks and their triage: the parameters are built at collection, and a long
#: suite runs this test many minutes later.
TRIAGE_NOW = datetime.now(timezone.utc)


def _lock(host="h1", pid=999999, minutes=45, exclusive=False, user="root"):
    return Lock("a" * 64, TRIAGE_NOW - timedelta(minutes=minutes), exclusive, host, pid, user)


LIVE = 4242          # a live process that started before its lock
REUSED = 4343        # a live process that started after the lock was written: the PID was reused


def _alive(pid):
    return pid in (LIVE, REUSED)


def _started(pid):
    return TRIAGE_NOW - (timedelta(hours=2) if pid == LIVE else timedelta(seconds=1))


@pytest.mark.parametrize("lock,ours,expect", [
    (_lock(), False, "remove"),                      # this host, dead pid, old
    (_lock(), True, "wait"),                         # one of our jobs runs on the repository
    (_lock(minutes=1), False, "remove"),             # this host, dead pid, fresh: a killed restic
    (_lock(minutes=1, pid=LIVE), False, "wait"),     # this host, live holder
    (_lock(minutes=1, pid=REUSED), False, "remove_all"),  # PID reused: restic keeps it, we prove it gone
    (_lock(host="other"), False, "remove"),          # another host's lock older than restic's 30 min
    (_lock(host="other", minutes=5), False, "wait"),  # another host's fresh lock: maybe alive
])
def test_lock_triage_removes_only_provably_stale_locks(lock, ours, expect):
    got = locks.decide([lock], hostname="h1", now=TRIAGE_NOW, ours_running=ours, alive=_alive, started=_started)
    assert got == expect


def test_lock_triage_waits_when_unlock_would_also_remove_an_unproven_lock():
    now = TRIAGE_NOW
    # restic unlock would remove the old one; the fresh one of another host blocks: unlock alone is fine
    assert locks.decide([_lock(), _lock(host="other", minutes=5)], hostname="h1", now=now, ours_running=False,
                        alive=_alive, started=_started) == "remove"
    # a reused PID next to a live lock: --remove-all would take the live one too
    assert locks.decide([_lock(minutes=1, pid=REUSED), _lock(host="other", minutes=5)], hostname="h1", now=now,
                        ours_running=False, alive=_alive, started=_started) == "wait"
    # ours running: restic would remove an old dead-PID lock we cannot vouch for
    assert locks.decide([_lock()], hostname="h1", now=now, ours_running=True, alive=_alive) == "wait"
    assert locks.decide([], hostname="h1", now=now, ours_running=False) == "clear"


def test_pid_start_time_is_read_from_proc():
    import os

    born = locks.pid_started(os.getpid())
    assert born is not None and born <= datetime.now(timezone.utc)
    assert locks.pid_started(0) is None


def test_parse_restic_lock_json():
    raw = (b'{"time":"2026-11-22T21:54:14.123456789+09:00","exclusive":true,"hostname":"tos-01",'
           b'"username":"backupd","pid":4242,"uid":998,"gid":998}')
    lk = parse_lock("b" * 64, raw)
    assert lk.exclusive and lk.hostname == "tos-01" and lk.pid == 4242
    assert lk.time == datetime(2026, 11, 22, 12, 54, 14, 123456, tzinfo=timezone.utc)


def test_pid_alive():
    import os
    assert locks.pid_alive(os.getpid()) and locks.pid_alive(0)


def test_sd_notify_datagrams(tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        sd = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000000"})
        assert sd.watchdog_interval == 10.0
        assert sd.ready("scheduling 2 targets") and sd.watchdog()
        first = server.recv(4096).decode().splitlines()
        assert first[:2] == ["READY=1", "STATUS=scheduling 2 targets"]
        assert server.recv(4096) == b"WATCHDOG=1"
    assert not Notifier({}).ready("x")


def _cfg(tmp_path, **sections):
    return Config(path=None, state_dir=tmp_path, secrets_dir=tmp_path, host="h", **sections)


def test_settings_validate_with_clear_errors(tmp_path):
    d = settings.daemon(_cfg(tmp_path, daemon={"concurrency": 2, "jitter_seconds": 5}))
    assert d.concurrency == 2 and d.jitter_seconds == 5.0
    for bad, section in (({"concurrency": 0}, "daemon"), ({"bogus": 1}, "daemon"),
                         ({"webhook": "ftp://x"}, "notify"), ({"smtp": {"host": "h"}}, "notify"),
                         ({"listen": "nope"}, "metrics")):
        with pytest.raises(ConfigError, match=section):
            getattr(settings, section)(_cfg(tmp_path, **{section: bad}))
    m = settings.metrics(_cfg(tmp_path, metrics={"listen": "127.0.0.1:0"}))
    assert m.listen == ("127.0.0.1", 0)


def test_a_lock_whose_restic_is_a_zombie_is_removed():
    """A SIGKILLed restic stays a zombie until its new parent reaps it: restic's own check (signal 0) sees it
    alive, so `restic unlock` keeps its lock; the triage proves it gone and removes it with --remove-all."""
    import os
    import time

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        for _ in range(100):  # until the child has exited (not reaped: a zombie)
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        assert locks.pid_alive(pid) and not locks.pid_running(pid)
        now = datetime.now(timezone.utc)
        zombie = Lock("z" * 64, now, False, socket.gethostname(), pid, "root")
        assert locks.decide([zombie], hostname=socket.gethostname(), now=now, ours_running=False) == "remove_all"
    finally:
        os.waitpid(pid, 0)
