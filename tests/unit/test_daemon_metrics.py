"""The daemon's metrics through prometheus_client: exact values, HELP/TYPE, the new per-target series,
a live scrape of the loopback server that `promtool check metrics` accepts, and the textfile."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request

import pytest

from backupd.daemon import metrics
from backupd.errors import ConfigError

NOW = 1_764_230_123.456
ROWS = [{"target": "tos-db", "status": "ok", "age_seconds": 120, "rpo_seconds": 3600.0, "last_duration": 4.5,
         "last_success_time": NOW, "next_due": NOW + 3480, "suspect_generations": 1, "drill_status": "warn",
         "drill_ready_seconds": 3100.25, "drill_time": "2025-11-27T07:55:23+00:00", "rto_seconds": 3600.0,
         "verified_snapshot_time": "2025-11-27T06:00:00+00:00", "immutability": "ok",
         "check_coverage_by_destination": {"worm": 0.8125, "usb": None}},
        {"target": 'we"ird', "status": "never", "age_seconds": None, "rpo_seconds": 60.0, "last_duration": None,
         "last_success_time": None, "next_due": None, "immutability": "none"}]
DAEMON = {"running_jobs": 1, "start_time": NOW - 10, "ready_seconds": 0.42, "outbox": (2, time.time() - 30),
          "reachable": {"worm": False, "usb": True}}


def _metrics():
    m = metrics.Metrics()
    m.update(ROWS, DAEMON)
    return metrics.registry(m)


def test_values_are_exact_and_every_series_is_described():
    text = metrics.render(_metrics())
    assert 'backupd_backup_last_success_timestamp_seconds{target="tos-db"} 1.764230123456e+09' in text
    assert 'backupd_backup_status{status="never",target="we\\"ird"} 1.0' in text
    assert 'backupd_backup_last_success{target="we\\"ird"} 0.0' in text
    assert 'backupd_drill_verdict{target="tos-db",verdict="warn"} 1.0' in text
    assert 'backupd_drill_ready_seconds{target="tos-db"} 3100.25' in text
    assert 'backupd_target_rto_seconds{target="tos-db"} 3600.0' in text
    assert 'backupd_check_coverage_ratio{destination="worm",target="tos-db"} 0.8125' in text
    assert 'destination="usb",target="tos-db"' not in text  # never checked: no series, not a zero
    assert 'backupd_backup_suspect_generations{target="tos-db"} 1.0' in text
    assert 'backupd_storage_audit_status{status="ok",target="tos-db"} 1.0' in text
    assert 'backupd_storage_reachable{destination="worm"} 0.0' in text
    assert "backupd_alert_outbox_messages 2.0" in text and "backupd_daemon_ready_seconds 0.42" in text
    assert "# HELP backupd_verified_rpo_seconds" in text and "# TYPE backupd_backup_age_seconds gauge" in text
    assert "process_resident_memory_bytes" in text and "python_info" in text
    age = float(next(ln for ln in text.splitlines() if ln.startswith("backupd_backup_age_seconds{")).split()[-1])
    assert age >= time.time() - NOW - 5  # computed at scrape time, not frozen at the last evaluation


def test_a_live_scrape_passes_promtool_and_the_textfile_matches(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/setup.sh installs the Debian package prometheus"
    reg = _metrics()
    server = metrics.Server("127.0.0.1", 0, reg).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            body = resp.read()
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    finally:
        server.stop()
    assert not server.thread.is_alive()
    done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert b"backupd_backup_rpo_seconds" in body
    metrics.write_textfile(tmp_path / "backupd.prom", reg)
    assert "backupd_backup_rpo_seconds" in (tmp_path / "backupd.prom").read_text()
    with pytest.raises(ConfigError, match="loopback"):
        metrics.Server("0.0.0.0", 0, reg)


def test_the_grafana_dashboard_only_queries_exported_metrics():
    import json
    import re
    from pathlib import Path

    board = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/backupd.json").read_text())
    used = {name for panel in board["panels"] for t in panel["targets"]
            for name in re.findall(r"\b(?:backupd|process)_[a-z_]+", t["expr"])}
    text = metrics.render(_metrics())
    assert used and all(name in text for name in used), sorted(n for n in used if n not in text)
