"""The estate report of `evidence pull --all-hosts`, built from pulled ledgers: sites, generations (backup
records less forget records), drills, audits, conformance against the puller's policy, CSV and HTML."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupd.actions import estate, evidence_conformance
from backupd.cli import main
from backupd.evidence import record_format
from backupd.render import estate as estate_render

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def _policy(site="Auditor Site"):
    def target(name, category, source=None):
        return SimpleNamespace(name=name, category=category, source=source, frequency=timedelta(days=1),
                               destinations=["worm"])

    return SimpleNamespace(site=SimpleNamespace(name=site, specific_port=False),
                           destinations={"worm": SimpleNamespace(object_lock=True, offline=False)},
                           targets=[target("files", "container_data"), target("logs", "logs", "server")])


def _ledger(path, host, events):
    """Write a signed ledger of (days ago, kind, data) events; return its path."""
    key, prev, lines = Ed25519PrivateKey.generate(), record_format.GENESIS, []
    for seq, (days, kind, data) in enumerate(events, 1):
        when = (NOW - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = record_format.build(seq, prev, host, kind, data, key, when)
        prev = record_format.line_hash(line)
        lines.append(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(l + b"\n" for l in lines))
    return path


def _backup(target, sid, status="ok"):
    return {"target": target, "destination": "worm", "status": status, "snapshot_id": sid if status == "ok" else None,
            "error": None if status == "ok" else "storage unreachable"}


def _pull_doc(tmp_path):
    east = _ledger(tmp_path / "tos-01" / "ledger.jsonl", "tos-01", [
        (30, "backup", _backup("files", "a" * 64)), (20, "backup", _backup("files", "b" * 64)),
        (3, "backup", _backup("files", "c" * 64)), (2, "backup", _backup("files", None, "unavailable")),
        (1, "forget", {"target": "files", "destination": "worm", "status": "ok", "dry_run": False,
                       "keep": ["b" * 64, "c" * 64], "remove": ["a" * 64]}),
        (1, "backup", _backup("logs", "d" * 64)),
        (1, "drill", {"target": "files", "destination": "worm", "status": "ok", "verdict": "PASS",
                      "snapshot_id": "c" * 64}),
        (1, "storage_audit", {"destinations": [{"destination": "worm", "status": "finding"}]}),
        (0, "runbook", {"site": "East Terminal", "targets": []})])
    west = _ledger(tmp_path / "tos-02" / "ledger.jsonl", "tos-02", [(1, "backup", _backup("files", "e" * 64)),
                                                                   (1, "backup", _backup("extra", "f" * 64))])
    host = {"problems": [], "key_fingerprint": "SHA256:x", "attestations": [], "ok": True}
    return {"bucket": "b", "hosts": [{**host, "host": "tos-01", "records": 9, "ledger": str(east)},
                                     {**host, "host": "tos-02", "records": 2, "ledger": str(west)}]}


def test_generations_are_the_recorded_snapshots_less_the_forgotten(tmp_path):
    doc = estate.build(_pull_doc(tmp_path), _policy(), now=NOW)
    east = doc["hosts"][0]
    files = next(t for t in east["targets"] if t["name"] == "files")
    (worm,) = files["destinations"]
    assert worm["count"] == 2 and worm["oldest_age_days"] == 20.0  # a was forgotten
    assert files["backups"] == {**files["backups"], "ok": 3, "failed": 1}
    assert files["drills"][0]["verdict"] == "PASS"
    assert east["audits"] == [{"seq": 8, "time": "2026-11-26T12:00:00Z", "kind": "storage_audit",
                               "status": "finding", "destinations": {"worm": "finding"}}]
    items = {i["id"]: i for i in east["conformance"]}
    assert items["G4"]["status"] == "met"  # read from the WORM mirror
    assert items["G1"]["status"] == "not met" and items["G1"]["why"].endswith(": logs")  # files reaches 20 days


def test_sites_come_from_runbook_records_else_the_auditors_policy(tmp_path):
    doc = estate.build(_pull_doc(tmp_path), _policy(), now=NOW)
    assert doc["sites"] == {"Auditor Site": ["tos-02"], "East Terminal": ["tos-01"]}
    west = doc["hosts"][1]
    assert west["site_from"] == "auditor policy" and west["other_targets"] == ["extra"]
    m1 = next(i for i in west["conformance"] if i["id"] == "M1")
    assert m1["status"] == "not met" and "logs" in m1["why"]  # the policy's target it never backed up


def test_csv_and_html_list_every_host(tmp_path):
    pulled = _pull_doc(tmp_path)
    out = estate.write(pulled, _policy(), tmp_path / "out")
    assert set(out["hosts"]) == {"tos-01", "tos-02"} and out["hosts"]["tos-01"]["backups_failed"] == 1
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "estate.csv").read_text())))
    assert {(r["host"], r["target"]) for r in rows} == {(h, t) for h in ("tos-01", "tos-02") for t in ("files", "logs")}
    html = (tmp_path / "out" / "estate.html").read_text()
    assert "East Terminal" in html and "tos-02" in html and "<script" not in html


def test_renderer_counts_the_conformance_statuses_the_evaluation_gives():
    """render/estate.py imports no action, so it names the statuses itself: they must stay the same."""
    assert estate_render.STATUSES == (evidence_conformance.MET, evidence_conformance.NOT_MET,
                                      evidence_conformance.NONE)


def test_all_hosts_and_host_exclude_each_other(tmp_path):
    result = CliRunner().invoke(main, ["evidence", "pull", "--destination", "worm", "--out", str(tmp_path),
                                       "--host", "tos-01", "--all-hosts"])
    assert result.exit_code == 2 and "exclude each other" in result.output
