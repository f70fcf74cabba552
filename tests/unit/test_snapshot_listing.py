"""A drill or restore lists a target's snapshots once: the choice, the suspect flags and the manifest
(and every older manifest) are read from that one listing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from backupd.actions import snapshot_choice as choice
from backupd.engine.snapshots import Snapshot
from backupd.errors import Finding

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _snap(n: int, tags: list[str], paths=("/data", "/state/manifests/db")) -> Snapshot:
    sid = f"{n:02d}" + "a" * 62
    return Snapshot(id=sid, short_id=sid[:8], time=T0 + timedelta(hours=n), host="h", paths=list(paths),
                    tags=tags)


def _listing() -> list[Snapshot]:
    data = [_snap(i, ["backupd", "target=db"]) for i in range(3)]
    suspect = _snap(3, ["backupd-judgement", "suspect", "target=db", f"of={data[1].short_id}"])
    return data + [suspect, _snap(4, ["backupd", "target=db", "incomplete"])]


def test_one_listing_serves_choice_flags_and_manifests(monkeypatch):
    calls = {"snapshots": 0, "dump": 0}
    listing = _listing()

    def list_snapshots(repo, **kw):
        calls["snapshots"] += 1
        return listing

    def dump_file(repo, sid, path, timeout=600):
        calls["dump"] += 1
        return json.dumps({"files": [], "snapshot": sid}).encode()

    monkeypatch.setattr(choice.restic_snapshots, "list_snapshots", list_snapshots)
    monkeypatch.setattr(choice.restic_restore, "dump_file", dump_file)
    once = choice.target_listing(None, "db", "h")
    snaps = choice.data_snapshots(None, "db", "h", once)
    bad = choice.flagged(None, snaps, "db", "h", once)
    snap, _ = choice.choose(snaps, None, None, bad)
    docs = [choice.load_manifest(None, s, "db", "h", once) for s in snaps]
    assert [s.short_id for s in snaps] == [listing[i].short_id for i in range(3)]  # not the incomplete one
    assert list(bad) == [listing[1].id] and snap.id == listing[2].id
    assert docs[2]["snapshot"] == listing[2].id
    assert calls == {"snapshots": 1, "dump": 3}, "one listing, one dump per manifest"


GOOD = {"path": "/data/a.txt", "type": "file", "size": 3, "sha256": "ab" * 32, "mode": "0o644"}
MALFORMED = [
    ([1, 2], "not a JSON object"),
    ({"files": "all"}, "'files' is not a list"),
    ({"files": [{**GOOD, "path": 5}]}, "files[0]: path 5"),
    ({"files": [{**GOOD, "path": "/data/\0x"}]}, "files[0]: path"),
    ({"files": [GOOD, {**GOOD, "path": "/data/../../etc/shadow"}]}, "files[1]: path"),
    ({"files": [{**GOOD, "path": "data/a.txt"}]}, "not an absolute path"),
    ({"files": [{**GOOD, "type": "fifo"}]}, "type 'fifo'"),
    ({"files": [{**GOOD, "size": "3"}]}, "size"),
    ({"files": [{**GOOD, "size": True}]}, "size"),
    ({"files": [{**GOOD, "sha256": None}]}, "sha256"),
    ({"files": [{**GOOD, "mode": 420}]}, "mode"),
    ({"files": [GOOD], "facts": []}, "'facts' is not an object"),
    ({"files": [GOOD], "facts": {"rows": {"public.t": "many"}}}, "facts.rows"),
    ({"files": [GOOD], "facts": {"bytes": -1}}, "facts.bytes"),
    ({"files": [GOOD], "facts": {"changed_during_backup": [1]}}, "facts.changed_during_backup"),
]


def test_a_malformed_manifest_from_storage_is_a_finding_naming_the_field(monkeypatch):
    """The repository's answer is attacker input: a manifest of the wrong shape stops the drill or
    restore with a finding that says what is wrong, never a traceback deep in verification."""
    snap = _snap(0, ["backupd", "target=db"])
    for doc, why in MALFORMED:
        monkeypatch.setattr(choice.restic_restore, "dump_file", lambda *a, doc=doc, **k: json.dumps(doc).encode())
        try:
            choice.load_manifest(None, snap, "db", "h", [snap])
        except Finding as exc:
            assert "is malformed" in str(exc) and why in str(exc), (doc, str(exc))
        else:
            raise AssertionError(f"accepted {doc}")
    monkeypatch.setattr(choice.restic_restore, "dump_file",
                        lambda *a, **k: json.dumps({"files": [GOOD], "facts": {"rows": {"t": 1}}}).encode())
    assert choice.load_manifest(None, snap, "db", "h", [snap])["files"] == [GOOD]
