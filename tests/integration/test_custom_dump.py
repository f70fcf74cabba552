"""Custom-format database dumps (pg_dump -Fc streamed into restic, pg_restore -j on the way back) on
real restic, SeaweedFS and PostgreSQL: row counts taken at the dump's own snapshot while writes go on,
a full drill, a recovery into an empty database, and a restore that fails naming the object."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from demo import tos_data
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

SPEC = """version: 1
name: pgc
kind: full
probes:
  - kind: postgres
    jobs: 2
    checks:
      - name: restore-speed server
        sql: "SELECT concat_ws(',', current_setting('wal_level'), current_setting('max_wal_senders'),
              current_setting('autovacuum'), current_setting('fsync'), current_setting('checkpoint_timeout'))"
        expect: "minimal,0,off,off,1d"
      - name: index builds sort in memory (set once the format told how many loaders share it)
        sql: "SELECT current_setting('maintenance_work_mem') <> '64MB'"
        expect: "t"
"""

TARGET = """  - name: db
    category: container_data
    owner: test
    sources:
      dump: {{kind: pg_dump, format: custom, database: {db}, host: '${{TOS_PGHOST}}', port: '${{TOS_PGPORT}}',
             user: postgres}}
    frequency: 1h
    rto: 4h
    retention: {{keep_hourly: 24, keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
    drill: pgc
"""


def _setup(policy, tmp_path, db: str, repo: str):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "pgc.yaml").write_text(SPEC)
    return policy(TARGET.format(db=db), repo, restore_tests=f"'{specs}'")


class Writer(threading.Thread):
    """Inserts rows one transaction at a time until stopped."""

    def __init__(self, stack, db: str):
        super().__init__(daemon=True)
        self.stack, self.db, self.stop, self.inserted = stack, db, threading.Event(), 0

    def run(self) -> None:
        with self.stack.postgres.connect(self.db, autocommit=True) as conn:
            while not self.stop.is_set():
                conn.execute("INSERT INTO ticks (note) VALUES ('tick')")
                self.inserted += 1


def _count(stack, db: str, table: str) -> int:
    return stack.postgres.psql(f"SELECT count(*) FROM {table}", db=db)[0][0]


@pytest.mark.restic
def test_custom_dump_counts_its_own_snapshot_drills_and_restores_while_writes_continue(policy, stack, tmp_path):
    tos_data.create_tos_database(stack.postgres, "tos_custom", containers=1500)
    stack.postgres.psql("CREATE TABLE ticks (id bigserial PRIMARY KEY, note text)", db="tos_custom")
    setup = _setup(policy, tmp_path, "tos_custom", "t-custom-dump")
    writer = Writer(stack, "tos_custom")
    writer.start()
    try:
        while writer.inserted < 50:  # the writer is running before the dump starts
            writer.stop.wait(0.05)
        backup = setup.cli("backup", "--target", "db", "--json")
        before_stop = writer.inserted
    finally:
        writer.stop.set()
        writer.join()
    assert backup.code == 0, backup.stdout + backup.stderr
    facts = backup.doc["results"][0]["facts"]
    assert facts["format"] == "custom"
    rows = facts["rows"]
    assert rows["public.containers"] == 1500
    assert 50 <= rows["public.ticks"] < before_stop, "rows written after the snapshot are not in the count"
    assert _count(stack, "tos_custom", "ticks") > rows["public.ticks"]

    drill = setup.cli("drill", "--target", "db", "--full", "--json")
    assert drill.code == 0, drill.stdout + drill.stderr
    (d,) = drill.doc["drills"]
    (probe,) = d["probes"]
    assert d["verdict"] == "PASS" and probe["status"] == "ok", probe
    assert probe["details"]["format"] == "custom" and probe["details"]["jobs"] == 2
    assert probe["details"]["checks"] == 2 and probe["problems"] == [], "the throw-away server is set for speed"
    assert probe["details"]["server"] == "started while restic restored", "initdb is off the critical path"
    assert probe["details"]["data_offsets_added"] == len(rows), "the streamed archive got a data offset per table"
    assert probe["details"]["rows"] == rows, "the restored dump holds exactly the rows counted at its snapshot"

    stack.postgres.psql('DROP DATABASE IF EXISTS "tos_recovered"')
    stack.postgres.psql('CREATE DATABASE "tos_recovered"')
    pg = stack.postgres
    # the tables belong to postgres: only it can restore them as they were (test_recovery_confined.py
    # restores as the owner role); a superuser must be acknowledged, the dump being untrusted
    into = ["restore", "--target", "db", "--into-database", "tos_recovered", "--db-host", pg.host,
            "--db-port", str(pg.port), "--db-user", "postgres", "--allow-superuser", "--jobs", "2", "--json"]
    restored = setup.cli(*into)
    assert restored.code == 0, restored.stdout + restored.stderr
    assert "superuser" in " ".join(restored.doc["warnings"])
    assert restored.doc["format"] == "custom" and restored.doc["verification"]["ok"]
    assert restored.doc["rows"] == rows and restored.doc["problems"] == []
    assert restored.doc["data_offsets_added"] == len(rows)
    # as `restore --to`: the backup history's snapshot restored at once, the listing confirming it alongside
    assert restored.doc["guess"] == {"snapshot": backup.doc["results"][0]["snapshot_id"], "confirmed": True}
    assert _count(stack, "tos_recovered", "ticks") == rows["public.ticks"]

    again = setup.cli(*into)
    assert again.code == 2 and "not empty" in again.doc["error"]

    stack.postgres.psql('DROP DATABASE IF EXISTS "tos_recovered_dsn"')
    stack.postgres.psql('CREATE DATABASE "tos_recovered_dsn"')
    dsn = f"host={pg.host} port={pg.port} user=postgres dbname=tos_recovered_dsn"
    by_dsn = setup.cli("restore", "--target", "db", "--into-database", dsn, "--allow-superuser", "--json")
    assert by_dsn.code == 0, by_dsn.stdout + by_dsn.stderr
    assert by_dsn.doc["rows"] == rows and by_dsn.doc["into_database"] == "tos_recovered_dsn"


def test_a_custom_dump_whose_restore_needs_a_missing_role_fails_the_drill_naming_the_table(
        policy, stack, tmp_path):
    pg = stack.postgres
    pg.psql('DROP DATABASE IF EXISTS "tos_owned"')
    pg.psql('CREATE DATABASE "tos_owned"')
    pg.psql("DO $$ BEGIN CREATE ROLE tos_berth_app; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    pg.psql("CREATE TABLE berth_plan (id int PRIMARY KEY, vessel text); "
            "INSERT INTO berth_plan SELECT g, 'v' || g FROM generate_series(1, 100) g; "
            "ALTER TABLE berth_plan OWNER TO tos_berth_app", db="tos_owned")
    setup = _setup(policy, tmp_path, "tos_owned", "t-custom-owned")
    assert setup.cli("backup", "--target", "db").code == 0
    drill = setup.cli("drill", "--target", "db", "--full", "--json")
    assert drill.code == 1, drill.stdout + drill.stderr
    (d,) = drill.doc["drills"]
    assert d["verdict"] == "FAIL" and d["verification"]["ok"]
    problems = " ".join(d["probes"][0]["problems"])
    assert 'role "tos_berth_app" does not exist' in problems
    assert "berth_plan" in problems and "pg_restore" in problems


@pytest.fixture
def drill_tmp(monkeypatch):
    """A TMPDIR of this test's own, where its drills' sandboxes go (the state_dir under tmp_path is too long a
    path for them): their servers are told apart from those of drills that other tests (pytest-xdist workers)
    run meanwhile. Short, and traversable for the sandbox uid."""
    path = Path(tempfile.mkdtemp(prefix="bd-drill-"))
    path.chmod(0o711)
    monkeypatch.setenv("TMPDIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _drill_servers(root: Path) -> list[str]:
    """Command lines of running throw-away drill servers (postgres -D <sandbox>/pg/data) under root."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"/postgres") and any(a.endswith(b"/pg/data") and a.startswith(
                bytes(root) + b"/") for a in argv):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def test_a_drill_whose_restore_fails_leaves_no_server_it_started_early(policy, stack, tmp_path, drill_tmp):
    tos_data.create_tos_database(stack.postgres, "tos_early", containers=200)
    setup = _setup(policy, tmp_path, "tos_early", "t-custom-early")
    assert setup.cli("backup", "--target", "db").code == 0
    assert _drill_servers(drill_tmp) == []
    drill = setup.cli("drill", "--target", "db", "--full", "--snapshot", "deadbeef", "--json")
    assert drill.code != 0, drill.stdout + drill.stderr
    (d,) = drill.doc["drills"]
    assert d["verdict"] == "FAIL" and d["probes"] == []
    assert _drill_servers(drill_tmp) == [], "the server started while restic ran was stopped with the drill"
    assert d["sandbox"] and not Path(d["sandbox"]).exists(), "and its sandbox removed"
    assert Path(d["sandbox"]).is_relative_to(drill_tmp), "where _drill_servers looked"


def _wait(predicate, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_a_drill_stopped_while_its_early_server_runs_leaves_no_server(policy, stack, tmp_path, sig, drill_tmp):
    tos_data.create_tos_database(stack.postgres, "tos_killed", containers=20000)
    setup = _setup(policy, tmp_path, "tos_killed", f"t-custom-{sig.name.lower()}")
    assert setup.cli("backup", "--target", "db").code == 0
    assert _drill_servers(drill_tmp) == []
    env = {**os.environ, **setup.stack.env, "PYTHONPATH": str(ROOT)}
    drill = subprocess.Popen([sys.executable, "-m", "backupd", "drill", "--target", "db", "--full", "--json",
                              "--config", str(setup.config)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        assert _wait(lambda: _drill_servers(drill_tmp) != [], 120), "the drill's server started"
        drill.send_signal(sig)
        drill.wait(timeout=120)
    finally:
        drill.kill()
        drill.wait()
    assert "Traceback" not in drill.stderr.read().decode(errors="replace")
    assert _wait(lambda: _drill_servers(drill_tmp) == [], 30), "no server outlives the drill, even one killed -9"
