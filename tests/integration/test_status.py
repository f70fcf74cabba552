"""`backupd status` after real runs of daemon, drill, check and storage audit on restic + SeaweedFS:
every column comes from what those commands recorded, and the state (and exit code) is the worst of them."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_status_shows_verified_rpo_drill_worm_coverage_and_next_due(policy):
    setup = policy("", "status-it")
    assert setup.cli("status", "--json").code == 1  # nothing backed up yet: never
    assert setup.cli("daemon", "--once").code == 0  # backs up every target, persists next-due
    assert setup.cli("drill", "--target", "filler-logs", "--json").code == 0
    assert setup.cli("check", "--days", "3", "--json").code == 0
    # The test bucket's 1-day default retention is shorter than min_history (6w): a real finding.
    audit = setup.cli("audit", "storage", "--json")
    assert audit.code == 1 and audit.doc["destinations"][0]["status"] == "finding"

    run = setup.cli("status", "--json")
    assert run.code == 1, run.stdout  # backups and drills are fine, but the audit's finding is the state
    rows = {r["target"]: r for r in run.doc["targets"]}
    assert all(r["state"] == "finding" and any("storage audit" in x for x in r["state_reasons"])
               for r in rows.values())
    assert set(rows) == {"filler-programs", "filler-exports", "filler-logs"}
    logs = rows["filler-logs"]
    assert logs["status"] == "ok" and logs["last_snapshot"]  # original keys kept
    assert logs["drill_status"] in ("pass", "warn") and logs["drill_kind"] == "sample"
    assert logs["verified_snapshot_time"] and logs["verified_rpo_seconds"] >= 0
    assert rows["filler-programs"]["drill_status"] is None and rows["filler-programs"]["verified_rpo"] is None
    assert all(r["immutability"] == "finding" and r["immutability_audited"] for r in rows.values())
    assert all(r["check_coverage"] is not None and r["check_coverage"] > 0 for r in rows.values())
    assert all(r["next_due"] and r["next_due_in"] not in (None, "now") for r in rows.values())

    table = setup.cli("status")  # piped: plain text, no escape sequences or markup
    assert table.code == 1 and "filler-logs" in table.stdout and "finding" in table.stdout
    assert "\x1b[" not in table.stdout and "[green]" not in table.stdout
