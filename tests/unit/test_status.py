"""`backupd status` rows from real state, evidence ledger and daemon jobs (no restic, no S3)."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from backupd import evidence, output
from backupd.actions import status
from backupd.config.loader import Config
from backupd.policy.schema import LocalDestination, S3Destination
from backupd.render import results
from backupd.state.jobs import Job, JobStore
from backupd.state.runs import State


def _policy_set():
    worm = S3Destination.model_construct(kind="s3", endpoint="http://127.0.0.1:1", bucket="b", path="p",
                                         object_lock=True, credentials_file=Path("c"), password_file=Path("p"))
    plain = S3Destination.model_construct(kind="s3", endpoint="http://127.0.0.1:1", bucket="b2", path="p",
                                          object_lock=False, credentials_file=Path("c"), password_file=Path("p"))
    usb = LocalDestination.model_construct(kind="local", path=Path("/mnt/usb"), password_file=Path("p"))
    target = lambda name, dests: SimpleNamespace(  # noqa: E731
        name=name, category="container_data", frequency=timedelta(days=1), rto=timedelta(hours=8),
        destinations=dests)
    return SimpleNamespace(destinations={"worm": worm, "plain": plain, "usb": usb},
                           targets=[target("tos-db", ["worm", "usb"]), target("docs", ["plain", "usb"])])


@pytest.fixture
def cfg(tmp_path):
    return Config(path=None, state_dir=tmp_path / "state", secrets_dir=tmp_path, host="h")


def _rows(cfg) -> dict[str, dict]:
    return {r["target"]: r for r in status.run(cfg, _policy_set())}


def _json(rows, capsys) -> tuple[int, dict]:
    code = results.status_rows(rows, as_json=True)
    return code, json.loads(capsys.readouterr().out)


def _audit(cfg, **statuses):
    evidence.record(cfg, "storage_audit", {"destinations": [{"destination": d, "status": s}
                                                            for d, s in statuses.items()]})


def test_nothing_recorded_is_never_everywhere_and_exit_1(cfg, capsys):
    rows = _rows(cfg)
    db = rows["tos-db"]
    assert db["status"] == "never" and db["age"] is None and db["rpo"] == "1d"  # original keys kept
    assert db["verified_rpo"] is None and db["drill_status"] is None and db["rto"] == "8h"
    assert db["immutability"] == "never"  # an Object-Lock destination that was never audited
    assert rows["docs"]["immutability"] == "none"  # no destination with object lock
    assert db["check_coverage"] is None and db["check_coverage_by_destination"] == {"worm": None, "usb": None}
    assert db["next_due"] is None and db["next_due_in"] is None
    code, doc = _json(list(rows.values()), capsys)
    assert code == 1 and doc["exit_code"] == 1 and len(doc["targets"]) == 2


def test_backed_up_drilled_audited_checked_and_scheduled(cfg, capsys):
    state, now = State(cfg.state_dir), time.time()
    for name in ("tos-db", "docs"):
        state.record("backup", name, "worm", now - 60, "ok", "abcdef0123456789", {"duration": 3.0})
    state.record("drill", "tos-db", "worm", now - 30, "pass", "abcdef01",
                 {"kind": "sample", "verdict": "PASS", "verified_snapshot_time": now - 7200,
                  "service_ready_seconds": 42.0})
    for dest, cov in (("worm", 0.5), ("usb", 1.0)):
        state.record("check", dest, dest, now - 10, "ok", None, {"coverage": cov})
    _audit(cfg, worm="ok")
    JobStore(cfg.state_dir).save(Job("backup:tos-db", "tos-db", 86400.0, next_due=now + 3 * 3600))
    db = _rows(cfg)["tos-db"]
    assert db["status"] == "ok" and db["last_snapshot"] == "abcdef01"
    assert db["verified_rpo"] == "2.0h" and 7190 <= db["verified_rpo_seconds"] <= 7300
    assert db["drill_status"] == "pass" and db["drill_verdict"] == "PASS" and db["drill_ready_seconds"] == 42.0
    assert db["rto_seconds"] == 8 * 3600 and db["drill_kind"] == "sample"
    assert db["immutability"] == "ok" and db["immutability_audited"]
    assert db["check_coverage"] == 0.5 and db["check_coverage_by_destination"] == {"worm": 0.5, "usb": 1.0}
    assert db["next_due"] == pytest.approx(now + 3 * 3600) and db["next_due_in"] in ("3.0h", "2.9h")
    code, doc = _json([db], capsys)
    assert code == 0 and doc["ok"] is True


def test_failed_last_drill_makes_exit_1_although_backups_are_fresh(cfg, capsys):
    state, now = State(cfg.state_dir), time.time()
    state.record("backup", "tos-db", "worm", now - 60, "ok", "abc", {})
    state.record("drill", "tos-db", "worm", now - 50, "fail", "abc",
                 {"kind": "full", "verdict": "FAIL", "verified_snapshot_time": None, "service_ready_seconds": 9e4})
    db = _rows(cfg)["tos-db"]
    assert db["status"] == "ok" and db["drill_status"] == "fail" and db["verified_rpo"] is None
    assert _json([db], capsys)[0] == 1


def test_unavailable_drill_is_no_finding(cfg, capsys):
    state, now = State(cfg.state_dir), time.time()
    state.record("backup", "tos-db", "worm", now - 60, "ok", "abc", {})
    state.record("drill", "tos-db", "worm", now - 50, "unavailable", None, {"verdict": "FAIL"})
    assert _json([_rows(cfg)["tos-db"]], capsys)[0] == 0


def test_latest_judging_audit_wins(cfg):
    _audit(cfg, worm="ok")
    assert _rows(cfg)["tos-db"]["immutability"] == "ok"
    _audit(cfg, worm="finding")
    assert _rows(cfg)["tos-db"]["immutability"] == "finding"
    _audit(cfg, worm="unavailable")  # storage down: says nothing about the lock, the finding stands
    assert _rows(cfg)["tos-db"]["immutability"] == "finding"
    _audit(cfg, worm="ok")
    assert _rows(cfg)["tos-db"]["immutability"] == "ok"


def test_stale_backup_and_overdue_job(cfg):
    state, now = State(cfg.state_dir), time.time()
    state.record("backup", "tos-db", "worm", now - 60, "ok", "abc", {})
    with state._connect() as db:  # age the run past the 1d RPO
        db.execute("UPDATE runs SET finished = ?", (now - 2 * 86400,))
    JobStore(cfg.state_dir).save(Job("backup:tos-db", "tos-db", 86400.0, next_due=now - 5))
    db = _rows(cfg)["tos-db"]
    assert db["status"] == "stale" and db["next_due_in"] == "now"


def _table(rows, console: Console) -> str:
    saved = output.console
    output.console = console
    try:
        results.status_rows(rows, as_json=False)
    finally:
        output.console = saved
    return console.file.getvalue()


def test_table_is_plain_when_piped_and_coloured_in_a_terminal(cfg):
    State(cfg.state_dir).record("backup", "tos-db", "worm", time.time(), "ok", "abc", {})
    rows = list(_rows(cfg).values())
    piped = _table(rows, Console(file=io.StringIO(), width=200))  # not a tty: rich drops styles
    assert "\x1b[" not in piped and "[green]" not in piped and "never" in piped and "ok" in piped
    tty = _table(rows, Console(file=io.StringIO(), width=200, force_terminal=True, color_system="standard"))
    assert "\x1b[32mok" in tty and "\x1b[31mnever" in tty


def test_state_is_the_worst_of_backup_judgement_drill_check_and_audit(cfg, capsys):
    state, now = State(cfg.state_dir), time.time()
    state.record("backup", "tos-db", "worm", now - 60, "ok", "abc", {})
    state.record("backup", "tos-db", "usb", now - 60, "ok", "abd", {})
    assert _rows(cfg)["tos-db"]["state"] == "ok"
    state.record("drill", "tos-db", "worm", now - 50, "fail", "abc", {"verdict": "FAIL"})
    row = _rows(cfg)["tos-db"]
    assert row["status"] == "ok" and row["state"] == "drill failed"
    assert _json([row], capsys)[0] == 1
    state.record("drill", "tos-db", "worm", now - 40, "pass", "abc", {"verdict": "PASS"})
    state.record("check", "usb", "usb", now - 30, "failed", None, {})
    assert _rows(cfg)["tos-db"]["state"] == "check failed"
    state.record("check", "usb", "usb", now - 20, "ok", None, {})
    _audit(cfg, worm="finding")
    assert _rows(cfg)["tos-db"]["state"] == "finding"
    _audit(cfg, worm="ok")
    state.record("backup", "tos-db", "worm", now - 10, "ok", "abe",
                 {"facts": {"change": {"suspicious": True, "flags": ["mass encryption suspected"]}}})
    row = _rows(cfg)["tos-db"]
    assert row["state"] == "suspect" and any("suspect" in r for r in row["state_reasons"])


def test_a_drill_warn_close_to_the_rto_never_reads_like_a_pass(cfg):
    state, now = State(cfg.state_dir), time.time()
    state.record("backup", "tos-db", "worm", now - 60, "ok", "abc", {})
    state.record("drill", "tos-db", "worm", now - 50, "warn", "abc",
                 {"verdict": "WARN", "service_ready_seconds": 2.45})
    row = _rows(cfg)["tos-db"]
    row["rto_seconds"], row["rto"] = 3.0, "3s"
    table = _table([row], Console(file=io.StringIO(), width=250))
    assert "WARN 2.45s/3s (82%)" in table and row["state"] == "warn"


def test_the_terminal_projection_loads_no_s3_client():
    """status runs in the daemon and on every `backupd status`: the restore order it projects must not
    import incident's boto3 (0.6-0.9 s of a ~1.5 s status on the shared machine, bench/year.py)."""
    import subprocess
    import sys

    code = ("import sys; from types import SimpleNamespace as N; from datetime import timedelta;"
            "from backupd.actions import time_to_service; from backupd.state.runs import State; import tempfile, pathlib;"
            "t = N(name='db', category='container_data', environment=None, destinations=['w'], rto=timedelta(hours=4));"
            "ps = N(targets=[t], site=N(restore_parallelism=1, allowable_downtime=None));"
            "time_to_service.terminal(State(pathlib.Path(tempfile.mkdtemp())), ps);"
            "print('boto3' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
