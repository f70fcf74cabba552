"""Bounded storage work: the pre-flight probe against a black hole and a closed port, one probe per
destination and run, retries that end on cancel, check output that tells damage from a lock."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from backupd.actions import check as check_action
from backupd.actions.common import Preflight, Retry
from backupd.config.loader import Config
from backupd.engine import check as restic_check
from backupd.engine import exitcodes
from backupd.engine.repository import Repository
from backupd.process import execute
from backupd.storage import probe

NO_HANG = 20.0  # generous: proves "bounded", not a speed


class BlackHole:
    """An S3 endpoint that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)  # kept open, never read or answered

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KEYS = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret-never-shown"}


def test_probe_of_a_black_hole_ends_within_its_timeout():
    hole = BlackHole()
    try:
        t0 = time.monotonic()
        why = probe.head(f"http://127.0.0.1:{hole.port}", "us-east-1", "b", "p/config", timeout=2)
        assert why and "no answer" in why and time.monotonic() - t0 < NO_HANG
    finally:
        hole.close()


def test_probe_of_a_closed_port_says_it_cannot_connect():
    why = probe.head(f"http://127.0.0.1:{closed_port()}", "us-east-1", "b", "p/config", timeout=2)
    assert why == "cannot connect"


def _cfg(tmp_path: Path) -> Config:
    creds = tmp_path / "s3.env"
    creds.write_text("AWS_ACCESS_KEY_ID=AKID\nAWS_SECRET_ACCESS_KEY=secret-never-shown\n")
    cfg = Config(path=None, state_dir=tmp_path)
    cfg.storage_timeout_seconds = 2
    return cfg


def _dest(tmp_path: Path, port: int):
    return SimpleNamespace(kind="s3", endpoint=f"http://127.0.0.1:{port}", region="us-east-1", bucket="b",
                           path="repo", credentials_file=tmp_path / "s3.env")


def test_a_dead_destination_is_probed_once_per_run_and_every_target_fails_with_its_reason(tmp_path, monkeypatch):
    calls = []
    real = probe.head
    monkeypatch.setattr(probe, "head", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    pre = Preflight(_cfg(tmp_path))
    dest = _dest(tmp_path, closed_port())
    reasons = []
    for _ in range(3):  # three targets on one destination
        with pytest.raises(exitcodes.StorageUnavailable) as info:
            pre.require("worm", dest)
        reasons.append(str(info.value))
    assert len(calls) == 1 and len(set(reasons)) == 1
    assert "cannot connect" in reasons[0] and "secret-never-shown" not in reasons[0]
    assert info.value.exit_code == 3


def test_a_destination_that_failed_its_retries_fails_later_targets_at_once(tmp_path):
    pre = Preflight(_cfg(tmp_path))
    pre.mark_down("worm", "worm: storage unreachable (dial tcp: connection refused)")
    with pytest.raises(exitcodes.StorageUnavailable, match="connection refused"):
        pre.require("worm", _dest(tmp_path, 1))


def test_retry_wait_ends_at_once_on_cancel():
    cancel = execute.Cancel()
    threading.Timer(0.2, cancel.set).start()

    def down():
        raise exitcodes.StorageUnavailable("s3: unreachable")

    t0 = time.monotonic()
    with pytest.raises(execute.Interrupted):
        Retry(attempts=3, wait=60, cancel=cancel).run(down, "backup")
    assert time.monotonic() - t0 < NO_HANG


def test_retry_does_not_wait_past_the_job_deadline():
    def down():
        raise exitcodes.StorageUnavailable("s3: unreachable")

    retry = Retry(attempts=5, wait=60)
    t0 = time.monotonic()
    with execute.deadline(5), pytest.raises(exitcodes.StorageUnavailable):
        retry.run(down, "backup")
    assert time.monotonic() - t0 < NO_HANG and len(retry.notes) == 1


REPO = Repository("worm", "/nowhere", Path("/pw"))


def _check_output(monkeypatch, code: int, stderr: str, stdout: bytes = b""):
    from backupd.engine import command

    monkeypatch.setattr(command, "run", lambda *a, **kw: execute.Completed(["restic"], code, stdout, stderr))
    monkeypatch.setattr(restic_check.feature, "detect", lambda binary: (0, 14, 0))
    return restic_check.check(REPO, read_data_subset="1/3")


def test_a_lock_is_not_damage(monkeypatch):
    with pytest.raises(exitcodes.RepositoryLocked):
        _check_output(monkeypatch, 1, "Fatal: unable to create lock in backend: repository is already locked "
                                      "by PID 4242 on tos-01 by backupd (UID 998, GID 998)")


def test_an_unreachable_storage_is_not_damage(monkeypatch):
    with pytest.raises(exitcodes.StorageUnavailable):
        _check_output(monkeypatch, 1, "Fatal: unable to open config file: dial tcp 127.0.0.1:9: connect: "
                                      "connection refused")


def test_damage_is_damage(monkeypatch):
    want = "d58387635c7b624e60cbf3f0b5b84d8b319d27e614954a3bb3ea0d178be9f3a7"
    out = (f"read all data\nPack ID does not match, want {want}, got 9e7306c2751e8846659b6298fc9b86b270b55ccd0"
           "fc81da13dc5bb5faa4c0781\n").encode()
    res = _check_output(monkeypatch, 1, "Fatal: repository contains errors", out)
    assert not res.ok
    assert check_action.damaged_packs(res.output) == [want]  # the expected id, never the hash it got


def test_index_parsing_finds_a_packs_blobs_by_full_or_short_id():
    from backupd.engine import index

    data = (b'{"packs":[{"id":"d5838763aa","blobs":[{"id":"e24c","type":"data"}]},'
            b'{"id":"bf98fe43bb","blobs":[{"id":"9424","type":"tree"}]}]}')
    assert index.parse_packs(data, ["d5838763", "bf98fe43bb", "0000"]) == {
        "d5838763": [("data", "e24c")], "bf98fe43bb": [("tree", "9424")]}


def test_a_failed_slice_names_only_the_targets_of_damaged_packs(monkeypatch):
    from backupd.engine import find, index, snapshots

    snaps = [SimpleNamespace(id="s-db", tagmap={"target": "tos-db"}),
             SimpleNamespace(id="s-logs", tagmap={"target": "logs"})]
    monkeypatch.setattr(snapshots, "list_snapshots", lambda repo, **kw: snaps)
    # from the index: pack aaaa holds a data blob of the database dump; bbbb is not in any index
    monkeypatch.setattr(index, "blobs_of_packs", lambda repo, packs: {"aaaa": [("data", "blob-db")]})
    monkeypatch.setattr(find, "snapshots_of_blobs",
                        lambda repo, kind, ids: {"s-db"} if "blob-db" in ids else set())
    hit, unknown = check_action.attribute(REPO, ["aaaa", "bbbb"])
    assert hit == {"tos-db": ["aaaa"]} and unknown == ["bbbb"]
    text = check_action._damage("worm", 1, 3, ["tos-db", "logs", "docs"], hit, unknown, ["aaaa", "bbbb"])
    assert "tos-db" in text and "logs" not in text and "could not be attributed" in text


def _lk(lock_id: str, pid: int, minutes: float = 1, host: str | None = None):
    from datetime import datetime, timedelta, timezone

    from backupd.engine.locks import Lock

    return Lock(lock_id * 64, datetime.now(timezone.utc) - timedelta(minutes=minutes), False,
                host or socket.gethostname(), pid, "backupd")


def test_resolve_removes_a_killed_restics_lock_and_reports_a_live_one_as_busy(monkeypatch):
    import os

    from backupd.actions import locks
    from backupd.engine import locks as restic_locks

    dead = 2 ** 22 + 12345  # above pid_max on common systems: never alive
    present = [_lk("a", dead)]
    calls = []
    monkeypatch.setattr(restic_locks, "list_locks", lambda repo: list(present))
    monkeypatch.setattr(restic_locks, "list_ids", lambda repo: [lk.id for lk in present])

    def unlock(repo, remove_all=False):
        calls.append(remove_all)
        present.clear()

    monkeypatch.setattr(restic_locks, "remove_stale", unlock)
    res = locks.resolve(REPO, wait_seconds=0)
    assert res.outcome == "removed" and res.removed[0]["pid"] == dead and calls == [False]

    present[:] = [_lk("b", os.getpid(), minutes=0)]  # a live holder on this host: waited for, then busy
    res = locks.resolve(REPO, wait_seconds=0.2, sleep=lambda s: time.sleep(min(s, 0.05)) or False)
    assert res.outcome == "locked" and calls == [False]
    err = res.busy("worm")
    assert err.exit_code == 3 and "busy" in str(err) and str(os.getpid()) in str(err)


def test_ctrl_c_exits_130():
    import click
    from click.testing import CliRunner

    from backupd.commands.common import common

    @click.command()
    @common
    def interrupted(config_path, as_json):
        raise KeyboardInterrupt

    assert CliRunner().invoke(interrupted, []).exit_code == 130
