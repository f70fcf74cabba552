"""evidence export: bundle content, bilingual report, and verify of tampered bundles."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupd.actions import evidence_report
from backupd.config.loader import Config
from backupd.engine.snapshots import Snapshot
from backupd.evidence import keys, record
from tests.unit.cli_helper import cli, write_secrets

TARGETS = [("db", "container_data", {"rto": "4h"}), ("prog", "system_program", {"environment": "production"}),
           ("logs-srv", "logs", {"source": "server"}), ("logs-net", "logs", {"source": "network_device"})]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A config + policy whose inventory is faked: every target has snapshots 0, 3 and 20 days old."""
    secrets = write_secrets(tmp_path / "secrets")
    policy = {"version": 1, "site": {"name": "Demo", "port": "nagoya"},
              "destinations": {"worm": {"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "bkt-1",
                                        "object_lock": True, "credentials_file": "s3-writer.env",
                                        "password_file": "restic-password"}},
              "targets": [{"name": n, "category": c, "owner": "ops", "frequency": "1d",
                           "sources": {"paths": [f"/srv/{n}"]}, "destinations": ["worm"],
                           "retention": {"keep_daily": 14, "keep_weekly": 8}, **extra} for n, c, extra in TARGETS]}
    (tmp_path / "p.yaml").write_text(json.dumps(policy))
    config = tmp_path / "backupd.yaml"
    config.write_text(f"policies: ['{tmp_path}/p.yaml']\nstate_dir: '{tmp_path}/state'\n"
                      f"secrets_dir: '{secrets}'\nhost: tos-01\n")
    now = datetime.now(timezone.utc)

    def fake_inventory(cfg, policy_set, host):
        snaps = lambda t: [Snapshot(f"{t}{d:062d}", f"{t}{d}"[:8], now - timedelta(days=d), host, [])  # noqa: E731
                           for d in (20, 3, 0)]
        return {(t.name, "worm"): {"snapshots": snaps(t.name), "error": None} for t in policy_set.targets}

    monkeypatch.setattr(evidence_report, "inventory", fake_inventory)
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")
    for n, _, _ in TARGETS:
        record(cfg, "backup", {"target": n, "status": "ok", "snapshot_id": "abc"})
    record(cfg, "drill", {"target": "db", "status": "ok"})
    return tmp_path, config


def members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def rewrite(path, changes):
    files = {**members(path), **changes}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            if data is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_export_writes_a_verifiable_bilingual_bundle(setup):
    tmp, config = setup
    out = tmp / "evidence.tar.gz"
    code, doc = cli("evidence", "export", "--out", str(out), "--config", str(config))
    assert code == 0, doc
    assert doc["records"] == 5 and doc["export_record_seq"] == 6
    got = members(out)
    assert set(got) == {"manifest.json", "manifest.sig", "ledger.jsonl", keys.PUB_NAME, "report.json",
                        "report.csv", "report.html"}
    report = json.loads(got["report.json"])
    db = next(t for t in report["targets"] if t["name"] == "db")
    worm = db["destinations"][0]
    assert worm["count"] == 3 and worm["generations"]["<=1d"] == 1 and worm["generations"]["<=30d"] == 1
    assert worm["meets_min_history"] is False  # 20 days < the default 6w min_history
    assert db["drills"][0]["seq"] == 5 and db["backups"]["ok"] == 1
    status = {i["id"]: i["status"] for i in report["conformance"]}
    assert status["M1"] == "met" and status["M3"] == "met" and status["G1"] == "met"
    assert status["M4"] == "not met" and status["G4"] == "not met" and "S3" in status  # nagoya: specific port
    html = got["report.html"].decode()
    assert "バックアップ証跡報告書" in html and "Backup evidence report" in html and "<script" not in html
    assert got["report.csv"].decode().splitlines()[0].startswith("target,category,destination,snapshots")
    code, doc = cli("evidence", "verify", str(out), "--public-key", str(tmp / "state/keys" / keys.PUB_NAME))
    assert code == 0 and doc["ok"], doc


def test_tampered_bundles_fail_verify(setup):
    tmp, config = setup
    out = tmp / "e.tar.gz"
    assert cli("evidence", "export", "--out", str(out), "--config", str(config))[0] == 0
    original = out.read_bytes()
    pub = str(tmp / "state/keys" / keys.PUB_NAME)

    rewrite(out, {"report.json": members(out)["report.json"].replace(b'"met"', b'"MET"')})
    code, doc = cli("evidence", "verify", str(out), "--public-key", pub)
    assert code == 1 and any("report.json: SHA-256 differs" in p for p in doc["problems"])

    out.write_bytes(original)
    ledger = members(out)["ledger.jsonl"].split(b"\n")
    rewrite(out, {"ledger.jsonl": b"\n".join(ledger[:-2]) + b"\n"})  # drop the last record
    code, doc = cli("evidence", "verify", str(out), "--public-key", pub)
    assert code == 1 and any("ends at seq 4 (truncated)" in p for p in doc["problems"])

    out.write_bytes(original)
    other = tmp / "other.pub"
    other.write_bytes(keys.public_pem(Ed25519PrivateKey.generate().public_key()))
    code, doc = cli("evidence", "verify", str(out), "--public-key", str(other))
    assert code == 1 and any("not the trusted key" in p for p in doc["problems"])


def test_since_until_slice_verifies_from_its_first_record(setup):
    tmp, config = setup
    out = tmp / "slice.tar.gz"
    ledger = (tmp / "state/evidence/ledger.jsonl").read_bytes().split(b"\n")
    third = json.loads(ledger[2])["time"]
    code, doc = cli("evidence", "export", "--out", str(out), "--since", third, "--config", str(config))
    assert code == 0 and doc["first_seq"] == 3 and doc["last_seq"] == 5
    assert cli("evidence", "verify", str(out))[0] == 0


def test_bad_time_is_a_usage_error(setup):
    tmp, config = setup
    code, doc = cli("evidence", "export", "--out", str(tmp / "x.tar.gz"), "--since", "yesterday",
                    "--config", str(config))
    assert code == 2 and "ISO 8601" in doc["error"]
