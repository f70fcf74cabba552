"""A verifier counts a snapshot only when a backup record of its host announced it, by exact id and with the
manifest hash; the manifest read must hash to that value; everything else in the repository is rejected."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupd.actions import announced, snapshot_choice
from backupd.engine.snapshots import Snapshot
from backupd.errors import Finding
from backupd.evidence import record_format

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
KEY = Ed25519PrivateKey.generate()
MANIFEST = b'{"files":[],"format":1,"target":"t"}'
DIGEST = hashlib.sha256(MANIFEST).hexdigest()


def _snap(i: int, host: str = "tos-01") -> Snapshot:
    sid = f"{i:02d}" + "c" * 62
    return Snapshot(id=sid, short_id=sid[:8], time=T0 + timedelta(hours=i), host=host, paths=["/d"],
                    tags=["backupd", "target=t"])


def _line(seq: int, data: dict, kind: str = "backup", host: str = "tos-01") -> bytes:
    return record_format.build(seq, "0" * 64, host, kind, data, KEY, time=f"2026-11-0{seq}T00:00:00Z") + b"\n"


def _backup(snap: Snapshot, target: str = "t", status: str = "ok", digest: str | None = DIGEST) -> dict:
    data = {"target": target, "destination": "worm", "status": status, "snapshot_id": snap.id,
            "facts": {"files": 1}}
    if digest is not None:
        data["manifest_sha256"] = digest
    return data


def test_only_ok_backup_records_of_the_host_and_target_announce_and_the_first_one_wins():
    a, b, c, d, e = (_snap(i) for i in range(5))
    lines = [_line(1, _backup(a)), _line(2, {"target": "t", "snapshot_id": b.id, "status": "ok"}, kind="drill"),
             _line(3, _backup(c, target="other")), _line(4, _backup(d, status="failed")),
             _line(5, _backup(e, digest=None)), _line(6, _backup(a, digest="f" * 64))]
    got = announced.from_lines(lines, "tos-01", "t")
    assert set(got) == {a.id, e.id}
    assert got[a.id].manifest_sha256 == DIGEST and got[a.id].seq == 1 and got[a.id].time == "2026-11-01T00:00:00Z"
    assert got[e.id].manifest_sha256 is None  # a record from before announcements stays readable
    assert announced.from_lines(lines, "other-host", "t") == {}  # a record of another host announces nothing


def test_screen_counts_exact_ids_of_the_announcing_host_with_a_hash_and_rejects_the_rest():
    ok, planted, old, foreign = _snap(1), _snap(2), _snap(3), _snap(4, host="elsewhere")
    lines = [_line(1, _backup(ok)), _line(2, _backup(old, digest=None)), _line(3, _backup(foreign))]
    got = announced.from_lines(lines, "tos-01", "t")
    screened = announced.screen([ok, planted, old, foreign], got)
    assert screened.counted == [ok] and screened.by_id[ok.id].seq == 1
    why = {s.id: reason for s, reason in screened.rejected}
    assert why == {planted.id: announced.UNANNOUNCED, old.id: announced.UNHASHED, foreign.id: announced.UNANNOUNCED}
    assert [(f["snapshot_id"], f["finding"]) for f in screened.findings()] == [
        (planted.id, True), (old.id, False), (foreign.id, True)]  # an old record's snapshot: listed, no finding


def test_a_manifest_that_does_not_hash_to_the_announcement_is_a_finding():
    (ann,) = announced.from_lines([_line(1, _backup(_snap(1)))], "tos-01", "t").values()
    announced.check_manifest(MANIFEST, ann, "01cccccc")
    announced.check_manifest(MANIFEST.decode(), ann, "01cccccc")
    with pytest.raises(Finding, match="not the one tos-01 announced"):
        announced.check_manifest(MANIFEST.replace(b"[]", b"[ ]"), ann, "01cccccc")
    announced.check_manifest(b"anything", None, "01cccccc")  # the backup role checks nothing here


def _select(monkeypatch, snaps, announcements, snapshot_id=None):
    monkeypatch.setattr(snapshot_choice, "target_listing", lambda repo, target, host: list(snaps))
    return snapshot_choice.select(None, "t", ["tos-01"], snapshot_id, announced=announcements)


def test_select_skips_a_newer_planted_snapshot_and_refuses_it_by_id(monkeypatch):
    old, planted = _snap(1), _snap(2)
    got = announced.from_lines([_line(1, _backup(old))], "tos-01", "t")
    chosen = _select(monkeypatch, [old, planted], got)
    assert chosen.snap.id == old.id and chosen.snaps == [old] and chosen.announcement.seq == 1
    assert [s.id for s, _ in chosen.screened.rejected] == [planted.id]
    with pytest.raises(Finding, match="not drilled: no mirrored backup record announces it"):
        _select(monkeypatch, [old, planted], got, snapshot_id=planted.id[:8])
    with pytest.raises(Finding, match="not announced: 02cccccc"):
        _select(monkeypatch, [planted], got)  # nothing announced left: the finding names the planted one
    assert _select(monkeypatch, [old, planted], None).snap.id == planted.id  # backup role: as before


def test_the_backup_record_announces_the_full_id_even_when_restic_reports_eight_digits(monkeypatch):
    from backupd.actions import backup
    from backupd.errors import DependencyError

    full = _snap(1)
    monkeypatch.setattr(backup.restic_snapshots, "list_snapshots", lambda repo, ids, lock: [full])
    notes: list[str] = []
    assert backup._full_id(None, full.id[:8], notes) == full.id and notes == []
    assert backup._full_id(None, full.id, notes) == full.id  # restic >= 0.17 reports it whole

    def down(repo, ids, lock):
        raise DependencyError("storage unreachable")

    monkeypatch.setattr(backup.restic_snapshots, "list_snapshots", down)
    assert backup._full_id(None, full.id[:8], notes) == full.id[:8]
    assert "a verifier will not count it" in notes[0]


def test_the_verified_rpo_of_a_verifier_runs_from_the_announcement_not_the_snapshot_time():
    from backupd.actions import drill

    snap = _snap(5)  # its own time field says T0 + 5 h: the writer's to choose
    (ann,) = announced.from_lines([_line(1, _backup(snap))], "tos-01", "t").values()
    assert drill._restore_point_time({"announcement": ann.to_dict()}, snap) == ann.when().timestamp()
    assert drill._restore_point_time({}, snap) == snap.time.timestamp()  # backup role: as before
