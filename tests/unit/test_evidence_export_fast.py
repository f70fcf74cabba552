"""evidence export's fast paths give what the plain ones give: the period read (raw-line prefilter, orjson,
backup records folded into a tally) against every line parsed with json, and report.json's writer against
json.dumps(indent=1, sort_keys=True)."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import tarfile
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupd.actions import evidence_report
from backupd.evidence import bundle, canonical, keys, period, record_format
from backupd.evidence.ledger import LineFile

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _line(seq: int, prev: str, kind: str, data, when: str) -> bytes:
    """A signed record line like record_format.build, but data as given (not normalised: odd JSON on purpose)."""
    body = {"seq": seq, "time": when, "host": "h", "kind": kind, "data": data, "prev": prev,
            "kid": keys.fingerprint(KEY.public_key())}
    line = canonical.dumps({**body, "sig": base64.b64encode(KEY.sign(canonical.dumps(body))).decode("ascii")})
    return line.replace(b'"<NaN>"', b"NaN")  # not canonical JSON (its signature no longer verifies)


def _datas(i: int, target: str):
    """Backup/drill data of every shape the report reads: plain, failed, verdict/ok only, not a dict, a
    nested decoy kind, a lone surrogate and NaN (orjson refuses), integers beyond 64 bits (orjson reads
    floats), a non-string target."""
    return [
        {"target": target, "status": "ok", "destination": "worm", "snapshot_id": f"{i:064x}", "files": i},
        {"target": target, "status": "failed", "snapshot_id": None},
        {"target": target, "verdict": "PASS", "service_ready_seconds": "12.5"},
        {"target": target, "ok": True, "destination": ["a", {"b": 1}]},
        ["not", "a", "dict"],
        {"target": target, "status": "ok", "note": {"kind": "backup"}, "snapshot_id": "\udcff"},
        {"target": target, "status": "ok", "snapshot_id": 2**70, "service_ready_seconds": -2**65},
        {"target": target, "status": "<NaN>", "verdict": "ok"},
        {"target": 7, "status": "ok"},
        {"target": target, "status": "ok", "service_ready_seconds": 3},
    ][i % 10]


def _ledger(tmp_path, n: int = 400) -> tuple:
    rng = random.Random(5)
    kinds = ["backup"] * 6 + ["drill", "runbook", "keys_escrow", "key-backup", "evidence-export", "forget", "check"]
    prev, lines = record_format.GENESIS, []
    for seq in range(1, n + 1):
        at = START + timedelta(hours=seq)
        if seq % 37 == 0:
            at -= timedelta(days=400)  # a clock that jumped back: outside the periods below
        elif seq % 41 == 0:
            at += timedelta(days=4000)
        kind = rng.choice(kinds)
        line = _line(seq, prev, kind, _datas(seq, rng.choice(["db", "prog", 'we"ird\\名'])),
                     canonical.iso(at))
        lines.append(line)
        prev = record_format.line_hash(line)
    lines[n * 3 // 8] = lines[n * 3 // 8][:60]  # a damaged line: it stays inside the period, verify names it
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


def _reference(lines: list[bytes], since: str, until: str) -> tuple:
    """The period and its report records as the plain code reads them: every line through json.loads."""
    recs = []
    for number, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        recs.append(rec)
    inside = [i for i, r in enumerate(recs) if r is None or since <= r["time"] <= until]
    first, last = inside[0], inside[-1]
    kept, tally = [], evidence_report.BackupTally()
    for rec in recs[first:last + 1]:
        if rec is None or rec["kind"] not in evidence_report.RECORD_KINDS:
            continue
        data = rec["data"]
        if rec["kind"] == "backup":
            tally.add(rec["seq"], rec["time"], data)
            continue
        fields = evidence_report.RECORD_FIELDS[rec["kind"]]
        kept.append({"seq": rec["seq"], "time": rec["time"], "kind": rec["kind"],
                     "data": {k: data[k] for k in fields if k in data} if isinstance(data, dict) else {}})
    start = sum(len(x) + 1 for x in lines[:first])
    return (first + 1, last + 1, start, start + sum(len(x) + 1 for x in lines[first:last + 1])), kept, tally


def _same(a, b) -> bool:
    """Equal as JSON text (NaN == NaN, int 2**70 != float 2**70)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("since,until", [("2000-01-01", "2100-01-01"), ("2026-01-03T00:00:00.000000Z",
                                                                         "2026-01-12T00:00:00.000000Z"),
                                         ("2036-01-01", "2038-12-31")])  # the clock jumps forward only
def test_the_period_read_gives_what_parsing_every_line_gives(tmp_path, since, until):
    path, lines = _ledger(tmp_path)
    tally = evidence_report.BackupTally()
    got = period.read(path, since, until, evidence_report.RECORD_FIELDS,
                      fold={"backup": (evidence_report.DATA_FIELDS, tally.add)})
    bounds, records, want = _reference(lines, since, until)
    first, last, start, end = bounds
    assert (got.start, got.end, got.lines) == (start, end, last - first + 1)
    assert got.first_prev == (record_format.line_hash(lines[first - 2]) if first > 1 else record_format.GENESIS)
    assert _same(got.records, records) and len(got.records) > 5
    for target in ("db", "prog", 'we"ird\\名', "none"):
        assert _same(tally.summary(target), want.summary(target))
    assert tally.summary("db")["ok"] > 3 and isinstance(tally.summary("db")["seqs"][0], int)


def test_integers_beyond_64_bits_stay_integers_in_the_report_fields(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(_line(1, record_format.GENESIS, "drill", {"target": "db", "snapshot_id": 2**70,
                                                                 "service_ready_seconds": -2**65}, "2026-01-01") + b"\n")
    got = period.read(path, "2000", "2100", evidence_report.RECORD_FIELDS)
    assert got.records[0]["data"] == {"target": "db", "snapshot_id": 2**70, "service_ready_seconds": -2**65}
    assert isinstance(got.records[0]["data"]["snapshot_id"], int)


def test_the_period_stops_at_its_byte_limit(tmp_path):
    path, lines = _ledger(tmp_path, 20)
    limit = sum(len(x) + 1 for x in lines[:12])
    got = period.read(path, "2000", "2100", evidence_report.RECORD_FIELDS, limit=limit)
    assert got.lines == 12 and got.end == limit
    listed = LineFile(path, limit)
    assert list(listed) == lines[:12] and listed.torn is None
    cut = LineFile(path, limit + 5)
    assert list(cut) == lines[:12] and cut.torn == lines[12][:5]


def _doc(rng: random.Random, depth: int = 0):
    scalars = [None, True, False, 0, -5, 2**70, 1.5, -0.0, float("nan"), float("inf"), "", "}", "},\n {", "名\n\x00",
               '"\\/', "{"]
    pick = rng.random()
    if depth < 4 and pick < 0.2:
        return {rng.choice(["a", "ü名", '"q"', "}", "\n"]) + str(rng.randint(0, 3)): _doc(rng, depth + 1)
                for _ in range(rng.randint(0, 5))}
    if depth < 4 and pick < 0.25:
        return {rng.choice([1, 2.5, True, None]): _doc(rng, depth + 1) for _ in range(rng.randint(0, 1))}
    if depth < 4 and pick < 0.35:  # rows of scalars, like the drills
        return [{rng.choice("abcdefg"): rng.choice(scalars) for _ in range(rng.randint(0, 4))}
                for _ in range(rng.randint(1, 5))]
    if depth < 4 and pick < 0.45:
        return [_doc(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if depth < 4 and pick < 0.5:  # seqs
        return [rng.randint(-10**20, 10**20) for _ in range(rng.randint(0, 6))]
    if depth < 4 and pick < 0.52:
        return tuple(_doc(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    return rng.choice(scalars)


def test_report_json_is_byte_for_byte_json_dumps():
    rng = random.Random(7)
    for _ in range(5000):
        doc = {"targets": [_doc(rng), {"seqs": list(range(50)), "drills": [_doc(rng)]}], "x": _doc(rng)}
        assert evidence_report.to_json(doc) == json.dumps(doc, indent=1, sort_keys=True,
                                                          ensure_ascii=False).encode("utf-8")
    with pytest.raises(TypeError):
        evidence_report.to_json({"a": [object()]})


def test_the_bundle_is_plain_gzip_and_its_hash_is_taken_while_written(tmp_path):
    path, lines = _ledger(tmp_path, 50)
    out = tmp_path / "b.tar.gz"
    with bundle.Writer(out) as writer:
        writer.add("a.txt", b"hello")
        writer.add_range(bundle.LEDGER, path, 0, path.stat().st_size)
        writer.finish({"host": "h"}, KEY)
    assert writer.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    with tarfile.open(out, "r:gz") as tar:
        assert tar.extractfile("a.txt").read() == b"hello"
        assert tar.extractfile(bundle.LEDGER).read() == path.read_bytes()
