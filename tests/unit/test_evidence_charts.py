"""The evidence report's charts: the inventory marks flagged generations (read from the same one listing
per destination), and report.html draws them apart from clean restore points, with the drill chart."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from backupd.actions import evidence_report
from backupd.config.loader import Config
from backupd.engine.snapshots import Snapshot
from backupd.evidence import record
from backupd.render import evidence_html
from tests.unit.cli_helper import cli
from tests.unit.test_evidence_export import members, setup  # noqa: F401 - setup is a fixture

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def _snap(n: int, days: float, tags: list[str]) -> Snapshot:
    return Snapshot(f"{n:02x}" * 32, f"{n:02x}" * 4, NOW - timedelta(days=days), "tos-01", [], tags)


def test_inventory_flags_suspect_generations_unless_accepted_in_one_listing(monkeypatch):
    data = [_snap(1, 20, ["backupd", "target=db"]), _snap(2, 3, ["backupd", "target=db"]),
            _snap(3, 1, ["backupd", "target=db", "suspect"]), _snap(4, 0.5, ["backupd", "target=db"])]
    companions = [_snap(9, 2, ["backupd-judgement", "suspect", "target=db", f"of={data[1].short_id}"]),
                  _snap(10, 0.1, ["backupd-accept", "target=db", f"of={data[3].short_id}"]),
                  _snap(11, 0.1, ["backupd-judgement", "suspect", "target=db", f"of={data[3].short_id}"]),
                  _snap(12, 0.2, ["backupd", "target=db", "incomplete"])]
    calls = []
    monkeypatch.setattr(evidence_report, "repository", lambda *a, **k: object())
    monkeypatch.setattr(evidence_report.restic_snapshots, "list_snapshots",
                        lambda repo, **kw: calls.append(kw) or data + companions)
    target = SimpleNamespace(name="db", destinations=["worm"])
    found = evidence_report.inventory(None, SimpleNamespace(destinations={"worm": SimpleNamespace(kind="s3")}, targets=[target]),
                                      "tos-01")
    assert len(calls) == 1  # one listing serves data snapshots and flags
    got = found[("db", "worm")]
    assert [s.id for s in got["snapshots"]] == [s.id for s in data]
    assert set(got["flagged"]) == {data[1].id, data[2].id}  # data[3] was flagged, then accepted


def _report(flags: dict) -> dict:
    dest = SimpleNamespace(kind="s3", object_lock=True, offline=False)
    snaps = [_snap(1, 40, ["backupd"]), _snap(2, 3, ["backupd"]), _snap(3, 1, ["backupd"])]
    found = {"snapshots": snaps, "error": None, "flagged": flags}
    row = evidence_report._destination_row("worm", dest, found, timedelta(days=30), NOW)
    drills = [{"seq": 5, "time": (NOW - timedelta(days=2)).isoformat(), "status": "ok", "verdict": "WARN",
               "service_ready_seconds": 6000.0},
              {"seq": 7, "time": NOW.isoformat(), "status": "failed", "verdict": "SUSPECT",
               "service_ready_seconds": 600}]
    return {"name": "db", "category": "container_data", "frequency": "1d", "rto": "2h", "rto_seconds": 7200.0,
            "owner": "ops", "min_history": "30d", "min_history_seconds": 30 * 86400.0, "destinations": [row],
            "backups": {"ok": 3, "failed": 0, "last_ok": None, "seqs": []}, "drills": drills}


def test_report_html_draws_restore_points_window_flags_and_drills_against_the_rto():
    target = _report({"02" * 32: "flagged as suspect at backup time"})
    assert [s["suspect"] for s in target["destinations"][0]["snapshots"]] == [False, True, False]
    html = evidence_html._target(target, NOW.isoformat())
    assert html.count('class="restore-point"') == 2 and html.count('class="flagged-point"') == 1
    assert html.count('class="min-history-window"') == 1
    assert 'class="rto-line"' in html and 'class="warn-line"' in html
    assert 'data-verdict="WARN"' in html and 'data-verdict="SUSPECT"' in html
    assert html.index("<svg") > html.index("<h3>")  # under the target's heading


def test_a_target_without_drills_shows_no_empty_drill_chart():
    target = {**_report({}), "drills": []}
    html = evidence_html._target(target, NOW.isoformat())
    assert html.count("<svg") == 1 and "no drill records" in html


def test_exported_report_charts_each_drill_at_its_measured_time(setup):
    """report.json keeps each drill's time to service-ready (evidence stores 1234.5 as '1234.5'), so
    report.html draws a bar, not an unmeasured marker."""
    tmp, config = setup
    cfg = Config(path=None, state_dir=tmp / "state", host="tos-01")
    record(cfg, "drill", {"target": "db", "status": "ok", "verdict": "PASS", "service_ready_seconds": 1234.5})
    out = tmp / "evidence.tar.gz"
    code, doc = cli("evidence", "export", "--out", str(out), "--config", str(config))
    assert code == 0, doc
    got = members(out)
    report = json.loads(got["report.json"])
    db = next(t for t in report["targets"] if t["name"] == "db")
    assert [d["service_ready_seconds"] for d in db["drills"]] == [None, 1234.5] and db["rto_seconds"] == 4 * 3600
    html = got["report.html"].decode()
    assert html.count('class="drill-bar"') == 1 and html.count('class="drill-unmeasured"') == 1
