"""Backups on real restic, SeaweedFS (Object Lock) and PostgreSQL, through the real CLI."""

from __future__ import annotations

import filecmp
import os
import hashlib
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from backupd.actions.common import repository
from backupd.config import loader as config_mod
from backupd.engine import snapshots
from backupd.policy.lint import load_policy_set
from tests.integration.conftest import CONTAINERS

pytestmark = [pytest.mark.integration, pytest.mark.restic]


def repo_of(setup, dest="worm"):
    """The engine view of a test destination, to inspect snapshots directly."""
    cfg = config_mod.load(setup.config)
    ps = load_policy_set(cfg.policy_files(), cfg.secrets_dir, env=setup.stack.env)
    return repository(cfg, dest, ps.destinations[dest])


def test_example_policy_backs_up_every_category(example):
    setup, doc = example
    results = doc["results"]
    assert {r["category"] for r in results} == {"system_program", "container_data", "logs",
                                                "control_system", "documentation"}
    assert all(r["status"] == "ok" and r["snapshot_id"] for r in results)
    assert all(r["engine"]["restic"].startswith("0.") and "AES-256" in r["engine"]["crypto"] for r in results)
    snaps = snapshots.list_snapshots(repo_of(setup, "worm-primary"), tags=["backupd"])
    by_target = {s.tagmap["target"]: s for s in snaps}
    assert set(by_target) == {r["target"] for r in results}
    db = by_target["tos-db"].tagmap
    assert db["category"] == "container_data" and db["policy"] == "terminal" and db["host"] == "it-host"


def test_dump_facts_match_the_database(example, stack):
    _, doc = example
    db = next(r for r in doc["results"] if r["target"] == "tos-db")
    rows = {name.split(".")[-1]: n for name, n in db["facts"]["rows"].items()}
    assert rows == stack.facts
    assert rows["containers"] == CONTAINERS


def test_backup_data_is_encrypted_at_rest(example, stack):
    """No object in the bucket holds a recognisable plain-text line of the TOS logs."""
    log = next(Path(stack.env["TOS_ROOT"], "logs", "server").glob("*.log"))
    needle = log.read_bytes().splitlines()[0][:40]
    s3 = stack.seaweed.client("auditor")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="restic/data/").get("Contents", [])]
    assert keys
    for key in keys:
        assert needle not in s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()


def test_restored_files_equal_their_sources_byte_for_byte(example, stack, tmp_path):
    setup, _ = example
    out = tmp_path / "restore"
    run = setup.cli("restore", "--target", "tos-programs-production", "--to", str(out), "--json")
    assert run.code == 0, run.stderr
    assert run.doc["verification"]["ok"] and run.doc["verification"]["verified"] > 0
    src = Path(stack.env["TOS_ROOT"]) / "programs" / "production"
    compared = 0
    for path in src.rglob("*"):
        if path.is_file() and not path.is_symlink():
            restored = out / str(path).lstrip("/")
            assert filecmp.cmp(path, restored, shallow=False), path
            assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(restored.stat().st_mode)
            compared += 1
    assert compared == run.doc["verification"]["verified"] - sum(1 for p in src.rglob("*") if p.is_symlink())


def test_restored_dump_matches_backup_time_hash(example, tmp_path):
    setup, doc = example
    db = next(r for r in doc["results"] if r["target"] == "tos-db")
    out = tmp_path / "db"
    run = setup.cli("restore", "--target", "tos-db", "--to", str(out), "--json")
    assert run.code == 0, run.stderr
    dump = out / "tos.sql"
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == db["facts"]["sha256"]
    assert b"COPY \"public\".\"containers\"" in dump.read_bytes()


def test_restore_refuses_a_non_empty_directory(example, tmp_path):
    setup, _ = example
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("operator data")
    run = setup.cli("restore", "--target", "tos-db", "--to", str(tmp_path / "busy"))
    assert run.code == 2 and "not empty" in run.stderr
    assert (tmp_path / "busy" / "keep.txt").read_text() == "operator data"


def test_a_failing_dump_is_a_failed_backup_with_no_snapshot(policy):
    setup = policy("""  - name: broken-dump
    category: container_data
    owner: test
    sources:
      dump: {kind: command, command: [sh, -c, "head -c 300000 /dev/urandom; echo boom >&2; exit 7"]}
    frequency: 1h
    rto: 4h
    retention: {keep_hourly: 24, keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
  - name: missing-db
    category: container_data
    owner: test
    sources:
      dump: {kind: pg_dump, database: no_such_db, host: '${TOS_PGHOST}', port: '${TOS_PGPORT}', user: postgres}
    frequency: 1h
    rto: 4h
    retention: {keep_hourly: 24, keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
""", "t-faildump")
    for target, why in (("broken-dump", "exited with 7"), ("missing-db", "no_such_db")):
        run = setup.cli("backup", "--target", target, "--json")
        assert run.code == 1
        (result,) = run.doc["results"]
        assert result["status"] == "failed" and why in result["error"] and not result["snapshot_id"]
    repo = repo_of(setup)
    assert snapshots.list_snapshots(repo, tags=["target=broken-dump"]) == []
    assert snapshots.list_snapshots(repo, tags=["target=missing-db"]) == []


def test_a_missing_source_path_fails_the_backup_without_a_snapshot(policy, stack, tmp_path):
    """restic 0.14 skips a missing path and exits 0; backupd must not call that a backup."""
    present = tmp_path / "present"
    present.mkdir()
    (present / "a.cfg").write_text("crane=1\n")
    setup = policy(f"""  - name: plc
    category: control_system
    owner: test
    sources: {{paths: ['{present}', '{tmp_path / "gone"}']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
""", "t-unreadable")
    run = setup.cli("backup", "--target", "plc", "--json")
    assert run.code == 1
    (result,) = run.doc["results"]
    assert result["status"] == "failed" and "do not exist" in result["error"]
    assert any("gone" in n for n in result["notes"])
    assert snapshots.list_snapshots(repo_of(setup), tags=["target=plc"]) == []


def test_secrets_never_reach_argv_or_logs(policy, stack, tmp_path):
    argv_log = tmp_path / "argv.log"
    wrapper = tmp_path / "restic-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> {argv_log}\nexec restic "$@"\n')
    wrapper.chmod(0o755)
    setup = policy("""  - name: db
    category: container_data
    owner: test
    sources:
      dump: {kind: pg_dump, database: tos, host: '${TOS_PGHOST}', port: '${TOS_PGPORT}', user: postgres}
    frequency: 1h
    rto: 4h
    retention: {keep_hourly: 24, keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
""", "t-secrets", restic=str(wrapper))
    runs = [setup.cli("backup", "--json"), setup.cli("restore", "--target", "db", "--to", str(tmp_path / "r"))]
    assert runs[0].code == 0, runs[0].stdout
    password = (stack.secrets_dir / "restic-password").read_text().strip()
    s3_secret = next(line.split("=", 1)[1] for line in (stack.secrets_dir / "s3-writer.env").read_text().splitlines()
                     if line.startswith("AWS_SECRET_ACCESS_KEY="))
    state_db = sqlite3.connect(setup.dir / "state" / "state.sqlite").execute("SELECT * FROM runs").fetchall()
    manifests = "".join(p.read_text() for p in (setup.dir / "state" / "manifests").rglob("*.json"))
    texts = {"argv": argv_log.read_text(), "state": repr(state_db), "manifests": manifests,
             **{f"cli{i}": r.stdout + r.stderr for i, r in enumerate(runs)}}
    assert "backup" in texts["argv"] and len(texts["argv"].splitlines()) >= 3
    for where, text in texts.items():
        assert password not in text, f"restic password leaked into {where}"
        assert s3_secret not in text, f"S3 secret leaked into {where}"


def test_storage_outage_is_found_by_the_pre_flight_and_reported(policy, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    setup = policy("""  - name: docs
    category: documentation
    owner: test
    sources: {paths: ['${TOS_ROOT}/docs']}
    frequency: 1d
    retention: {keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
""", "t-outage", endpoint=f"http://127.0.0.1:{closed}", retry_attempts=2, retry_wait_seconds=0.2)
    run = setup.cli("backup", "--target", "docs", "--json")
    assert run.code == 3
    (result,) = run.doc["results"]
    assert result["status"] == "unavailable" and "unreachable" in result["error"]
    assert "pre-flight" in result["error"] and not result["notes"]  # one probe, no restic retries


def test_forget_is_guarded_against_planted_future_snapshots(policy, stack, tmp_path):
    setup = policy("""  - name: cfg
    category: control_system
    owner: test
    sources: {paths: ['${TOS_ROOT}/control']}
    frequency: 1h
    retention: {keep_last: 1, keep_hourly: 1, keep_weekly: 4, min_history: 3w}
    destinations: [worm]
""", "t-forget")
    for _ in range(3):
        assert setup.cli("backup", "--target", "cfg").code == 0
    run = setup.cli("forget", "--target", "cfg", "--json")
    assert run.code == 0, run.stdout
    (result,) = run.doc["results"]
    assert result["remove"] == [] and len(result["keep"]) == 3, "keep-within must keep every recent generation"
    repo = repo_of(setup)
    env = repo.environment().build()
    planted_file = tmp_path / "junk.cfg"
    planted_file.write_text("planted by an attacker")
    planted = subprocess.run(["restic", "backup", "--host", "it-host", "--tag", "backupd", "--tag", "target=cfg",
                              "--time", "2031-01-01 00:00:00", str(planted_file)],
                             env=env, capture_output=True, text=True)
    assert planted.returncode == 0, planted.stderr
    run = setup.cli("forget", "--target", "cfg", "--json")
    assert run.code == 1 and "future" in run.doc["results"][0]["error"]
    assert len(snapshots.list_snapshots(repo, tags=["target=cfg", "backupd"])) == 4


def test_unchanged_rerun_adds_almost_nothing(policy):
    setup = policy("""  - name: prog
    category: system_program
    environment: production
    owner: test
    sources: {paths: ['${TOS_ROOT}/programs/production']}
    frequency: 1d
    retention: {keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
""", "t-rerun")
    first = setup.cli("backup", "--target", "prog", "--json").doc["results"][0]
    second = setup.cli("backup", "--target", "prog", "--json").doc["results"][0]
    assert first["status"] == second["status"] == "ok"
    assert second["snapshot_id"] != first["snapshot_id"]
    assert second["files"] == first["files"] and second["data_added"] < 64 * 1024


def test_a_file_written_during_the_backup_is_skipped_not_failed_by_verification(policy, tmp_path):
    """A live log keeps growing while restic reads it: its backup-time hash cannot be trusted, so the
    amendment beside the snapshot lists it and restore/drill verification skips it."""
    import threading

    src = tmp_path / "live"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(40 << 20))  # keeps restic busy for a moment
    log = src / "app.log"
    log.write_text("start\n")
    setup = policy(f"""  - name: live
    category: logs
    source: server
    owner: test
    sources: {{paths: ['{src}']}}
    frequency: 1h
    retention: {{keep_hourly: 24, keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
""", "t-live")
    stop = threading.Event()

    def writer():
        with open(log, "a") as handle:
            while not stop.wait(0.01):
                handle.write("gate transaction ok\n")
                handle.flush()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        run = setup.cli("backup", "--target", "live", "--json")
    finally:
        stop.set()
        thread.join()
    (result,) = run.doc["results"]
    assert run.code == 0 and str(log) in result["facts"]["changed_during_backup"], result
    run = setup.cli("restore", "--target", "live", "--to", str(tmp_path / "r"), "--json")
    assert run.code == 0, run.stdout
    assert run.doc["verification"]["skipped"] == [str(log)] and run.doc["verification"]["verified"] == 1
