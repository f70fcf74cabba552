"""Drill specs, sampling, sandbox, verdict and the check rotation (no restic needed)."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from backupd.actions import check
from backupd.drill import sample, verdict
from backupd.drill.phases import PhaseTimer
from backupd.drill.sandbox import OWNER_FILE, Sandbox
from backupd.drill.spec import default_spec, load_spec, parse_size
from backupd.errors import ConfigError, Finding

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_specs_load():
    specs = {p.stem: load_spec(p) for p in (ROOT / "restore_tests").glob("*.yaml")}
    assert specs["tos-db"].kind == "full" and specs["tos-db"].probes[0].kind == "postgres"
    assert specs["logs"].probes[0].kind == "logs"
    assert all(s.schedule.full <= timedelta(days=365) for s in specs.values())


def test_default_spec_is_sample_monthly_full_quarterly():
    spec = default_spec()
    assert spec.kind == "sample" and spec.probes == []
    assert spec.schedule.sample == timedelta(days=30) and spec.schedule.full == timedelta(days=90)


@pytest.mark.parametrize("text, message", [
    ("version: 1\nkind: sample\nsurprise: 1\n", "unknown key 'surprise'"),
    ("version: 1\nprobes: [{kind: postgres, sql: x}]\n", "unknown key 'sql'"),
    ("version: 1\nsandbox: {dir: relative}\n", "absolute"),
    ("a: &x [1]\nb: *x\n", "anchors"),
    ("version: 1\nprobes: !!python/object:os.system {}\n", "tags"),
    ("version: 1\nsample: {max_bytes: 12 parsecs}\n", "invalid size"),
])
def test_bad_specs_are_config_errors_naming_the_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert message in str(err.value) and f"{path}:" in str(err.value)


def test_parse_size():
    assert parse_size("2GiB") == 2 << 30 and parse_size(512) == 512 and parse_size("10 MiB") == 10 << 20
    with pytest.raises(ValueError):
        parse_size("1 GB")


def _entries():
    out = []
    for d in ("a", "b", "c"):
        for i, size in enumerate((100, 10_000, 200_000, 5_000_000, 50_000_000)):
            out.append({"path": f"/srv/{d}/f{i}", "size": size, "type": "file"})
    out.append({"path": "/srv/a/weird[1]", "size": 10, "type": "file"})
    return out


def test_sample_is_stratified_bounded_and_deterministic():
    entries = _entries()
    chosen = sample.choose(entries, "snap1", max_files=10, max_bytes=100_000_000)
    assert chosen == sample.choose(entries, "snap1", max_files=10, max_bytes=100_000_000)
    assert len(chosen) <= 10 and sum(e["size"] for e in chosen) <= 100_000_000
    assert {os.path.dirname(e["path"]) for e in chosen} == {"/srv/a", "/srv/b", "/srv/c"}
    assert len({sample.size_class(e["size"]) for e in chosen}) >= 3
    assert all("[" not in e["path"] for e in chosen)


def test_sample_keeps_required_paths():
    chosen = sample.choose(_entries(), "s", max_files=2, max_bytes=1000, required=["/srv/c/f3"])
    assert chosen[0]["path"] == "/srv/c/f3"


def test_verdict_thresholds():
    rto = timedelta(hours=1)
    assert verdict.judge(100, rto, [])[0] == "PASS"
    assert verdict.judge(0.8 * 3600, rto, [])[0] == "WARN"
    assert verdict.judge(3601, rto, [])[0] == "FAIL"
    assert verdict.judge(1, rto, ["probe failed"]) == ("FAIL", "probe failed")
    assert verdict.judge(1, None, [])[0] == "PASS"


def test_projection_scales_restore_and_verify_by_the_larger_ratio():
    phases = {"select": 2.0, "restore": 3.0, "verify": 1.0, "probes": 5.0}
    assert verdict.project_full(phases, 10, 1000, 100, 2000) == 2.0 + 4.0 * 10 + 5.0
    assert verdict.project_full(phases, 10, 1000, 10, 1000) == 11.0


def test_phase_timer_records_a_phase_that_raises():
    timer = PhaseTimer()
    with pytest.raises(RuntimeError), timer.phase("restore"):
        raise RuntimeError
    assert "restore" in timer.phases


def test_sandbox_is_private_and_removed_even_on_failure(tmp_path):
    with pytest.raises(Finding):
        with Sandbox(tmp_path / "sb", max_bytes=10) as box:
            assert stat.S_IMODE(box.path.stat().st_mode) == 0o700
            (box.restore_dir / "x").write_text("data")
            box.reserve(11)
    assert not box.path.exists()


def test_stale_sandboxes_of_dead_drills_are_removed(tmp_path):
    parent = tmp_path / "sb"
    stale = parent / "drill-old"
    stale.mkdir(parents=True)
    (stale / OWNER_FILE).write_text("999999999\n")
    live = parent / "drill-live"
    live.mkdir()
    (live / OWNER_FILE).write_text(f"{os.getpid()}\n")
    with Sandbox(parent, 1 << 20) as box:
        assert str(stale) in box.stale_removed
    assert not stale.exists() and live.exists()


def test_check_slices_follow_size_budget_and_days():
    assert check.slices(10, 100, 30) == (1, True)
    assert check.slices(1000, 100, 30) == (10, True)
    assert check.slices(10_000, 100, 30) == (30, False)


def test_check_rotation_covers_every_slice_and_retries_a_failed_one():
    read: dict[int, float] = {}
    order = []
    for day in range(1, 4):
        k = check.next_slice(read, 3)
        order.append(k)
        read[k] = day * check.DAY
    assert order == [1, 2, 3] and check.coverage(read, 3, 30, now=4 * check.DAY) == 1.0
    assert check.next_slice(read, 3) == 1  # oldest first; a failure leaves it oldest, so it is retried
    assert check.coverage(read, 3, 1, now=3.5 * check.DAY) == pytest.approx(1 / 3)
