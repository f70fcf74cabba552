"""Drill projections on real restic, SeaweedFS and PostgreSQL: the PostgreSQL probe's load and post-load
(index) phases measured apart, each drill's rates, the measured error of a projected/measured pair, and
`backupd status` showing per-target projections and the whole terminal against allowable_downtime."""

from __future__ import annotations

import pytest

from tests.integration.conftest import ROOT, make_setup

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def drilled(stack, tmp_path_factory):
    """The example policy; tos-db and tos-server-logs backed up, then: tos-db full twice, tos-server-logs a
    sample followed by a full drill."""
    setup = make_setup(stack, tmp_path_factory.mktemp("projection"), ROOT / "policies")
    for target in ("tos-db", "tos-server-logs"):
        run = setup.cli("backup", "--target", target, "--json")
        assert run.code == 0, run.stdout + run.stderr
    reports = {}
    for name, args in (("db1", ["--target", "tos-db"]), ("db2", ["--target", "tos-db"]),
                       ("sample", ["--target", "tos-server-logs"]), ("full", ["--target", "tos-server-logs", "--full"])):
        run = setup.cli("drill", *args, "--json", timeout=900)
        assert run.code == 0, run.stdout + run.stderr
        (reports[name],) = run.doc["drills"]
    return setup, reports


def test_the_postgres_probe_splits_load_and_index_and_a_full_drill_measures_the_error(drilled):
    _, reports = drilled
    db1, db2 = reports["db1"], reports["db2"]
    (probe,) = db2["probes"]
    assert set(probe["details"]["timings"]) == {"start", "load", "index", "checks"}
    assert probe["details"]["timings"]["index"] > 0  # the TOS schema's primary keys and indexes
    scaled, fixed = db2["rates"]["scaled"], db2["rates"]["fixed"]
    assert {"restore", "verify", "probe:load", "probe:index", "probe:checks"} <= set(scaled)
    assert {"select", "restore:startup", "probe:start"} <= set(fixed)
    # the wait for the manifest after restic ended: measured, and (when there was one) fixed
    assert db2["restore_alongside_seconds"] >= 0 and fixed.get("restore:alongside", 0) <= db2["phases"]["restore"]
    assert db1["projection_error"] is None  # nothing projected before the first drill
    paired = db2["projection_error"]
    assert paired["from_kind"] == "full" and paired["measured_seconds"] == db2["service_ready_seconds"]
    assert isinstance(paired["error"], float)


def test_a_sample_projects_the_full_drill_that_follows_it(drilled):
    _, reports = drilled
    sample, full = reports["sample"], reports["full"]
    assert sample["kind"] == "sample" and 0 < sample["files_restored"] <= sample["total_files"]
    assert sample["rates"]["of_files"] == sample["total_files"] and sample["rates"]["files"] == sample["files_restored"]
    assert sample["service_ready_seconds"] == sample["projection"]["seconds"] == sample["projected_full_seconds"]
    paired = full["projection_error"]
    assert paired["from_kind"] == "sample" and paired["projected_seconds"] == pytest.approx(
        sample["projection"]["seconds"], rel=1e-3)  # the same snapshot: the sample's own projection


def test_status_shows_projections_and_the_whole_terminal(drilled):
    setup, reports = drilled
    run = setup.cli("status", "--json")
    rows = {r["target"]: r for r in run.doc["targets"]}
    assert rows["tos-db"]["projected_ready_seconds"] > 0 and rows["tos-db"]["projection_error"] is not None
    assert rows["tos-server-logs"]["projection_error"]["from_kind"] == "sample"
    term = run.doc["terminal"]
    assert term["allowable_downtime_seconds"] == 24 * 3600 and term["verdict"] == "within"
    assert "tos-programs-production" in term["missing"]  # never drilled here: not counted, listed
    (lane,) = term["lanes"]  # one destination: one after another, in restore order
    assert lane["targets"] == [t for t in term["order"] if t in ("tos-db", "tos-server-logs")]
    assert term["seconds"] == pytest.approx(rows["tos-db"]["projected_ready_seconds"]
                                            + rows["tos-server-logs"]["projected_ready_seconds"], abs=0.01)
