"""Restore drills and the read-data check rotation on real restic, SeaweedFS and PostgreSQL."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from backupd.drill.sandbox import Sandbox
from backupd.drill.spec import PostgresProbe
from backupd.probes import ProbeContext, run as run_probe
from backupd.process import execute
from backupd.sources import postgres as pg_source
from tests.integration.conftest import CONTAINERS, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.restic]

PHASES = {"select", "restore", "verify", "probes"}


@pytest.fixture
def example(example):
    """The shipped example policy and its restore_tests specs, backed up once (conftest's, shared)."""
    return example[0]


def test_full_drill_of_the_example_targets_passes_with_phase_times(example):
    run = example.cli("drill", "--full", "--json", timeout=1800)
    assert run.code == 0, run.stdout + run.stderr
    drills = {d["target"]: d for d in run.doc["drills"]}
    assert len(drills) == 9
    for d in drills.values():
        assert d["verdict"] in ("PASS", "WARN"), d
        assert set(d["phases"]) == PHASES
        assert d["verification"]["ok"] and d["verification"]["verified"] == d["files_restored"] > 0
        assert d["verified_rpo_seconds"] is not None
        assert not Path(d["sandbox"]).exists(), "sandbox must be removed"
    db = drills["tos-db"]
    (probe,) = db["probes"]
    assert probe["kind"] == "postgres" and probe["status"] == "ok", probe
    assert probe["details"]["rows"]["public.containers"] == CONTAINERS
    assert drills["tos-programs-production"]["probes"][0]["details"]["stdout"].startswith("tos-server ")


def test_sample_drill_restores_a_subset_and_projects_the_full_time(example):
    run = example.cli("drill", "--target", "tos-server-logs", "--json")
    assert run.code == 0, run.stdout + run.stderr
    (d,) = run.doc["drills"]
    assert d["kind"] == "sample" and 0 < d["files_restored"] <= d["total_files"]
    assert d["projected_full_seconds"] >= d["phases"]["restore"]


def _dump_with_facts(stack, path: Path) -> dict:
    """pg_dump the stack's TOS database to path; return the facts counted while it streamed."""
    facts = pg_source.DumpFacts()
    argv = pg_source.dump_argv("tos", stack.postgres.host, stack.postgres.port, "postgres")
    done = execute.run(argv, timeout=600)
    assert done.returncode == 0, done.stderr
    facts(done.stdout)
    path.write_bytes(done.stdout)
    return facts.facts()


def _drop_rows(dump: bytes, table: bytes, count: int) -> bytes:
    """The dump with the first `count` data rows of table's COPY block removed (rows lost)."""
    lines = dump.split(b"\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith(b"COPY " + table))
    del lines[start + 1:start + 1 + count]
    return b"\n".join(lines)


def test_postgres_probe_fails_when_the_dump_lost_rows(stack):
    """Rows missing from the restored dump against the facts counted at backup time fail the probe."""
    with Sandbox(Path(tempfile.gettempdir()) / "backupd-test-sandbox", 1 << 30) as box:
        os.chmod(box.parent, 0o711)
        dump = box.restore_dir / "tos.sql"
        facts = _dump_with_facts(stack, dump)
        dump.write_bytes(_drop_rows(dump.read_bytes(), b'"public"."containers"', 3))
        entry = {"path": "/tos.sql", "type": "stdin", "size": 0, "sha256": "", "mode": ""}
        ctx = ProbeContext(target=None, sandbox=box.path, restore_dir=box.restore_dir,
                           manifest={"facts": facts, "files": [entry]}, restored=[entry],
                           snapshot_time=datetime.now(timezone.utc), rpo=None, previous=lambda: None,
                           grant=lambda *paths: box.grant("postgres", *paths))
        result = run_probe(PostgresProbe(kind="postgres"), ctx)
    assert result.status == "failed"
    expected = facts["rows"]["public.containers"]
    assert f"public.containers: {expected - 3} row(s) restored, {expected} at backup time" in result.problems


def test_an_unknown_drill_spec_is_a_configuration_error(policy, stack, tmp_path):
    setup = policy(LOG_TARGET.format(logs=tmp_path), "t-drill-nospec", restore_tests=f"'{tmp_path}'")
    run = setup.cli("drill", "--target", "vpn-logs")
    assert run.code == 2 and "drill spec 'logs' not found" in run.stderr


LOG_TARGET = """  - name: vpn-logs
    category: logs
    source: network_device
    owner: test
    sources: {{paths: ['{logs}']}}
    frequency: 1h
    retention: {{keep_hourly: 48, keep_daily: 30, keep_weekly: 12}}
    destinations: [worm]
    drill: logs
"""


def test_a_log_edited_in_the_middle_between_generations_fails_the_log_probe(policy, stack, tmp_path):
    logs = tmp_path / "vpn"
    logs.mkdir()
    log = logs / "vpn-router.log"
    log.write_text("".join(f"2026-01-01T00:{i // 60:02d}:{i % 60:02d} vpn login user=maint{i} ok\n"
                           for i in range(2000)))
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "logs.yaml").write_text((ROOT / "restore_tests" / "logs.yaml").read_text())
    setup = policy(LOG_TARGET.format(logs=logs), "t-drill-logs", restore_tests=f"'{specs}'")
    assert setup.cli("backup", "--target", "vpn-logs").code == 0
    with open(log, "a") as fh:
        fh.write("2026-01-02T00:00:00 vpn login user=maint9999 ok\n")
    assert setup.cli("backup", "--target", "vpn-logs").code == 0
    run = setup.cli("drill", "--target", "vpn-logs", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.doc["drills"][0]["probes"][0]["details"]["continued"] == 1

    text = log.read_text().replace("user=maint1000 ok", "user=maint1000 FAILED")  # hide a login
    log.write_text(text + "2026-01-03T00:00:00 vpn login user=maint10000 ok\n")
    edited = setup.cli("backup", "--target", "vpn-logs", "--json")
    assert edited.code == 0
    (result,) = edited.doc["results"]
    assert result["facts"]["change"]["suspicious"], "the edit is caught at backup time already"
    run = setup.cli("drill", "--target", "vpn-logs", "--full", "--snapshot", result["snapshot_id"], "--json")
    assert run.code == 1, run.stdout + run.stderr
    (d,) = run.doc["drills"]
    assert d["verdict"] == "FAIL" and d["verification"]["ok"] and d["judgement"]["suspect"]
    assert d["probes"][0]["details"]["edited"] == [str(log)]
    clean = setup.cli("drill", "--target", "vpn-logs", "--full", "--json")
    assert clean.code == 0 and not clean.doc["drills"][0]["snapshot_id"].startswith(result["snapshot_id"])


CHECK_TARGET = """  - name: cargo-plans
    category: documentation
    owner: test
    sources: {{paths: ['{data}']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


def test_a_garbage_pack_fails_its_check_slice_and_names_the_target(policy, stack, tmp_path):
    data = tmp_path / "plans"
    data.mkdir()
    (data / "stowage.bin").write_bytes(os.urandom(3 << 20))
    setup = policy(CHECK_TARGET.format(data=data), "t-check-rot")
    assert setup.cli("backup", "--target", "cargo-plans").code == 0
    seen = []
    for _ in range(3):
        run = setup.cli("check", "--days", "3", "--daily-budget", "1", "--json")
        assert run.code == 0, run.stdout + run.stderr
        (res,) = run.doc["results"]
        seen.append(res["k"])
    assert sorted(seen) == [1, 2, 3] and res["n"] == 3 and res["coverage"] == 1.0

    s3 = stack.seaweed.client("admin")
    objects = s3.list_objects_v2(Bucket=stack.bucket, Prefix="t-check-rot/data/")["Contents"]
    biggest = max(objects, key=lambda o: o["Size"])
    s3.put_object(Bucket=stack.bucket, Key=biggest["Key"], Body=os.urandom(biggest["Size"]))
    covering = int(biggest["Key"].rsplit("/", 1)[-1][:2], 16) % 3 + 1
    outcomes = {}
    for _ in range(3):
        run = setup.cli("check", "--days", "3", "--daily-budget", "1", "--json")
        (res,) = run.doc["results"]
        outcomes[res["k"]] = (run.code, res)
    code, res = outcomes[covering]
    assert code == 1 and res["status"] == "failed"
    assert "cargo-plans" in res["error"] and "cargo-plans" in res["targets"]
    # only the target whose snapshots use the damaged pack is named, not every target of the destination
    assert res["affected_targets"] == ["cargo-plans"] and "filler-logs" not in res["error"]
    assert all(c == 0 for k, (c, _) in outcomes.items() if k != covering)
