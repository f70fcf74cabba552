"""Media identification: block-device filesystems from findmnt, UUID/label from /dev/disk links where findmnt
has none, a medium matched by every identifier the policy gives (never by its mount path)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from backupd.actions import media
from backupd.engine.snapshots import Listing, Snapshot
from backupd.errors import DependencyError
from backupd.media import identify
from backupd.media.layout import Layout


def _findmnt(*rows) -> bytes:
    return json.dumps({"filesystems": [dict(zip(("target", "source", "fstype", "uuid", "label", "options"), r))
                                       for r in rows]}).encode()


def test_parse_keeps_block_devices_and_fills_ids_from_disk_links(tmp_path):
    disk = tmp_path / "disk"
    (disk / "by-uuid").mkdir(parents=True)
    (disk / "by-label").mkdir()
    (disk / "by-uuid" / "ABCD-1234").symlink_to("/dev/null")  # the stand-in block device
    (disk / "by-label" / "weekly\\x20a").symlink_to("/dev/null")
    out = identify.parse(_findmnt(("/", "/dev/vda", "ext4", "1111-2222", "root", "rw"),
                                  ("/proc", "proc", "proc", None, None, "rw"),
                                  ("/media/a", "/dev/null", "vfat", None, None, "ro,nosuid")), disk)
    assert [f.mountpoint for f in out] == [Path("/"), Path("/media/a")]  # proc is no block device
    assert (out[1].uuid, out[1].label, out[1].read_only) == ("abcd-1234", "weekly a", True)
    assert (out[0].uuid, out[0].label, out[0].read_only) == ("1111-2222", "root", False)
    with pytest.raises(DependencyError):
        identify.parse(b"not json")


def test_a_medium_matches_only_by_every_identifier_given():
    fs = identify.Filesystem(Path("/media/backup"), "/dev/sdb1", "ext4", "0f0e-11", "weekly-a", False)
    assert identify.match(SimpleNamespace(uuid="0F0E-11", label=None), fs)
    assert identify.match(SimpleNamespace(uuid=None, label="weekly-a"), fs)
    assert not identify.match(SimpleNamespace(uuid="0f0e-11", label="weekly-b"), fs)  # a relabelled clone
    assert not identify.match(SimpleNamespace(uuid=None, label=None), fs)
    assert identify.at(Path("/media/backup"), [fs]) is fs and identify.at(Path("/media"), [fs]) is None
    assert "\x1b" not in identify.Filesystem(Path("/m"), "/dev/x", None, None, "\x1b[31mred", False).describe()


def test_layout_keeps_each_host_apart_and_refuses_a_path_as_host(tmp_path):
    layout = Layout(tmp_path, "tos-01")
    assert layout.repository == tmp_path / "backupd" / "tos-01" / "repository"
    assert layout.last_sync.parent == layout.root
    with pytest.raises(ValueError):
        _ = Layout(tmp_path, "../etc").root


def _snap(sid: str, original: str | None) -> Snapshot:
    from datetime import datetime, timezone
    return Snapshot(sid, sid[:8], datetime.now(timezone.utc), "h", ["/x"], ["target=docs"], original)


def test_on_a_medium_unnamed_snapshots_and_copies_of_failed_ones_are_never_chosen(monkeypatch):
    good, failed, planted = "a" * 64, "b" * 64, "c" * 64
    listing = Listing([_snap("1" * 64, good), _snap("2" * 64, failed), _snap(planted, None)])
    monkeypatch.setattr(media.restic_snapshots, "list_snapshots", lambda *a, **k: listing)
    monkeypatch.setattr(media, "known_ids", lambda cfg: {"1" * 64: {}, "2" * 64: {}, good: {}, failed: {}})
    source = media.Source("offsite:weekly-a", repo=None, medium=object())
    out = media.exclusions(None, source, "docs", {failed: "failed a restore drill"})
    assert out["2" * 64] == "failed a restore drill" and "no record of this host's ledger" in out[planted]
    assert "1" * 64 not in out
    plain = media.Source("worm", repo=None)
    assert media.exclusions(None, plain, "docs", {failed: "x"}) == {failed: "x"}
