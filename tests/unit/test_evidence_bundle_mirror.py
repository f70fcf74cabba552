"""evidence verify BUNDLE: the report rebuilt from the bundle's records, and (moto) every record and
checkpoint compared with the WORM mirror. Root on the host holds the signing key: a bundle it re-signs
without a FAIL drill, or with an edited report, verifies under that key alone."""

from __future__ import annotations

import json
import uuid

from backupd.actions import evidence_report, evidence_verify
from backupd.config.loader import Config
from backupd.evidence import bundle, keys, mirror, pull, record, record_format
from backupd.render import evidence_html
from tests.unit.cli_helper import cli
from tests.unit.test_evidence_export import setup  # noqa: F401 (fixture: config, 4 backups, 1 passed drill)
from tests.unit.test_evidence_mirror import BUCKET, DEST


def _state(tmp):
    return tmp / "state"


def _mirror_all(tmp, s3) -> None:
    """Every record mirrored, then a signed checkpoint of the head (what the daemon does)."""
    state = _state(tmp)
    mirror.push_pending(state, DEST, s3)
    mirror.checkpoint_if_due(state, DEST, s3, keys.load_or_create(state), period=None, force=True)


def _export(tmp, config, name):
    out = tmp / name
    code, doc = cli("evidence", "export", "--out", str(out), "--config", str(config))
    assert code == 0, doc
    return out


def _forge(tmp, drop_seq: int) -> None:
    """Root on the host: the ledger without record drop_seq, the records after it renumbered and re-signed
    with the host's own key, the index and local checkpoint removed (they would give it away)."""
    state = _state(tmp)
    key = keys.load_or_create(state)
    path = state / "evidence" / "ledger.jsonl"
    out, prev = [], record_format.GENESIS
    for line in path.read_bytes().split(b"\n")[:-1]:
        rec = record_format.parse(line)
        if rec["seq"] == drop_seq:
            continue
        new = record_format.build(len(out) + 1, prev, rec["host"], rec["kind"], rec["data"], key, rec["time"])
        out.append(new)
        prev = record_format.line_hash(new)
    path.write_bytes(b"".join(line + b"\n" for line in out))
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "checkpoint.json"):
        (state / "evidence" / name).unlink(missing_ok=True)


def _verify(path, s3=None):
    """verify, with s3 against the host's mirror as `evidence pull` rebuilds it (as the CLI does)."""
    if s3 is None:
        return evidence_verify.verify(path)
    out = path.parent / f"pulled-{uuid.uuid4().hex[:8]}"
    return evidence_verify.verify(path, pull_mirror=lambda host: pull.pull(s3, BUCKET, out, host)[0])


def _drills(tmp):
    """A failed drill (seq 6) and a later backup (seq 7) after the setup's five records."""
    cfg = Config(path=None, state_dir=_state(tmp), host="tos-01")
    record(cfg, "drill", {"target": "db", "status": "failed", "verdict": "restore failed"})
    record(cfg, "backup", {"target": "db", "status": "ok", "snapshot_id": "def"})


def test_honest_bundle_verifies_clean_against_the_mirror(setup, s3):  # noqa: F811
    tmp, config = setup
    _drills(tmp)
    _mirror_all(tmp, s3)
    doc = _verify(_export(tmp, config, "honest.tar.gz"), s3)
    assert doc["ok"] and doc["problems"] == [], doc["problems"]
    assert doc["mirror"]["identical"] == 7 and doc["mirror"]["records"] == 7


def test_resigned_bundle_without_its_failed_drill_is_caught_only_by_the_mirror(setup, s3):  # noqa: F811
    tmp, config = setup
    _drills(tmp)
    _mirror_all(tmp, s3)
    _forge(tmp, drop_seq=6)
    out = _export(tmp, config, "forged.tar.gz")
    report = json.loads(bundle.read(out)["report.json"])
    assert [d["status"] for d in next(t for t in report["targets"] if t["name"] == "db")["drills"]] == ["ok"]
    assert _verify(out)["ok"]  # consistent under the host's key: offline it cannot be told
    doc = _verify(out, s3)
    assert not doc["ok"] and doc["ledger"]["first_bad_seq"] == 6
    assert any("record 6 differs from the WORM mirror" in p for p in doc["problems"]), doc["problems"]


def test_bundle_cut_off_before_its_failed_drill_is_caught_by_the_mirror(setup, s3):  # noqa: F811
    tmp, config = setup
    cfg = Config(path=None, state_dir=_state(tmp), host="tos-01")
    record(cfg, "drill", {"target": "db", "status": "failed"})  # seq 6, the last record
    _mirror_all(tmp, s3)  # the checkpoint covers seq 6
    _forge(tmp, drop_seq=6)
    out = _export(tmp, config, "short.tar.gz")
    assert _verify(out)["ok"] and bundle.read(out)["ledger.jsonl"].count(b"\n") == 5
    problems = _verify(out, s3)["problems"]
    assert any("record 6 is in the WORM mirror within the bundle's period" in p for p in problems), problems
    assert any("checkpoint of seq 6" in p and "the bundle ends at seq 5" in p for p in problems), problems


def test_bundle_record_missing_from_the_mirror_is_named(setup, s3):  # noqa: F811
    tmp, config = setup
    _mirror_all(tmp, s3)
    _drills(tmp)  # seq 6 and 7 never mirrored
    problems = _verify(_export(tmp, config, "ahead.tar.gz"), s3)["problems"]
    assert any("records 6..7 are in the bundle but not in the WORM mirror" in p for p in problems), problems


def _resign(out, tmp, changes: dict) -> None:
    """The bundle with members changed, its manifest signed again with the host's key."""
    members = bundle.read(out)
    manifest = json.loads(members.pop(bundle.MANIFEST))
    members.pop(bundle.SIGNATURE)
    meta = {k: v for k, v in manifest.items() if k not in ("format", "files")}
    bundle.write(out, {**members, **changes}, meta, keys.load_or_create(_state(tmp)))


def test_edited_report_is_caught_naming_the_file(setup):  # noqa: F811
    tmp, config = setup
    _drills(tmp)
    out = _export(tmp, config, "report.tar.gz")
    original = out.read_bytes()
    members = bundle.read(out)
    report = json.loads(members["report.json"])
    db = next(t for t in report["targets"] if t["name"] == "db")
    db["drills"][1]["status"] = "ok"  # the failed drill shown as passed
    _resign(out, tmp, {"report.json": json.dumps(report).encode()})
    doc = _verify(out)
    assert not doc["ok"] and any(p.startswith("report.json: target db: drills") for p in doc["problems"]), doc

    out.write_bytes(original)
    html = members["report.html"].replace(b"failed restore failed", b"ok")
    assert html != members["report.html"]
    _resign(out, tmp, {"report.html": html})
    doc = _verify(out)
    assert doc["problems"] == ["report.html: differs from the report rendered again from report.json (edited)"]

    out.write_bytes(original)
    _resign(out, tmp, {"report.json": members["report.json"].replace(b'"not met"', b'"met"', 1)})
    assert any(p.startswith("report.json: conformance item") for p in _verify(out)["problems"])

    out.write_bytes(original)
    _resign(out, tmp, {"report.json": b"[1, 2"})
    assert any(p.startswith("report.json: not a report") for p in _verify(out)["problems"])


def test_a_target_dropped_from_the_report_with_its_renderings_is_caught(setup):  # noqa: F811
    """Root re-renders report.html/csv from a report.json without target db (and its FAIL drill)."""
    tmp, config = setup
    _drills(tmp)
    out = _export(tmp, config, "dropped.tar.gz")
    members = bundle.read(out)
    report = json.loads(members["report.json"])
    assert report["other_targets"] == []
    report["targets"] = [t for t in report["targets"] if t["name"] != "db"]
    _resign(out, tmp, {"report.json": evidence_report.to_json(report), "report.csv": evidence_report.to_csv(report),
                       "report.html": evidence_html.render(report)})
    problems = _verify(out)["problems"]
    assert any("records name target 'db' but the report lists no such target" in p for p in problems), problems


def test_mirror_with_a_bundle_needs_no_ledger_host_and_reads_the_destination(setup):  # noqa: F811
    tmp, config = setup
    out = _export(tmp, config, "b.tar.gz")
    code, doc = cli("evidence", "verify", str(out), "--mirror", "nowhere", "--config", str(config))
    assert code == 2 and "no destination 'nowhere'" in doc["error"]


def test_what_others_planted_in_the_mirror_is_named_and_the_hosts_own_version_compared(setup, s3):  # noqa: F811
    tmp, config = setup
    _mirror_all(tmp, s3)
    out = _export(tmp, config, "b.tar.gz")
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 2), Body=b"forged\n")  # a newer version
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 99), Body=b"\xff not a record\n")
    doc = _verify(out, s3)
    assert doc["mirror"]["identical"] == 5 and not any("differ" in p for p in doc["problems"]), doc["problems"]
    assert any(p.startswith(f"WORM mirror: foreign object {mirror.record_key('tos-01', 2)}") for p in doc["problems"])
    assert any(p.startswith(f"WORM mirror: foreign object {mirror.record_key('tos-01', 99)}") for p in doc["problems"])
