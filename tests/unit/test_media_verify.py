"""media verify's screening of a medium's snapshots against the host's verified ledger: a copy counts only when
a media-sync record names it and a backup record announced its original; anything else is a finding by id."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from backupd.actions import media_verify
from backupd.engine.snapshots import Listing, Snapshot

HOST = "tos-01"
UUID = "0f0e0d0c-1111-2222-3333-444455556666"


def _id(char: str) -> str:
    return char * 64


def _line(seq: int, kind: str, data: dict, host: str = HOST) -> bytes:
    return json.dumps({"seq": seq, "kind": kind, "host": host, "time": f"2026-12-0{seq}T00:00:00Z",
                       "data": data}).encode()


def _backup(seq: int, sid: str, host: str = HOST, **facts) -> bytes:
    return _line(seq, "backup", {"target": "docs", "status": "ok", "snapshot_id": sid, "destination": "worm",
                                 "manifest_sha256": "ab" * 32, "facts": facts}, host)


def _sync(seq: int, copies: list[tuple[str, str]], uuid: str = UUID) -> bytes:
    return _line(seq, "media-sync", {"status": "ok", "uuid": uuid, "medium": "weekly-a",
                                     "copied": [{"snapshot_id": c, "original": o} for c, o in copies]})


def _snap(sid: str, original: str | None, host: str = HOST) -> Snapshot:
    return Snapshot(sid, sid[:8], datetime(2026, 12, 1, tzinfo=timezone.utc), host, ["/data"],
                    ["backupd", "target=docs"], original)


def _out() -> dict:
    return {"findings": [], "snapshots": []}


def test_announced_copies_count_and_a_planted_one_is_named():
    lines = [_backup(1, _id("a")), _backup(2, _id("b"), change={"suspicious": True, "flags": ["x"]}),
             _sync(3, [(_id("1"), _id("a")), (_id("2"), _id("b"))]),
             _backup(4, _id("c"), host="other-host"),  # another host's record announces nothing here
             _sync(5, [(_id("3"), _id("9"))])]  # a copy of an original no backup record announced
    known = media_verify.parse(lines, HOST, UUID)
    assert set(known.backups) == {_id("a"), _id("b")} and known.last_sync["copied"][0]["snapshot_id"] == _id("3")
    listing = Listing([_snap(_id("1"), _id("a")), _snap(_id("2"), _id("b")),
                       _snap(_id("3"), _id("9")),  # named by a sync, original never announced
                       _snap(_id("4"), _id("a")),  # claims an announced original, but no sync record names it
                       _snap(_id("5"), None, host="other-host")])
    out = _out()
    counted = media_verify._screen(HOST, listing, known, out)
    assert [s.id for s, _, _ in counted] == [_id("1"), _id("2")]
    assert [f["snapshot_id"] for f in out["findings"]] == [_id("3"), _id("4"), _id("5")]
    assert all(f["kind"] == "unannounced" and "planted" in f["message"] for f in out["findings"])
    assert "no backup record announced its original" in out["findings"][0]["message"]
    assert media_verify._flagged(counted[1][0], counted[1][1], known)
    assert not media_verify._flagged(counted[0][0], counted[0][1], known)


def test_a_copy_the_last_sync_of_this_medium_wrote_and_that_is_gone_is_a_finding():
    lines = [_backup(1, _id("a")), _backup(2, _id("b")), _sync(3, [(_id("1"), _id("a")), (_id("2"), _id("b"))]),
             _sync(4, [(_id("7"), _id("b"))], uuid="another-medium")]
    known = media_verify.parse(lines, HOST, UUID)
    out = _out()
    media_verify._missing(HOST, Listing([_snap(_id("1"), _id("a"))]), known, out)
    assert [(f["kind"], f["snapshot_id"]) for f in out["findings"]] == [("missing", _id("2"))]


def test_garbage_lines_and_records_of_other_hosts_are_ignored():
    lines = [b"not json", b"[]", _line(1, "backup", "nope"), _backup(2, _id("a")),
             _line(3, "suspect_snapshot", {"snapshot_id": _id("a")})]
    known = media_verify.parse(lines, HOST, None)
    assert set(known.backups) == {_id("a")} and _id("a") in known.suspect and known.last_sync is None
