"""Verification overlapping the restore: files complete before the restore ends are hashed while it
runs; what was not (or did not match yet) is hashed by verify_tree afterwards; a wrong file is never
taken for verified."""

from __future__ import annotations

import hashlib
import os
import threading
import time

from backupd import verify


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
    monkeypatch.setattr(verify, "sha256_file", lambda p: hashed.append(p) or real(p))
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
