"""The operator's drill report (state_dir/reports/drills.html): built from the ledger's drill records,
bilingual, private, escaped; rewritten after each drill and never failing one."""

from __future__ import annotations

import stat
from datetime import timedelta
from types import SimpleNamespace

from backupd.actions import drill, drill_report
from backupd.config.loader import Config
from backupd.evidence import record
from backupd.render import results


def _policy(*names, rto=timedelta(hours=2)):
    targets = [SimpleNamespace(name=n, rto=rto) for n in names]
    return SimpleNamespace(targets=targets, target=lambda name: next(t for t in targets if t.name == name))


def _drill_data(target, verdict, ready, **extra):
    return {"target": target, "destination": "worm", "kind": "sample", "verdict": verdict,
            "status": "ok" if verdict in ("PASS", "WARN") else "failed", "snapshot_id": "0123456789abcdef",
            "service_ready_seconds": ready, "rto_seconds": 7200, "files_restored": 10, "total_files": 40,
            "phases": {"select": 1.5, "restore": 20.0, "verify": 3.0, "probes": 4.5},
            "probes": [{"kind": "files", "status": "ok", "problems": []},
                       {"kind": "postgres", "status": "failed", "problems": ["table berth has 0 rows", "<img src=x onerror=alert(1)>"]}],
            "reason": f"ready in {ready}s", **extra}


def test_report_lists_each_drill_with_phases_probes_verdict_and_a_chart(tmp_path):
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")
    record(cfg, "drill", _drill_data("tos-db", "PASS", 1800.0))
    record(cfg, "backup", {"target": "tos-db", "status": "ok"})
    record(cfg, "drill", _drill_data("tos-db", "FAIL", 9000.0, reason="over the RTO <b>"))
    record(cfg, "drill", _drill_data("other", "WARN", 6000.0))
    path = drill_report.write(cfg, _policy("tos-db", "<evil>"))
    assert path == tmp_path / "state" / "reports" / "drills.html"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    html = path.read_text(encoding="utf-8")
    assert "復旧訓練報告" in html and "Restore drill report" in html and "<script" not in html
    assert html.count("class='v-PASS'") == 1 and html.count("class='v-FAIL'") == 1
    assert "class='v-WARN'" not in html  # "other" is not a target of this policy
    assert "restore:20.0s" in html and "probes:4.5s" in html and "25% RTO" in html and "125% RTO" in html
    assert "postgres: failed" in html and "table berth has 0 rows" in html
    assert "over the RTO &lt;b&gt;" in html and "&lt;evil&gt;" in html and "<evil>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html  # restored data quoted
    assert html.count('class="drill-bar"') == 2 and 'class="rto-line"' in html
    # newest first in the list
    assert html.index("#3") < html.index("#1")


def test_each_drill_run_rewrites_the_report(tmp_path, monkeypatch):
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")

    def fake_drill(cfg, state, policy_set, target, full, snapshot_id, cancel, removals=None, announced=None,
                   destination=None):
        data = _drill_data(target.name, "PASS", 60.0)
        record(cfg, "drill", data)
        return data

    monkeypatch.setattr(drill, "_drill", fake_drill)
    reports = drill.run(cfg, _policy("tos-db"), "tos-db")
    assert reports[0]["verdict"] == "PASS"
    assert "v-PASS" in drill_report.report_path(cfg.state_dir).read_text(encoding="utf-8")


def test_a_report_that_cannot_be_written_does_not_fail_the_drill(tmp_path, monkeypatch, capsys):
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")
    monkeypatch.setattr(drill, "_drill", lambda *a: {"target": "tos-db", "verdict": "PASS", "status": "ok"})

    def broken(*a, **k):
        raise PermissionError("reports/ is read-only")

    monkeypatch.setattr(drill_report, "write", broken)
    reports = drill.run(cfg, _policy("tos-db"), "tos-db")
    assert results.drill_exit_code(reports) == 0
    assert "drill report not updated: reports/ is read-only" in capsys.readouterr().err
