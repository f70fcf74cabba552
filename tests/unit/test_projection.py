"""Projections: the per-phase arithmetic, the measured-error pairing, the whole terminal's sum over
parallel lanes, the statement-log split of a database load, and site.allowable_downtime in status and
the runbook."""

from __future__ import annotations

import json
import time

import pytest

from backupd.drill import projection
from backupd.policy.schema import Policy
from backupd.probes import pglog
from backupd.state.runs import State
from tests.unit.cli_helper import cli, write_secrets
from tests.unit.test_policy_schema import policy_data

MIB = 1 << 20


def test_breakdown_splits_restore_startup_and_the_postgres_probe():
    probes = [{"kind": "postgres", "duration": 10.0,
               "details": {"timings": {"start": 2.0, "load": 5.0, "index": 1.5, "checks": 1.0}}},
              {"kind": "logs", "duration": 1.0, "details": {}}]
    parts = projection.breakdown({"select": 1.0, "restore": 4.0, "verify": 2.0, "probes": 11.25}, probes, 1.5)
    assert parts == {"select": 1.0, "restore": 2.5, "restore:startup": 1.5, "verify": 2.0, "probe:start": 2.0,
                     "probe:load": 5.0, "probe:index": 1.5, "probe:checks": 1.0, "probe:other": 0.75,
                     "probe:logs": 1.0}


def test_the_wait_for_the_manifest_after_restic_ended_is_fixed():
    """A small database can restore before the listing and manifest read alongside are done: that wait
    does not grow with the dump (scaled ten times, 0.7 s of it would add 6.5 s to the projection)."""
    parts = projection.breakdown({"select": 0.0, "restore": 1.06, "verify": 0.0, "probes": 0.0}, [], 0.2, 0.7)
    assert parts["restore:startup"] == 0.2 and parts["restore:alongside"] == 0.7 and parts["restore"] == 0.16
    got = projection.project(projection.rates(parts, 36 * MIB, 1), 370 * MIB, 1)
    assert got["phases"]["restore:alongside"] == 0.7 and got["phases"]["restore"] == pytest.approx(1.644, abs=0.01)
    # never more than the restore phase measured
    assert projection.breakdown({"restore": 0.5}, [], 0.2, 0.7)["restore:alongside"] == 0.3


def test_projection_scales_only_the_scaled_phases_by_work():
    parts = {"select": 1.0, "restore:startup": 2.0, "restore": 4.0, "verify": 2.0, "probe:other": 0.5}
    rates = projection.rates(parts, 10 * MIB, 10)
    assert rates["work"] == 10 * MIB + 10 * projection.FILE_COST
    # ten times the bytes and files: ten times the work, fixed parts unchanged
    got = projection.project(rates, 100 * MIB, 100)
    assert got["factor"] == 10.0
    assert got["phases"] == {"select": 1.0, "restore:startup": 2.0, "probe:other": 0.5, "restore": 40.0,
                             "verify": 20.0}
    assert got["seconds"] == 63.5
    assert projection.project(rates, 10 * MIB, 10)["seconds"] == sum(parts.values())


def test_many_small_files_cost_more_than_their_bytes():
    rates = projection.rates({"restore": 1.0}, 64 * MIB, 64)
    few = projection.project(rates, 640 * MIB, 640)["seconds"]
    many = projection.project(rates, 640 * MIB, 64_000)["seconds"]  # same bytes in 100 times the files
    assert few == pytest.approx(10.0) and many > 1.3 * few


def test_a_samples_scattered_files_each_cost_a_ranged_read():
    """A sample's 200 files, each read on its own, took 2 s; the full tree's 2000 files of the same
    average size are read pack by pack: less than ten times as long."""
    sample = projection.rates({"restore": 2.0}, 20 * MIB, 200, of_files=2000)
    assert sample["work"] == 20 * MIB + 200 * (0.9 * projection.SCATTERED_FILE_COST + 0.1 * projection.FILE_COST)
    got = projection.project(sample, 200 * MIB, 2000)["seconds"]
    assert got == pytest.approx(2.0 * (200 * MIB + 2000 * projection.FILE_COST) / sample["work"], abs=1e-3)
    assert 4.0 < got < 20.0
    # a dense sample of tiny files: the whole tree never projects faster than the sample took
    dense = projection.rates({"restore": 2.0}, 200 << 10, 200, of_files=250)
    assert projection.project(dense, 250 << 10, 250)["seconds"] == 2.0


def test_error_is_relative_to_the_measurement():
    assert projection.error(12.0, 10.0) == 0.2
    assert projection.error(8.0, 10.0) == -0.2
    assert projection.error(5.0, 0) is None


def _drill(kind, ready, parts, nbytes, files, snap):
    of_files = 10 * files if kind == "sample" else None  # a sample of a tenth of the tree's files
    return {"kind": kind, "service_ready_seconds": ready, "snapshot_id": snap,
            "rates": projection.rates(parts, nbytes, files, of_files)}


def test_measured_error_pairs_the_newest_full_drill_with_the_drill_before_it():
    sample = _drill("sample", 30.0, {"select": 1.0, "restore": 1.0}, 10 * MIB, 10, "s1")
    full = _drill("full", 9.0, {"select": 1.0, "restore": 8.0}, 100 * MIB, 100, "s1")
    older_full = _drill("full", 5.0, {"select": 1.0, "restore": 4.0}, 50 * MIB, 50, "s0")
    later_sample = _drill("sample", 40.0, {"select": 1.0, "restore": 3.0}, 10 * MIB, 10, "s2")
    # newest first: the later sample is not measured yet, so the newest pair is (sample -> full)
    got = projection.measured_error([later_sample, full, sample, older_full])
    expected = 1 + 1 * projection.work(100 * MIB, 100) / projection.work(10 * MIB, 10, 100)  # about 1 + 9
    assert got["projected_seconds"] == pytest.approx(expected, abs=1e-3) and got["measured_seconds"] == 9.0
    assert got["error"] == pytest.approx((expected - 9.0) / 9.0, abs=1e-3)
    assert got["from_kind"] == "sample" and got["measured_snapshot"] == "s1"
    # a full drill after a full drill: the older one's rates at the newer size (a grown database)
    got = projection.measured_error([full, older_full])
    assert got["projected_seconds"] == 9.0 and got["error"] == 0.0
    assert projection.measured_error([full]) is None and projection.measured_error([sample]) is None
    assert projection.measured_error([{"kind": "full", "service_ready_seconds": 3.0}, sample]) is None


def _grown(mib: float, snap: str) -> dict:
    """A full drill of a database dump of `mib` MiB: 0.3 s of the restore phase and the checks' statements
    (0.04 s) do not grow with the dump, the rest of each phase does."""
    parts = {"select": 1.0, "restore": 0.3 + mib / 100, "probe:load": mib / 30, "probe:checks": 0.04 + mib / 1000}
    return _drill("full", sum(parts.values()), parts, int(mib * MIB), 1, snap)


def test_a_phases_own_fixed_part_is_fitted_from_two_sizes():
    small, mid, big = _grown(40, "s0"), _grown(400, "s1"), _grown(1200, "s2")
    fitted = projection.basis([mid, small])
    assert fitted["fixed"]["restore"] == pytest.approx(0.3, abs=2e-3)
    assert fitted["fixed"]["probe:checks"] == pytest.approx(0.04, abs=2e-3) and "probe:load" not in fitted["fixed"]
    got = projection.measured_error([big, mid, small])
    assert got["error"] == pytest.approx(0.0, abs=1e-3)  # linear from 400 MiB alone: 0.3 s * 2 too much
    assert projection.measured_error([big, mid])["error"] > 0.01


def test_a_fit_never_projects_more_than_linear():
    small, mid = _grown(40, "s0"), _grown(400, "s1")
    # a small drill faster per byte than the larger one (noise): no fixed part, linear from the newest
    fast = _drill("full", 1.6, {"select": 1.0, "restore": 0.1, "probe:load": 0.5, "probe:checks": 0.01},
                  40 * MIB, 1, "s0")
    assert projection.basis([mid, fast])["fixed"] == mid["rates"]["fixed"]
    # a small drill slowed down by a neighbour: fixed parts below what it measured, less than linear
    slow = _drill("full", 9.0, {"select": 1.0, "restore": 3.0, "probe:load": 5.0, "probe:checks": 0.04},
                  40 * MIB, 1, "s0")
    fitted = projection.basis([mid, slow])
    assert 0 < fitted["fixed"]["restore"] < 3.0 and 0 < fitted["fixed"]["probe:load"] < 5.0
    linear = projection.project(mid["rates"], 1200 * MIB, 1)["seconds"]
    assert 5.0 + 3.0 < projection.project(fitted, 1200 * MIB, 1)["seconds"] < linear
    # a small drill slower than the large one says nothing about fixed parts: linear
    slower = _drill("full", 30.0, {"select": 1.0, "restore": 9.0, "probe:load": 20.0}, 40 * MIB, 1, "s0")
    assert projection.basis([mid, slower])["fixed"] == mid["rates"]["fixed"]
    # sizes too close, or a sample of the tree: nothing fitted
    assert projection.basis([mid, _grown(300, "s0")]) is mid["rates"]
    sample = _drill("sample", 2.0, {"select": 1.0, "restore": 1.0}, 40 * MIB, 1, "s0")
    assert projection.basis([mid, sample]) is mid["rates"] and projection.basis([]) is None
    assert projection.basis([mid, small])["fixed"]["restore"] > 0


def _sized(mib: float, snap: str, slow: float = 1.0) -> dict:
    """A full drill of a `mib` MiB dump whose index build grows faster than the data (a sort: 13.4 times
    for 10 times the dump, as bench/projection.py measured from 100k to 1M containers); `slow` stretches
    every phase (a drill beside a busy neighbour)."""
    parts = {"select": 0.01 * slow, "probe:start": 0.4 * slow, "restore": mib / 170 * slow,
             "probe:load": mib / 250 * slow, "probe:index": 0.015 * mib ** 1.127 * slow}
    return _drill("full", sum(parts.values()), parts, int(mib * MIB), 1, snap)


def test_a_drill_beside_a_busy_neighbour_does_not_move_the_projection():
    # three drills at 400 MiB, the newest one and a half times slower: the size's median counts
    history = [_sized(400, "s3", slow=1.5), _sized(400, "s2"), _sized(400, "s1", slow=0.95), _sized(40, "s0")]
    truth = _sized(1200, "s4")["service_ready_seconds"]
    got = projection.project(projection.basis(history), 1200 * MIB, 1)["seconds"]
    assert abs(projection.error(got, truth)) < 0.05
    # the newest drill alone, as before: its neighbour's slowness projected too
    assert projection.project(history[0]["rates"], 1200 * MIB, 1)["seconds"] > 1.3 * truth


def test_the_load_is_measured_per_size_not_a_line_through_one_point():
    history = [_sized(1200, "s2"), _sized(400, "s1"), _sized(40, "s0")]
    points = projection.curve([d["rates"] for d in history])
    assert [p["drills"] for p in points] == [1, 1, 1] and points[0]["work"] < points[-1]["work"]
    for mib in (40, 400, 1200):  # through every measured size
        got = projection.project(projection.basis(history), mib * MIB, 1)
        assert got["seconds"] == pytest.approx(_sized(mib, "x")["service_ready_seconds"], rel=0.01)
    # between two sizes: interpolated, not scaled from the newest
    mid = projection.project(projection.basis(history), 800 * MIB, 1)["seconds"]
    assert abs(projection.error(mid, _sized(800, "x")["service_ready_seconds"])) < 0.03
    # beyond the largest: the index build keeps growing faster than the data
    far = projection.project(projection.basis(history), 3600 * MIB, 1)
    linear = projection.project(history[0]["rates"], 3600 * MIB, 1)
    assert far["phases"]["probe:index"] > linear["phases"]["probe:index"]
    assert abs(projection.error(far["seconds"], _sized(3600, "x")["service_ready_seconds"])) < 0.05


def test_a_noisy_segment_is_continued_within_bounds():
    # ten times the work in 1.2 times the seconds (noise): continued at half the largest size's own rate
    points = [{"work": 100.0, "scaled": {"probe:load": 10.0}, "fixed": {}},
              {"work": 1000.0, "scaled": {"probe:load": 12.0}, "fixed": {}}]
    assert projection.along(points, "probe:load", 3000.0) == pytest.approx(12.0 + 0.5 * 0.012 * 2000)
    # thirty times the seconds for ten times the work: that growth continues, at most to the power 1.25
    steep = [points[0], {"work": 1000.0, "scaled": {"probe:load": 300.0}, "fixed": {}}]
    assert projection.along(steep, "probe:load", 3000.0) == pytest.approx(300.0 * 3 ** 1.25, abs=1e-3)
    assert projection.along(points, "probe:load", 0.0) >= 0.0
    assert projection.along(points[:1], "probe:load", 3000.0) is None  # one size: no curve


def test_recorded_history_without_whole_sizes_projects_as_before():
    sample = _drill("sample", 30.0, {"select": 1.0, "restore": 1.0}, 10 * MIB, 10, "s1")
    older = _drill("full", 5.0, {"select": 1.0, "restore": 4.0}, 50 * MIB, 50, "s0")
    assert "curve" not in projection.basis([sample, older])  # one whole size: no curve
    assert projection.basis([sample]) is sample["rates"]


def test_status_projects_from_the_fitted_rates(tmp_path):
    from types import SimpleNamespace

    from backupd.actions import time_to_service

    state, now = State(tmp_path / "state"), time.time()
    for i, mib in enumerate((40, 400)):
        state.record("drill", "db", "worm", now - 300 + i, "pass", f"s{i}", _grown(mib, f"s{i}"))
    state.record("backup", "db", "worm", now - 50, "ok", "s3", {"facts": {"bytes": 1200 * MIB, "files": 1}})
    got = time_to_service.for_target(state, SimpleNamespace(name="db"))
    assert got["projected_ready_seconds"] == pytest.approx(_grown(1200, "s2")["service_ready_seconds"], abs=0.01)
    assert "fitted" in got["projection_basis"]


def test_terminal_sums_each_destination_and_runs_destinations_in_parallel():
    items = [{"target": "db", "destination": "worm", "seconds": 3600.0},
             {"target": "programs", "destination": "worm", "seconds": 600.0},
             {"target": "logs", "destination": "usb", "seconds": 1800.0},
             {"target": "docs", "destination": "usb", "seconds": 2400.0},
             {"target": "dev", "destination": "worm", "seconds": None}]
    got = projection.terminal(items)
    assert got["seconds"] == 4200.0  # usb: 1800 + 2400 runs beside worm: 3600 + 600
    assert {ln["lane"]: ln["targets"] for ln in got["lanes"]} == {"worm#1": ["db", "programs"],
                                                                  "usb#1": ["logs", "docs"]}
    assert got["missing"] == ["dev"] and "different destinations in parallel" in got["rule"]
    # two restores at once per destination: each target takes the lane that frees first
    two = projection.terminal(items, parallelism=2)
    assert two["seconds"] == 3600.0 and len(two["lanes"]) == 4
    assert projection.terminal([])["seconds"] == 0.0


LOG = """2026-11-27 10:00:00.100 UTC LOG:  duration: 50.000 ms  statement: CREATE TABLE public.containers (id int);
2026-11-27 10:00:05.000 UTC LOG:  duration: 4800.000 ms  statement: COPY public.containers (id) FROM stdin;
2026-11-27 10:00:06.000 UTC LOG:  duration: 900.000 ms  statement: ALTER TABLE ONLY public.containers
\t    ADD CONSTRAINT containers_pkey PRIMARY KEY (id);
2026-11-27 10:00:07.500 UTC LOG:  duration: 1000.000 ms  statement: CREATE INDEX containers_no ON public.containers (no);
2026-11-27 10:00:07.400 UTC LOG:  duration: 1200.000 ms  statement: CREATE INDEX ev_time ON public.container_events (t);
2026-11-27 10:00:08.000 UTC LOG:  duration: 3.000 ms  statement: SELECT count(*) FROM containers
"""


def test_post_load_span_from_the_statement_log():
    # from the primary key's start (05.100) to the last index's end (07.500); parallel indexes overlap
    assert pglog.post_load_seconds(LOG) == 2.4
    assert pglog.post_load_seconds("") == 0.0
    assert pglog.post_load_seconds("LOG:  database system is ready to accept connections\n") == 0.0


def test_site_allowable_downtime_and_restore_parallelism():
    policy = Policy.model_validate(policy_data(site={"name": "T", "port": "nagoya", "allowable_downtime": "24h",
                                                     "restore_parallelism": 2}))
    assert policy.site.allowable_downtime.total_seconds() == 86400 and policy.site.restore_parallelism == 2
    assert Policy.model_validate(policy_data()).site.allowable_downtime is None
    with pytest.raises(ValueError, match="allowable_downtime"):
        Policy.model_validate(policy_data(site={"name": "T", "port": "nagoya", "allowable_downtime": "soon"}))


@pytest.fixture
def terminal_setup(tmp_path):
    """Two targets on one destination, one on another; db drilled (sample, then full), docs a sample."""
    secrets = write_secrets(tmp_path / "secrets")
    dest = {"kind": "s3", "endpoint": "http://127.0.0.1:9", "object_lock": True,
            "credentials_file": "s3-writer.env", "password_file": "restic-password"}
    policy = {"version": 1, "site": {"name": "Demo Terminal", "port": "nagoya", "allowable_downtime": "30m"},
              "destinations": {"worm": {**dest, "bucket": "bkt-1"}, "worm2": {**dest, "bucket": "bkt-2"}},
              "targets": [{"name": n, "category": c, "owner": "o@example.jp", "frequency": "1d", "rto": "4h",
                           "sources": {"paths": [f"/srv/{n}"]}, "destinations": [d],
                           "retention": {"keep_daily": 14, "keep_weekly": 8}}
                          for n, c, d in (("db", "container_data", "worm"), ("docs", "documentation", "worm"),
                                          ("ctl", "control_system", "worm2"))]}
    (tmp_path / "p.yaml").write_text(json.dumps(policy))
    config = tmp_path / "backupd.yaml"
    config.write_text(f"policies: ['{tmp_path}/p.yaml']\nstate_dir: '{tmp_path}/state'\n"
                      f"secrets_dir: '{secrets}'\nhost: tos-01\n")
    state, now = State(tmp_path / "state"), time.time()
    sample = _drill("sample", 110.0, {"select": 10.0, "restore": 100.0}, 100 * MIB, 1, "s1")
    full = _drill("full", 1200.0, {"select": 10.0, "restore": 1190.0}, 1000 * MIB, 1, "s1")
    state.record("drill", "db", "worm", now - 300, "pass", "s1", sample)
    state.record("drill", "db", "worm", now - 200, "pass", "s1", full)
    state.record("drill", "docs", "worm", now - 100, "pass", "s2",
                 _drill("sample", 60.0, {"select": 5.0, "restore": 5.0}, 10 * MIB, 10, "s2"))
    # the newest backup of db doubled: the projection follows it
    state.record("backup", "db", "worm", now - 50, "ok", "s3", {"facts": {"bytes": 2000 * MIB, "files": 1}})
    return config


def test_status_and_runbook_show_projections_and_the_terminal(terminal_setup, tmp_path):
    code, doc = cli("status", "--config", str(terminal_setup))
    rows = {r["target"]: r for r in doc["targets"]}
    db = rows["db"]
    # full drill rates at the newest backup's size: 10 s fixed + 1190 s * 2 (work: bytes plus one file)
    assert db["projected_ready_seconds"] == pytest.approx(10 + 1190 * (2000 * MIB + projection.FILE_COST)
                                                          / (1000 * MIB + projection.FILE_COST), abs=0.01)
    # the sample projected about 10 + 100 * 10 = 1010 s of the full drill that measured 1200 s
    projected = 10 + 100 * projection.work(1000 * MIB, 1) / projection.work(100 * MIB, 1, 10)
    assert db["projection_error"]["error"] == pytest.approx((projected - 1200) / 1200, abs=1e-3)
    assert rows["docs"]["projection_error"] is None and rows["ctl"]["projected_ready_seconds"] is None
    term = doc["terminal"]
    assert term["order"] == ["db", "ctl", "docs"] and term["missing"] == ["ctl"]
    assert term["seconds"] == pytest.approx(db["projected_ready_seconds"] + rows["docs"]["projected_ready_seconds"],
                                            abs=0.01)
    assert term["allowable_downtime_seconds"] == 1800 and term["verdict"] == "over"
    code, book = cli("runbook", "--out", str(tmp_path / "out"), "--config", str(terminal_setup))
    assert code == 0 and book["terminal"]["seconds"] == term["seconds"]
    text = (tmp_path / "out" / "runbook.md").read_text()
    assert "whole terminal: projected time to service" in text and "allowable downtime 30.0min" in text
    assert f"measured error {(projected - 1200) / 1200:+.0%}" in text


def test_first_file_is_seen_even_when_the_restore_ends_between_two_looks(tmp_path):
    from backupd.drill.phases import FirstFile

    (tmp_path / "empty").mkdir()
    with FirstFile(tmp_path / "empty", poll=60) as first:
        pass
    assert first.seconds is None  # nothing written: no start-up to tell apart
    (tmp_path / "tree" / "a").mkdir(parents=True)
    with FirstFile(tmp_path / "tree", poll=60) as first:
        (tmp_path / "tree" / "a" / "f").write_bytes(b"x")  # after the first look, long before the next
    assert first.seconds is not None and first.seconds >= 0


def test_below_the_smallest_size_a_phase_shrinks_by_the_measured_power():
    # a restore phase with a fixed part (sublinear between the sizes): ten times below the smaller size
    # the segment through both would keep its intercept (noise, measured that far down); the power they
    # measured shrinks it, by at most the power 0.5
    points = [{"work": 100.0, "scaled": {"restore": 2.0}, "fixed": {}},
              {"work": 1000.0, "scaled": {"restore": 2.0 * 10 ** 0.8}, "fixed": {}}]
    assert projection.along(points, "restore", 10.0) == pytest.approx(2.0 * 0.1 ** 0.8, abs=1e-3)
    flat = [{"work": 100.0, "scaled": {"restore": 1.0}, "fixed": {}},
            {"work": 1000.0, "scaled": {"restore": 1.1}, "fixed": {}}]
    assert projection.along(flat, "restore", 10.0) == pytest.approx(10 ** -0.5, abs=1e-3)
    # an index build growing faster than the work: below, never faster per unit of work than measured
    steep = [{"work": 100.0, "scaled": {"probe:index": 0.01 * 100 ** 1.1}, "fixed": {}},
             {"work": 1000.0, "scaled": {"probe:index": 0.01 * 1000 ** 1.1}, "fixed": {}}]
    assert projection.along(steep, "probe:index", 10.0) == pytest.approx(0.01 * 100 ** 1.1 / 10, abs=1e-3)
