"""Incident restore: ransomware-like generations are flagged, the clean point is chosen, retention
freezes in incident mode. Real restic, SeaweedFS and PostgreSQL."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from demo import tos_data, tos_files
from tests.integration.conftest import make_setup

pytestmark = pytest.mark.integration


def _tree_policy(root: Path) -> str:
    return f"""  - name: terminal
    category: container_data
    owner: test
    sources: {{paths: ['{root}']}}
    frequency: 1d
    rto: 8h
    retention: {{keep_daily: 14, keep_weekly: 8}}
    destinations: [worm]
"""


def _encrypt(root: Path, share: float, seed: int = 1) -> int:
    """Overwrite `share` of the files with random bytes of the same size (what ransomware leaves)."""
    rng = random.Random(seed)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    victims = rng.sample(files, int(len(files) * share))
    for path in victims:
        path.write_bytes(os.urandom(path.stat().st_size or 64))
    return len(victims)


@pytest.fixture
def terminal(policy, tmp_path):
    """A private TOS file tree (scaled down) backed up on four normal days."""
    root = tmp_path / "tos"
    tos_files.generate_tree(root, scale=0.3)
    setup = policy(_tree_policy(root), "t-incident")
    docs = []
    for day in range(4):
        if day:
            tos_files.advance_day(root, day)
        run = setup.cli("backup", "--target", "terminal", "--json")
        assert run.code == 0, run.stdout
        docs.append(run.doc["results"][0])
    return setup, root, docs


def test_normal_daily_change_raises_no_flag(terminal):
    _, _, docs = terminal
    assert all(not d["facts"].get("change", {}).get("suspicious") for d in docs)
    assert any(d["facts"].get("change", {}).get("changed") for d in docs[1:]), "days must really change files"


def test_mass_encryption_is_flagged_and_restore_picks_the_last_clean_point(terminal, tmp_path):
    setup, root, docs = terminal
    clean = docs[-1]["snapshot_id"]
    victims = _encrypt(root, 0.8)
    run = setup.cli("backup", "--target", "terminal", "--json")
    assert run.code == 0
    infected = run.doc["results"][0]
    assert infected["facts"]["change"]["suspicious"], infected["facts"]["change"]
    assert infected["facts"]["change"]["changed"] >= victims * 0.9
    assert any(n.startswith("SUSPECT") for n in infected["notes"])
    out = tmp_path / "restored"
    run = setup.cli("restore", "--target", "terminal", "--before", "now", "--to", str(out), "--json")
    assert run.code == 0, run.stdout
    assert run.doc["snapshot_id"].startswith(clean)
    assert infected["snapshot_id"][:8] in run.doc["explanation"] and "suspect" in run.doc["explanation"]
    assert run.doc["verification"]["ok"] and run.doc["verification"]["verified"] == docs[-1]["files"]


def test_a_dump_that_lost_most_rows_is_flagged(policy, stack):
    tos_data.create_tos_database(stack.postgres, "tos_incident", containers=400)
    setup = policy("""  - name: db
    category: container_data
    owner: test
    sources:
      dump: {kind: pg_dump, database: tos_incident, host: '${TOS_PGHOST}', port: '${TOS_PGPORT}', user: postgres}
    frequency: 1h
    rto: 4h
    retention: {keep_hourly: 24, keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
""", "t-incident-db")
    first = setup.cli("backup", "--target", "db", "--json").doc["results"][0]
    assert first["status"] == "ok" and not first["facts"].get("change", {}).get("suspicious")
    stack.postgres.psql("DELETE FROM container_events; DELETE FROM yard_inventory;", db="tos_incident")
    second = setup.cli("backup", "--target", "db", "--json").doc["results"][0]
    assert second["facts"]["change"]["suspicious"]
    assert any("container_events" in f for f in second["facts"]["change"]["flags"])


@pytest.mark.restic
def test_incident_mode_freezes_retention_preserves_and_reports(policy, tmp_path):
    root = tmp_path / "plc"
    root.mkdir()
    (root / "crane-01.cfg").write_text("max_load=65t\n")
    setup = policy(_tree_policy(root), "t-incident-mode")
    assert setup.cli("backup").code == 0
    assert setup.cli("incident", "start", "--reason", "ransom note on gate PCs").code == 0
    run = setup.cli("forget", "--json")
    assert run.code == 1 and "incident" in run.doc["error"] and "frozen" in run.doc["error"]
    run = setup.cli("prune", "--json")
    assert run.code == 1 and "prune refused" in run.doc["error"]
    (root / "crane-01.cfg").write_text("ENCRYPTED\n")
    run = setup.cli("incident", "preserve", "--path", str(root), "--json")
    assert run.code == 0, run.stdout
    assert run.doc["snapshot_id"] and run.doc["repository"].endswith("-forensics")
    out = tmp_path / "restored"
    run = setup.cli("incident", "restore", "--to", str(out), "--json")
    assert run.code == 0, run.stdout
    restored = out / "terminal" / str(root / "crane-01.cfg").lstrip("/")
    assert restored.read_text() == "max_load=65t\n"
    assert any("Credentials" in c["item"] for c in run.doc["checklist"])
    assert all(r["probe_verdict"] == "PASS" for r in run.doc["results"])
    report = tmp_path / "incident.md"
    assert setup.cli("incident", "report", "--out", str(report)).code == 0
    text = report.read_text()
    for event in ("start", "extend_locks", "preserve", "restore", "pre_resume_checklist"):
        assert f"| {event} |" in text
    assert setup.cli("incident", "end", "--summary", "restored from clean point").code == 0
    assert setup.cli("forget").code == 0
    run = setup.cli("prune", "--json")
    assert run.code == 0 and run.doc["results"][0]["status"] == "ok", run.stdout


def test_an_incident_freezes_forget_and_prune_of_every_config_on_the_bucket(policy, stack, tmp_path):
    """Opened with the daemon's config; a maintenance config (own state_dir and host, maintainer keys,
    same bucket) reads the locked marker from the bucket and refuses forget and prune; extend-locks runs."""
    root = tmp_path / "plc"
    root.mkdir()
    (root / "crane-02.cfg").write_text("max_load=40t\n")
    main = policy(_tree_policy(root), "t-incident-freeze")
    assert main.cli("backup").code == 0
    text = (tmp_path / "policies" / "test.yaml").read_text().replace(
        "credentials_file: s3-writer.env",
        "credentials_file: s3-maintainer.env\n    maintainer_credentials_file: s3-maintainer.env")
    (tmp_path / "maint-policies").mkdir()
    (tmp_path / "maint-policies" / "test.yaml").write_text(text)
    maint = make_setup(stack, tmp_path / "maint", tmp_path / "maint-policies")
    maint.config.write_text(maint.config.read_text().replace("host: it-host", "host: maint-01"))
    started = main.cli("incident", "start", "--reason", "ransom note on gate PCs", "--json")
    assert started.code == 0, started.stdout
    ident = started.doc["id"]
    try:
        (marker,) = started.doc["markers"]
        assert marker["status"] == "written" and marker["retain_until"]  # locked by the bucket's default
        assert not (tmp_path / "maint" / "state" / "incident").exists()  # nothing local on the other role
        for command in ("forget", "prune"):
            run = maint.cli(command, "--json")
            assert run.code == 1 and f"{command} refused" in run.doc["error"], run.stdout
            assert ident in run.doc["error"] and ".backupd-incident/it-host.json" in run.doc["error"]
        assert maint.cli("extend-locks", "--json").code == 0  # lengthening locks stays allowed
    finally:
        ended = main.cli("incident", "end", "--summary", "restored", "--json")
    assert ended.code == 0, ended.stdout
    versions = stack.seaweed.client("admin").list_object_versions(
        Bucket=stack.bucket, Prefix=".backupd-incident/it-host.json")
    assert not versions.get("DeleteMarkers")  # closing wrote a new version, never a delete
    assert maint.cli("forget").code == 0
    assert maint.cli("prune").code == 0
