"""Offline copies in status and the daemon: the newest read-back-verified rotation per target, its age
against offline.max_age, on which medium; the daemon alerts once when it is too old, resolves once."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from backupd.actions import offline, status
from backupd.config.loader import Config
from backupd.daemon.service import Service
from backupd.evidence import keys
from backupd.evidence.ledger import Ledger
from backupd.notify import Alerts

TARGET = SimpleNamespace(name="docs", offline=SimpleNamespace(max_age=timedelta(days=8)))


def _iso(days_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days_ago)).isoformat()


def _sync(state_dir, medium: str, days_ago: float, status_="ok", read_back="ok") -> None:
    data = {"medium": medium, "uuid": "u-" + medium, "status": status_, "read_back": read_back,
            "targets": {"docs": {"generations": 3, "newest_time": _iso(days_ago), "newest_snapshot": "ab" * 32}}}
    with Ledger(state_dir) as ledger:
        ledger.append("h", "media-sync", data, keys.load_or_create(state_dir))


def test_offline_age_is_the_newest_verified_rotation_against_max_age(tmp_path):
    now = time.time()
    assert offline.fields(tmp_path, TARGET, now)["offline_status"] == "never"
    assert offline.fields(tmp_path, SimpleNamespace(name="x", offline=None), now) == {"offline_status": None}
    _sync(tmp_path, "weekly-a", 9)
    row = offline.fields(tmp_path, TARGET, now)
    assert row["offline_status"] == "stale" and row["offline_medium"] == "weekly-a"
    assert "beyond offline.max_age 8d" in offline.reason(row)
    _sync(tmp_path, "weekly-b", 1, read_back="damaged", status_="failed")  # not read back: does not count
    assert offline.fields(tmp_path, TARGET, now)["offline_status"] == "stale"
    _sync(tmp_path, "weekly-c", 2)
    row = offline.fields(tmp_path, TARGET, now)
    assert row["offline_status"] == "ok" and row["offline_medium"] == "weekly-c"
    assert abs(row["offline_age_seconds"] - 2 * 86400) < 60 and row["offline_max_age_seconds"] == 8 * 86400
    assert set(row["offline_media"]) == {"weekly-a", "weekly-b", "weekly-c"}
    assert row["offline_media"]["weekly-b"]["read_back"] == "damaged"
    assert offline.reason(row) is None


def test_a_stale_offline_copy_makes_the_state_stale():
    row = {"status": "ok", "offline_status": "stale", "offline_medium": "weekly-a", "offline_age_seconds": 9 * 86400,
           "offline_max_age": "8d"}
    state, reasons = status.overall(row, False, [])
    assert state == "stale" and any("offline copy" in r for r in reasons)


def test_the_offline_copy_alert_fires_once_and_resolves_once(tmp_path):
    sent = []
    fake = SimpleNamespace(cfg=Config(path=None, host="h"), CONDITIONS=Service.CONDITIONS,
                           alerts=Alerts(tmp_path, SimpleNamespace(rate_limit_per_hour=100), lambda *a, **k: None,
                                         send_to={"test": sent.append}))
    row = {"target": "docs", "drill_status": None, "immutability": "ok", "log_silent": None,
           "offline_status": "ok", "offline_medium": "weekly-a", "offline_max_age": "8d"}
    Service._alert_conditions(fake, row, time.time())
    assert sent == []
    for _ in range(3):
        Service._alert_conditions(fake, {**row, "offline_status": "stale"}, time.time())
    assert [(m.kind, m.state) for m in sent] == [("offline_copy", "firing")]
    assert "older than offline.max_age 8d" in sent[0].summary
    Service._alert_conditions(fake, row, time.time())
    assert [(m.kind, m.state) for m in sent[1:]] == [("offline_copy", "resolved")]
