"""Verification overlapping the restore: files complete before the restore ends are hashed while it
runs; what was not (or did not match yet) is hashed by verify_tree afterwards; a wrong file is never
taken for verified."""

from __future__ import annotations

import hashlib
import os
import threading
import time

from backupd.files import verify


def _entry(path: str, data: bytes) -> dict:
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "mode": oct(0o644),
            "type": "file"}


def _write(root, path: str, data: bytes) -> None:
    local = root / path.lstrip("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    local.chmod(0o644)


def test_files_done_early_are_hashed_during_the_restore_and_only_stat_checked_after(tmp_path, monkeypatch):
    early = {f"/a/{i}.log": os.urandom(2000 + i) for i in range(20)}
    late, wrong = b"L" * 5000, b"W" * 3000
    doc = {"files": [_entry(p, d) for p, d in early.items()] + [_entry("/b/late.bin", late),
                                                                 _entry("/b/wrong.bin", wrong)]}
    def restore():  # files appear over time, like restic writing them
        for path, data in early.items():
            _write(tmp_path, path, data)
        _write(tmp_path, "/b/late.bin", b"\0" * len(late))  # preallocated, content comes later
        _write(tmp_path, "/b/wrong.bin", b"X" * len(wrong))  # right size, wrong bytes
        time.sleep(0.6)
        _write(tmp_path, "/b/late.bin", late)

    with verify.EarlyHasher(tmp_path, doc, settle=0.1) as hasher:
        worker = threading.Thread(target=restore)
        worker.start()
        worker.join()
    assert set(early) <= hasher.matched and "/b/wrong.bin" not in hasher.matched
    hashed = []
    real = verify.sha256_file
    monkeypatch.setattr(verify, "sha256_file", lambda p, *rest: hashed.append(p) or real(p, *rest))
    check = verify.verify_tree(tmp_path, doc, hashed=hasher.matched)
    assert check.mismatched == ["/b/wrong.bin"] and check.verified == 21
    assert not any(p.endswith(".log") for p in hashed), "files verified during the restore are not re-read"


def test_a_file_changed_after_it_matched_keeps_its_mode_checked(tmp_path):
    data = b"config=1\n" * 100
    doc = {"files": [_entry("/etc/app.conf", data)]}
    _write(tmp_path, "/etc/app.conf", data)
    os.utime(tmp_path / "etc/app.conf", (time.time() - 10, time.time() - 10))
    with verify.EarlyHasher(tmp_path, doc, settle=0.05) as hasher:
        time.sleep(0.3)
    assert hasher.matched == {"/etc/app.conf"}
    (tmp_path / "etc/app.conf").chmod(0o600)  # the restore's metadata pass set another mode
    assert verify.verify_tree(tmp_path, doc, hashed=hasher.matched).mismatched == ["/etc/app.conf"]


def _restic_like_write(local, data: bytes, blob: int, pause: float) -> None:
    """Like restic's restorer: create, preallocate the whole size, then fill blob by blob."""
    local.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(local, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, len(data))
        for off in range(0, len(data), blob):
            os.pwrite(fd, data[off:off + blob], off)
            time.sleep(pause)
    finally:
        os.close(fd)


def test_a_large_file_is_hashed_as_it_is_written_and_read_about_once(tmp_path, monkeypatch):
    """tmp_path is on the disk (ext4 here and in CI), whose unwritten extents read as holes, as restic's
    restores into a drill sandbox do."""
    data = os.urandom(24 << 20)
    doc = {"files": [_entry("/img/disk.raw", data)]}
    fed = []
    real = verify._feed
    monkeypatch.setattr(verify, "_feed", lambda fd, h, a, b: fed.append(b - a) or real(fd, h, a, b))
    with verify.EarlyHasher(tmp_path, doc, settle=0.1) as hasher:
        _restic_like_write(tmp_path / "img/disk.raw", data, 1 << 20, 0.05)
        deadline = time.monotonic() + 10
        while not hasher.matched and time.monotonic() < deadline:
            time.sleep(0.05)
        matched_while_running = set(hasher.matched)
    assert matched_while_running == {"/img/disk.raw"}
    assert len(fed) > 2, "hashed in steps while it was written"
    assert sum(fed) <= len(data) + 2 * verify.MARGIN, "each byte is read about once, not once per round"


def test_bytes_not_written_yet_are_never_taken_for_the_file(tmp_path):
    """A preallocated file whose last blob comes late reads as zeros there; it matches only once written."""
    data = os.urandom(6 << 20)
    doc = {"files": [_entry("/db/base.dump", data)]}
    local = tmp_path / "db/base.dump"
    with verify.EarlyHasher(tmp_path, doc, settle=0.05) as hasher:
        _restic_like_write(local, data[:5 << 20] + bytes(1 << 20), 1 << 20, 0.02)  # last blob still zeros
        time.sleep(0.6)
        assert hasher.matched == set()
        fd = os.open(local, os.O_WRONLY)
        os.pwrite(fd, data[5 << 20:], 5 << 20)
        os.close(fd)
    assert hasher.matched == {"/db/base.dump"}  # the pass after the restore finished it

