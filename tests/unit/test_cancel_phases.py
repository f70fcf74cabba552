"""A cancel (what SIGTERM sets) ends the phases that wait on no child: a blocking call (the S3 pre-flight, a
mirror request), the manifest hashing, and the row count of a stopped dump; each within a fraction of a second."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from backupd.evidence import bounded
from backupd.files import manifest, verify
from backupd.process import execute
from backupd.sources.postgres import PinnedSnapshot
from backupd.storage import probe


def _cancel_in(seconds: float) -> execute.Cancel:
    cancel = execute.Cancel()
    threading.Timer(seconds, cancel.set).start()
    return cancel


def _timed(fn) -> tuple[float, BaseException | None]:
    t0 = time.monotonic()
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - returned for the assertion
        return time.monotonic() - t0, exc
    return time.monotonic() - t0, None


@pytest.fixture
def never():
    """An event the abandoned calls wait on, set at the end so their threads end with the test."""
    event = threading.Event()
    yield event
    event.set()


def test_a_blocking_call_ends_when_the_threads_cancel_is_set(never):
    with execute.cancelled_by(_cancel_in(0.2)):
        took, exc = _timed(lambda: execute.interruptible(lambda: never.wait(30), "stuck call"))
    assert isinstance(exc, execute.Interrupted) and "stuck call: cancelled" in str(exc)
    assert took < 1.0


def test_a_blocking_call_without_a_cancel_runs_as_before_and_errors_come_through():
    assert execute.interruptible(lambda: 42, "answer") == 42
    with execute.cancelled_by(execute.Cancel()):
        assert execute.interruptible(lambda: 42, "answer") == 42
        with pytest.raises(ZeroDivisionError):
            execute.interruptible(lambda: 1 / 0, "division")


def test_grace_lets_a_call_that_answers_finish_after_the_cancel():
    cancel = execute.Cancel()
    cancel.set()
    assert execute.interruptible(lambda: time.sleep(0.2) or "done", "push", cancel, grace=1.0) == "done"
    cancel.set_at -= 2.0  # the grace is over: nothing more is started
    with pytest.raises(execute.Interrupted, match="not started"):
        execute.interruptible(lambda: "late", "push", cancel, grace=1.0)


def test_the_pre_flight_to_a_black_hole_ends_on_cancel(monkeypatch, never):
    monkeypatch.setattr(probe, "_head", lambda *a: never.wait(30))
    took, exc = _timed(lambda: probe.head("http://192.0.2.1:9", "us-east-1", "b", timeout=30,
                                          cancel=_cancel_in(0.2)))
    assert isinstance(exc, execute.Interrupted) and took < 1.0


class _StalledS3:
    def __init__(self, never):
        self.never = never

    def head_object(self, **kw):
        self.never.wait(30)


def test_a_mirror_request_gets_only_the_grace_after_a_cancel(never):
    s3 = bounded.BoundedS3(lambda limits: _StalledS3(never), time.monotonic() + 30, "hole")
    with execute.cancelled_by(_cancel_in(0.2)):
        took, exc = _timed(lambda: s3.head_object(Bucket="b", Key="k"))
    assert isinstance(exc, execute.Interrupted) and "evidence mirror hole" in str(exc)
    assert took < 0.2 + bounded.CANCEL_GRACE_SECONDS + 0.5


def test_hashing_a_large_tree_stops_mid_file(tmp_path):
    for i in range(2):  # 16 GiB of sparse files: many seconds to hash, no disk used
        with open(tmp_path / f"big{i}", "wb") as f:
            f.truncate(8 << 30)
    cache = manifest.HashCache(tmp_path / "cache.json")
    with execute.cancelled_by(_cancel_in(0.3)):
        took, exc = _timed(lambda: manifest.build([str(tmp_path)], [], cache))
    assert isinstance(exc, execute.Interrupted), exc
    assert took < 1.5
    assert not cache.new, "no half-read file is vouched for"


def test_a_drills_verification_of_large_restored_files_stops_mid_file(tmp_path):
    entries = []
    for i in range(2):
        with open(tmp_path / f"big{i}", "wb") as f:
            f.truncate(8 << 30)
        (tmp_path / f"big{i}").chmod(0o644)
        entries.append({"path": f"/big{i}", "type": "file", "size": 8 << 30, "mode": "0o644", "sha256": "ab" * 32,
                        "mtime_ns": 1})
    took, exc = _timed(lambda: verify.verify_tree(tmp_path, {"files": entries}, cancel=_cancel_in(0.3)))
    assert isinstance(exc, execute.Interrupted), exc
    assert took < 1.5


def test_hashing_without_a_cancel_gives_the_sha256(tmp_path):
    (tmp_path / "a").write_bytes(b"abc" * 1_000_000)
    (entry,) = manifest.build([str(tmp_path)], [], manifest.HashCache(tmp_path / "c.json"))
    assert entry.sha256 == hashlib.sha256(b"abc" * 1_000_000).hexdigest()


class _CountingConn:
    """A connection whose row count runs until the server cancels it."""

    def __init__(self):
        self.cancelled, self.closed = threading.Event(), False

    def execute(self, sql):
        self.cancelled.wait(30)
        raise RuntimeError("canceling statement due to user request")

    def cancel_safe(self, timeout):
        self.cancelled.set()

    def close(self):
        self.closed = True


def test_a_stopped_dump_cancels_its_row_count_instead_of_waiting_for_it():
    pin = PinnedSnapshot({})
    pin._conn = conn = _CountingConn()
    pin.count()
    took, exc = _timed(lambda: pin.__exit__(None, None, None))  # left without rows(): the dump failed
    assert exc is None and took < 1.0
    assert conn.cancelled.is_set() and conn.closed

