"""backupd runbook: restore order, drill-based durations, bilingual Markdown/HTML, evidence record."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from backupd.actions import incident, runbook
from backupd.config.loader import Config
from backupd.evidence import record_format
from backupd.evidence.ledger import Ledger
from backupd.state.runs import State
from tests.unit.cli_helper import cli, write_secrets

TARGETS = [("logs-net", "logs", {"source": "network_device"}), ("prog-dev", "system_program",
           {"environment": "development"}), ("prog", "system_program", {"environment": "production", "rto": "2h"}),
           ("db", "container_data", {"rto": "4h"})]


@pytest.fixture
def setup(tmp_path):
    """Config + policy; db has a sample then a full drill, prog only a sample, the others none."""
    secrets = write_secrets(tmp_path / "secrets")
    policy = {"version": 1, "site": {"name": "Demo Terminal", "port": "nagoya"},
              "destinations": {"worm": {"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "bkt-1",
                                        "object_lock": True, "credentials_file": "s3-writer.env",
                                        "password_file": "restic-password"}},
              "targets": [{"name": n, "category": c, "owner": f"{n}-team@example.jp", "frequency": "1d",
                           "sources": {"paths": [f"/srv/{n}"]}, "destinations": ["worm"],
                           "retention": {"keep_daily": 14, "keep_weekly": 8}, **extra} for n, c, extra in TARGETS]}
    (tmp_path / "p.yaml").write_text(json.dumps(policy))
    config = tmp_path / "backupd.yaml"
    config.write_text(f"policies: ['{tmp_path}/p.yaml']\nstate_dir: '{tmp_path}/state'\n"
                      f"secrets_dir: '{secrets}'\nhost: tos-01\n")
    state, now = State(tmp_path / "state"), time.time()
    state.record("drill", "db", "worm", now - 300, "pass", "s1", {"kind": "full", "service_ready_seconds": 754.0})
    state.record("drill", "db", "worm", now - 100, "warn", "s2", {"kind": "sample", "service_ready_seconds": 9.0})
    state.record("drill", "prog", "worm", now - 50, "fail", "s3", {"kind": "sample", "verdict": "FAIL",
                                                                     "service_ready_seconds": 30.0})
    state.record("drill", "logs-net", "worm", now - 10, "unavailable", None, {"kind": "full"})
    return tmp_path, config


def test_runbook_orders_targets_and_takes_durations_from_drills(setup):
    tmp, config = setup
    code, doc = cli("runbook", "--out", str(tmp / "out"), "--config", str(config))
    assert code == 0, doc
    assert [t["name"] for t in doc["targets"]] == ["db", "prog", "logs-net", "prog-dev"]
    db, prog, logs, dev = doc["targets"]
    assert db["expected"]["basis"] == "full drill" and db["expected"]["seconds"] == 754  # full wins over newer sample
    assert db["last_drill"]["kind"] == "sample" and db["last_drill"]["status"] == "warn"
    assert prog["expected"]["basis"] == "projected" and prog["expected"]["seconds"] == 30
    assert logs["expected"]["en"] == "not measured — run a drill"  # an unavailable drill measured nothing
    assert dev["last_drill"] is None and dev["rto"] is None and db["rto"] == "4h"
    assert db["owner"] == "db-team@example.jp" and db["destinations"] == ["worm: s3://bkt-1/restic (Object Lock)"]
    assert db["commands"]["restore"] == (f"backupd restore --config {config} --target db --to <RESTORE_DIR>/db "
                                         "--before <INCIDENT_START_ISO8601>")
    assert db["commands"]["drill"] == f"backupd drill --config {config} --target db --full"
    assert [c["en"] for c in doc["checklist"]] == list(incident.CHECKLIST)


def test_runbook_files_are_bilingual_and_recorded_with_their_hashes(setup):
    tmp, config = setup
    code, doc = cli("runbook", "--out", str(tmp / "out"), "--config", str(config))
    assert code == 0
    md = (tmp / "out" / "runbook.md").read_text()
    html = (tmp / "out" / "runbook.html").read_text()
    for text in (md, html):
        assert "システム復旧手順書" in text and "System recovery runbook" in text
        assert "保守・開発ベンダー" in text and "shared in advance with the TOS maintenance/development vendors" in text
        assert "運用再開前チェックリスト" in text and "no ransom paid" in text and "身代金" in text
        assert "754 s" not in text and "12.6 min" in text  # 754 s of the full drill
    assert "<script" not in html and "http" not in html.replace("http://127.0.0.1:9", "")
    [rec] = [record_format.parse(line) for line in Ledger(tmp / "state").lines()
             if record_format.parse(line)["kind"] == "runbook"]
    for name in ("runbook.md", "runbook.html"):
        assert rec["data"]["files"][name] == hashlib.sha256((tmp / "out" / name).read_bytes()).hexdigest()
    assert rec["seq"] == doc["record_seq"]


def test_open_incident_fills_the_restore_point(setup):
    tmp, config = setup
    cfg = Config(path=config, state_dir=tmp / "state", host="tos-01")
    inc = incident.start(cfg, "ransom note on TOS server")
    code, doc = cli("runbook", "--out", str(tmp / "out"), "--config", str(config))
    assert code == 0 and doc["incident"] == inc["id"]
    assert doc["targets"][0]["commands"]["restore"].endswith(f"--before {inc['started']}")


def test_out_that_is_a_file_is_a_usage_error(setup):
    tmp, config = setup
    (tmp / "file").write_text("x")
    code, doc = cli("runbook", "--out", str(tmp / "file"), "--config", str(config))
    assert code == 2 and "not a directory" in doc["error"]


def test_expected_duration_without_drills():
    assert runbook.expected_duration([])["ja"].startswith("未計測")
