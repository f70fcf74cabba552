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


def test_destination_names_a_medium_or_the_set_and_only_attached_ones(tmp_path):
    from backupd.config.loader import Config
    from backupd.errors import ConfigError
    from backupd.policy.lint import PolicySet
    from tests.unit.test_policy_removable import with_media
    from tests.unit.test_policy_lint import lint

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("s3.env", "restic-password"):
        (secrets / name).write_text("x")
        (secrets / name).chmod(0o600)
    policy_set = PolicySet(lint(tmp_path, secrets, with_media()).policies)
    target = policy_set.target("db")
    cfg = Config(path=None, host="h", state_dir=tmp_path / "state")
    a = identify.Filesystem(Path("/m/a"), "/dev/sdb1", "ext4", "0f0e0d0c-1111-2222-3333-444455556666", None, False)
    b = identify.Filesystem(Path("/m/b"), "/dev/sdc1", "ext4", None, "weekly-b", False)
    got = media.source_for(cfg, policy_set, target, "weekly-b", found=[a, b])
    assert got.label == "offsite:weekly-b" and got.repo.url == "/m/b/backupd/h/repository"
    with pytest.raises(ConfigError, match="name one with --destination"):
        media.source_for(cfg, policy_set, target, "offsite", found=[a, b])
    assert media.source_for(cfg, policy_set, target, "offsite", found=[a]).label == "offsite:weekly-a"
    with pytest.raises(DependencyError, match="attach and mount one"):
        media.source_for(cfg, policy_set, target, "weekly-c", found=[a, b])
    with pytest.raises(ConfigError, match="no destination or medium 'nowhere'"):
        media.source_for(cfg, policy_set, target, "nowhere", found=[a, b])
    other = policy_set.target("prog-prod")  # keeps no offline copies
    with pytest.raises(ConfigError, match="no destination or medium 'weekly-a'"):
        media.source_for(cfg, policy_set, other, "weekly-a", found=[a, b])
    assert not media.names(policy_set, other, "weekly-a") and media.names(policy_set, target, "offsite")
