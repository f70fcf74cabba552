"""A restored tree's dangerous modes: setuid/setgid bits cleared (or kept and listed), world-writable entries
listed, symlinks never followed, the list bounded with complete counts."""

from __future__ import annotations

import os
import stat

from backupd.files import restored_modes
from backupd.files.restored_modes import defuse


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _tree(tmp_path):
    root = tmp_path / "r"
    (root / "srv" / "bin").mkdir(parents=True)
    su = root / "srv" / "bin" / "su"
    su.write_text("#!/bin/sh\n")
    su.chmod(0o4755)
    sg = root / "srv" / "bin" / "sg"
    sg.write_text("x")
    sg.chmod(0o2711)
    (root / "srv" / "plain").write_text("x")
    outside = tmp_path / "outside"
    outside.write_text("x")
    outside.chmod(0o4755)
    (root / "srv" / "link").symlink_to(outside)
    (root / "srv" / "dirlink").symlink_to(tmp_path)
    return root, su, sg, outside


def test_setuid_and_setgid_bits_are_cleared_and_listed_but_links_not_followed(tmp_path):
    root, su, sg, outside = _tree(tmp_path)
    found = defuse(root)
    assert (_mode(su), _mode(sg), _mode(outside)) == (0o755, 0o711, 0o4755)
    assert found["setid_cleared"] == 2 and found["setid_failed"] == 0
    assert any(str(su) in w and "cleared" in w and "0o4755" in w for w in found["warnings"])
    assert any(str(sg) in w for w in found["warnings"]) and not any("outside" in w for w in found["warnings"])


def test_keep_setid_keeps_the_bits_and_still_lists_them(tmp_path):
    root, su, _, _ = _tree(tmp_path)
    found = defuse(root, keep_setid=True)
    assert _mode(su) == 0o4755 and found["setid_kept"] == 2 and found["setid_cleared"] == 0
    assert any(str(su) in w and "kept" in w for w in found["warnings"])


def test_world_writable_without_sticky_is_listed_not_changed(tmp_path):
    root = tmp_path / "r"
    (root / "open").mkdir(parents=True)
    (root / "open").chmod(0o777)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "f").write_text("x")
    (root / "f").chmod(0o666)
    found = defuse(root)
    assert found["world_writable"] == 2 and _mode(root / "open") == 0o777
    assert not any(str(root / "tmp") in w for w in found["warnings"])


def test_the_list_is_bounded_and_the_count_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(restored_modes, "LIMIT", 3)
    root = tmp_path / "r"
    root.mkdir()
    for i in range(7):
        (root / f"s{i}").write_text("x")
        (root / f"s{i}").chmod(0o4755)
    found = defuse(root)
    assert found["setid_cleared"] == 7 and len(found["warnings"]) == 4
    assert "4 more" in found["warnings"][-1]


def test_only_the_snapshot_paths_are_walked_and_never_through_a_link(tmp_path):
    root, su, _, _ = _tree(tmp_path)
    other = root / "preexisting"
    other.write_text("x")
    other.chmod(0o4755)
    found = defuse(root, paths=["/srv/bin", "/srv/bin/su", "/srv/dirlink", "/../.."])
    assert _mode(su) == 0o755 and _mode(other) == 0o4755 and found["setid_cleared"] == 2
