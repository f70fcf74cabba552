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
    with pytest.raises(Finding, match="not drilled or restored: no mirrored backup record announces it"):
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
    assert "a verifier will not drill it" in notes[0]


def test_a_record_naming_only_a_short_id_lists_its_snapshot_without_a_finding_and_never_counts_it(monkeypatch):
    """The backup could not read the full id (restic < 0.17 and the listing failed): its record names 8 digits.
    The verifier never drills that snapshot (a prefix is the writer's to collide) but it is no finding,
    unless another snapshot of the host shares the prefix: then both are."""
    from backupd.actions import backup
    from backupd.errors import DependencyError

    legit = _snap(1)

    def down(repo, ids, lock):
        raise DependencyError("storage unreachable")

    monkeypatch.setattr(backup.restic_snapshots, "list_snapshots", down)
    short = backup._full_id(None, legit.short_id, [])
    record = {**_backup(legit), "snapshot_id": short}
    got = announced.from_lines([_line(1, record)], "tos-01", "t")
    screened = announced.screen([legit], got)
    assert screened.counted == [] and screened.rejected == [(legit, announced.SHORT_ID)]
    assert [f["finding"] for f in screened.findings()] == [False]
    twin = Snapshot(id=legit.id[:8] + "d" * 56, short_id=legit.short_id, time=legit.time, host="tos-01",
                    paths=["/d"], tags=["backupd", "target=t"])
    assert [f["finding"] for f in announced.screen([legit, twin], got).findings()] == [True, True]
    foreign = Snapshot(**{**legit.__dict__, "host": "elsewhere"})
    assert [f["finding"] for f in announced.screen([foreign], got).findings()] == [True]


def test_a_listed_snapshot_python_cannot_take_is_a_verifier_finding_and_the_rest_still_serves(monkeypatch):
    """A planted entry restic lists but Python cannot read (year-0 time) can never be announced: for a
    verifier it is in `unannounced` as a finding; the announced snapshot is still chosen."""
    import json

    from backupd.engine import snapshots as restic_snapshots

    good = _snap(1)
    items = [{"id": "ee" * 32, "time": "0000-01-01T00:00:00Z", "hostname": "tos-01", "paths": ["/d"],
              "tags": ["backupd", "target=t"]},
             {"id": good.id, "time": good.time.isoformat(), "hostname": "tos-01", "paths": ["/d"],
              "tags": ["backupd", "target=t"]}]
    listing = restic_snapshots.parse(json.dumps(items).encode())
    monkeypatch.setattr(snapshot_choice, "target_listing", lambda repo, target, host: listing)
    got = announced.from_lines([_line(1, _backup(good))], "tos-01", "t")
    chosen = snapshot_choice.select(None, "t", ["tos-01"], announced=got)
    assert chosen.snap.id == good.id
    (finding,) = chosen.screened.findings()
    assert finding["snapshot_id"] == "ee" * 32 and finding["finding"] is True and "malformed time" in finding["why"]
    assert finding["time"] == "0000-01-01T00:00:00Z" and finding["host"] == "tos-01"
    with pytest.raises(Finding, match="not drilled or restored: listed with a malformed time"):
        snapshot_choice.select(None, "t", ["tos-01"], "eeee", announced=got)
    assert snapshot_choice.select(None, "t", ["tos-01"]).screened is None  # backup role: left out, no finding


def test_each_hosts_ledger_is_read_once_for_every_target(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from backupd.actions import announced_mirror
    from backupd.actions import evidence as evidence_action

    snaps = {t: _snap(i) for i, t in enumerate(("a", "b", "c"))}
    ledgers = {}
    for host in ("tos-01", "tos-02"):
        ledgers[host] = tmp_path / f"{host}.jsonl"
        ledgers[host].write_bytes(b"".join(_line(i + 1, _backup(s, target=t), host=host)
                                           for i, (t, s) in enumerate(snaps.items())))
    monkeypatch.setattr(evidence_action, "pull", lambda cfg, ps, dest, tmp, host, creds, keyring: {
        "hosts": [{"host": host, "ok": True, "ledger": str(ledgers[host])}]})
    opened = []
    real_open = open

    def counted_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(announced_mirror, "open", counted_open, raising=False)
    cfg = SimpleNamespace(evidence={"mirror": "worm"}, state_dir=tmp_path / "state", verifier=True,
                          backup_hosts=lambda: ["tos-01", "tos-02"])
    policy_set = SimpleNamespace(destinations={"worm": SimpleNamespace(auditor_credentials_file="ro.env",
                                                                      bucket="b")})
    out = announced_mirror.load(cfg, policy_set, list(snaps))
    assert sorted(opened) == sorted(str(p) for p in ledgers.values())  # once per host, not per target
    for target, snap in snaps.items():
        assert list(out[target]) == [snap.id] and out[target][snap.id].host == "tos-01"  # the first host's wins


def _verifier_restore(tmp_path, monkeypatch, snaps, announcements):
    """restore's choice as a verifier: the repository lists `snaps`, the mirror announced `announcements`."""
    from types import SimpleNamespace

    from backupd.actions import announced_mirror, restore

    monkeypatch.setattr(announced_mirror, "load", lambda cfg, ps, targets: {t: announcements for t in targets})
    monkeypatch.setattr(snapshot_choice, "target_listing", lambda repo, target, host: list(snaps))
    monkeypatch.setattr(snapshot_choice.restic_restore, "dump_file", lambda repo, sid, path: MANIFEST)
    cfg = SimpleNamespace(verifier=True, backup_hosts=lambda: ["tos-01"], state_dir=tmp_path / "state")
    cfg.state_dir.mkdir()
    return cfg, restore


def _with_manifest(snap: Snapshot) -> Snapshot:
    return Snapshot(**{**snap.__dict__, "paths": ["/d", "/var/lib/backupd/manifests/t"]})


def test_a_verifiers_restore_chooses_only_announced_snapshots_as_its_drills_do(tmp_path, monkeypatch):
    from types import SimpleNamespace

    old, planted = _with_manifest(_snap(1)), _with_manifest(_snap(2))
    got = announced.from_lines([_line(1, _backup(old))], "tos-01", "t")
    cfg, restore = _verifier_restore(tmp_path, monkeypatch, [old, planted], got)
    selection, doc = restore.restore_point(cfg, None, None, "t")
    assert selection.snap.id == old.id and selection.announcement.seq == 1 and doc["target"] == "t"
    assert "not counted: 02cccccc (no mirrored backup record announces it)" in selection.explanation
    with pytest.raises(Finding, match="02cccccc is not drilled or restored"):
        restore.restore_point(cfg, None, None, "t", planted.id[:8])
    # the commands' own paths: `restore --to` restores the announced one, `--into-database` refuses the planted
    restored = []
    from backupd.actions import media

    monkeypatch.setattr(media, "source_for",
                        lambda cfg, policy_set, target, destination=None: media.Source("worm", None))
    from backupd.actions import alongside  # restore --to restores through the drill's path

    monkeypatch.setattr(alongside.restic_restore, "restore", lambda repo, sid, to, cancel=None: restored.append(sid))
    target = SimpleNamespace(name="t", destinations=["worm"], sources=SimpleNamespace(dump=object()))
    policy_set = SimpleNamespace(target=lambda name: target, destinations={"worm": None})
    result = restore.run(cfg, policy_set, "t", tmp_path / "to")
    assert restored == [old.id] and result["snapshot_id"] == old.id
    from backupd.actions import restore_database

    monkeypatch.setattr(restore_database, "_preflight", lambda db, force, allow: [])
    with pytest.raises(Finding, match="02cccccc is not drilled or restored"):
        restore_database.run(cfg, policy_set, "t", None, snapshot_id=planted.id[:8])


def test_a_listing_the_mirror_does_not_vouch_for_makes_the_verifiers_manifest_check_apply(tmp_path, monkeypatch):
    """The restore reads the announced manifest: bytes that do not hash to the announcement fail it."""
    old = _with_manifest(_snap(1))
    got = announced.from_lines([_line(1, _backup(old, digest="f" * 64))], "tos-01", "t")
    cfg, restore = _verifier_restore(tmp_path, monkeypatch, [old], got)
    with pytest.raises(Finding, match="not the one tos-01 announced"):
        restore.restore_point(cfg, None, None, "t")


def test_the_verified_rpo_of_a_verifier_runs_from_the_announcement_not_the_snapshot_time():
    from backupd.actions import drill

    snap = _snap(5)  # its own time field says T0 + 5 h: the writer's to choose
    (ann,) = announced.from_lines([_line(1, _backup(snap))], "tos-01", "t").values()
    screened = announced.Screened(counted=[snap], by_id={snap.id: ann})
    chosen = snapshot_choice.Selection([snap], [snap], {}, snap, "newest", screened)
    assert drill._restore_point_time(chosen) == ann.when().timestamp()
    backup_role = snapshot_choice.Selection([snap], [snap], {}, snap, "newest")
    assert drill._restore_point_time(backup_role) == snap.time.timestamp()  # backup role: as before
