"""The daemon's extra alert conditions: drill WARN/FAIL, storage-audit findings, silent log sources."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace

from backupd.actions import status
from backupd.config.loader import Config
from backupd.daemon.service import Service
from backupd.notify import Alerts
from backupd.state.runs import State


def _logs_target():
    return SimpleNamespace(name="vpn-logs", category="logs", frequency=timedelta(hours=1), rto=None, destinations=[])


def test_a_log_generation_without_new_data_is_silent(tmp_path):
    state = State(tmp_path)
    change = {"previous_files": 5, "added": 0, "changed": 0, "removed": 0}
    state.record("backup", "vpn-logs", "worm", time.time(), "ok", "a1", {"facts": {"change": change}})
    assert status._log_silent(state, _logs_target()) is True
    change["changed"] = 2
    state.record("backup", "vpn-logs", "worm", time.time() + 1, "ok", "a2", {"facts": {"change": change}})
    assert status._log_silent(state, _logs_target()) is False


def test_conditions_alert_once_and_resolve_once(tmp_path):
    sent = []
    fake = SimpleNamespace(cfg=Config(path=None, host="h"), CONDITIONS=Service.CONDITIONS,
                           alerts=Alerts(tmp_path, SimpleNamespace(rate_limit_per_hour=100), lambda *a, **k: None,
                                         send_to={"test": sent.append}))
    row = {"target": "tos-db", "drill_status": "fail", "drill_verdict": "FAIL", "drill_ready_seconds": 99,
           "rto": "4h", "immutability": "finding", "log_silent": None}
    for _ in range(3):
        Service._alert_conditions(fake, row, time.time())
    assert sorted((m.kind, m.state) for m in sent) == [("drill", "firing"), ("storage_audit", "firing")]
    row.update(drill_status="pass", immutability="ok")
    Service._alert_conditions(fake, row, time.time())
    assert sorted((m.kind, m.state) for m in sent[2:]) == [("drill", "resolved"), ("storage_audit", "resolved")]


def test_a_suspect_newest_generation_alerts_until_a_clean_one_follows(tmp_path):
    sent = []
    fake = SimpleNamespace(cfg=Config(path=None, host="h"), CONDITIONS=Service.CONDITIONS,
                           alerts=Alerts(tmp_path, SimpleNamespace(rate_limit_per_hour=100), lambda *a, **k: None,
                                         send_to={"test": sent.append}))
    row = {"target": "logs", "state": "suspect", "drill_status": None, "immutability": "ok", "log_silent": None}
    for _ in range(2):
        Service._alert_conditions(fake, row, time.time())
    assert [(m.kind, m.state) for m in sent] == [("suspect_generation", "firing")]
    Service._alert_conditions(fake, {**row, "state": "ok"}, time.time())
    assert [(m.kind, m.state) for m in sent[1:]] == [("suspect_generation", "resolved")]
