"""Drill resource limits: the cgroup made for a drill (v2 in a fake delegated tree, v1 on this host when
root), processes entering it before exec, the disk watchdog and the reserve (backupd.cgroups,
backupd.drill.limits)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from backupd import cgroups, execute, sandbox
from backupd.drill import limits
from backupd.drill.spec import DrillSpec, load_spec
from backupd.errors import ConfigError

LIMITS = cgroups.Limits(memory=200 << 20, tasks=64, cpu=150)


def _fake_v2(tmp_path: Path, extra_procs: str = "") -> tuple[Path, Path, Path]:
    """A cgroup2 'mount' at tmp/cg with backupd in system.slice/backupd.service (delegated)."""
    unit = tmp_path / "cg" / "system.slice" / "backupd.service"
    unit.mkdir(parents=True)
    (unit / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (unit / "cgroup.procs").write_text(f"{os.getpid()}\n{extra_procs}")
    (unit / "cgroup.subtree_control").write_text("")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"41 31 0:38 / {tmp_path / 'cg'} rw,relatime - cgroup2 cgroup2 rw\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/system.slice/backupd.service\n")
    return unit, mountinfo, proc


def test_v2_group_is_made_beside_backupd_which_moves_into_a_leaf(tmp_path):
    unit, mountinfo, proc = _fake_v2(tmp_path)
    group, why = cgroups.make(LIMITS, str(mountinfo), str(proc))
    assert why is None and group.version == 2
    (path,) = set(group.dirs.values())
    assert path.parent == unit and path.name.startswith(f"backupd-drill-{os.getpid()}-")
    assert (unit / cgroups.LEAF / "cgroup.procs").read_text() == str(os.getpid())
    assert (unit / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (path / "memory.max").read_text() == str(200 << 20)
    assert (path / "pids.max").read_text() == "64"
    assert (path / "cpu.max").read_text() == "150000 100000"
    assert group.procs() == (str(path / "cgroup.procs"),)


def test_v2_group_counts_oom_kills_and_task_limit_hits(tmp_path):
    _, mountinfo, proc = _fake_v2(tmp_path)
    group, _ = cgroups.make(LIMITS, str(mountinfo), str(proc))
    path = group.dirs["memory"]
    assert group.exceeded() is None
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    assert group.exceeded() == "memory limit of the drill (200 MiB) reached: the probe was killed"
    before = group.counts()
    (path / "pids.events").write_text("max 3\n")
    assert group.exceeded(before, "a process of the drill") == (
        "task limit of the drill (64) reached: a process of the drill could not start a process")


def test_v2_without_delegated_controllers_or_shared_cgroup_gives_the_reason(tmp_path):
    unit, mountinfo, proc = _fake_v2(tmp_path, extra_procs="1\n")
    session = unit.parent / "session-4.scope"  # a login session: its other processes stay untouched
    unit.rename(session)
    proc.write_text("0::/system.slice/session-4.scope\n")
    group, why = cgroups.make(LIMITS, str(mountinfo), str(proc))
    assert group is None and "other processes share backupd's cgroup" in why
    session.rename(unit)
    proc.write_text("0::/system.slice/backupd.service\n")
    group, why = cgroups.make(LIMITS, str(mountinfo), str(proc))  # a unit's own helper moves along
    assert why is None and group.version == 2
    group.remove(0)
    shutil.rmtree(unit / cgroups.LEAF)
    (unit / "cgroup.controllers").write_text("\n")
    group, why = cgroups.make(LIMITS, str(mountinfo), str(proc))
    assert group is None and "Delegate=yes" in why


def test_no_cgroup_mount_gives_the_reason(tmp_path):
    (tmp_path / "mountinfo").write_text("22 1 0:21 / /proc rw - proc proc rw\n")
    (tmp_path / "cgroup").write_text("0::/\n")
    group, why = cgroups.make(LIMITS, str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert group is None and "no cgroup hierarchy" in why


def _host_group():
    if os.geteuid() != 0:
        pytest.skip("cgroups are made as root here")
    group, why = cgroups.make(LIMITS)
    if group is None:
        pytest.skip(f"no cgroup on this host: {why}")
    return group


def test_a_child_enters_the_group_before_it_execs():
    group = _host_group()
    try:
        done = execute.run(["cat", "/proc/self/cgroup"], cgroup=group.procs(), timeout=10)
        assert done.returncode == 0
        for controller, path in group.dirs.items():
            assert path.name in done.stdout.decode(), (controller, done.stdout)
    finally:
        assert group.remove()
    assert not any(p.exists() for p in group.dirs.values())


def test_a_child_that_cannot_enter_its_group_does_not_run(tmp_path):
    marker = tmp_path / "ran"
    done = execute.run(["touch", str(marker)], cgroup=(str(tmp_path / "missing" / "cgroup.procs"),), timeout=10)
    assert done.returncode == 126 and "cannot enter the drill's cgroup" in done.stderr
    assert not marker.exists()


@pytest.mark.skipif(shutil.which("bwrap") is None or shutil.which("python3") is None, reason="needs bwrap")
def test_processes_each_below_rlimit_as_are_stopped_by_the_drill_memory_limit():
    group = _host_group()
    root = Path(tempfile.mkdtemp(prefix="drill-limits-"))
    try:
        os.chmod(root, 0o755)
        (root / "work").mkdir()
        jail = sandbox.Jail(writable=(root / "work",), root=root, group=group)
        bomb = ("for i in 1 2 3 4 5 6; do python3 -c 'import time; x = b\"x\" * (100 << 20); time.sleep(2)' & "
                "done; wait; echo survived")
        done = jail.run(["sh", "-c", bomb], timeout=60)
        assert done.exceeded == "memory limit of the drill (200 MiB) reached: the probe was killed"
        assert sandbox.limit_reached(done, jail.limits) == done.exceeded
    finally:
        group.remove()
        shutil.rmtree(root, ignore_errors=True)


def _watch(tmp_path, bound, min_free):
    cancel = limits.DrillCancel(execute.Cancel())
    watch = limits.DiskWatch(tmp_path, bound, min_free, [tmp_path], cancel)
    return watch, cancel


def test_the_watchdog_stops_a_sandbox_over_its_bound(tmp_path):
    watch, cancel = _watch(tmp_path, 1 << 20, 0)
    watch.start()
    for i in range(8):
        (tmp_path / f"f{i}").write_bytes(os.urandom(1 << 19))
    os.sync()
    assert cancel.wait(10)
    watch.halt.set(), watch.join()
    assert watch.reason.startswith("disk limit of the drill (1 MiB, sandbox.max_bytes) reached")


def test_the_watchdog_stops_the_drill_when_free_space_falls_below_the_reserve(tmp_path):
    watch, cancel = _watch(tmp_path, 1 << 40, 1 << 62)
    watch.start()
    assert cancel.wait(5)
    watch.join(5)
    assert "fell below the drill's reserve (sandbox.min_free" in watch.reason


def test_the_watchdog_leaves_a_drill_within_its_bounds_alone(tmp_path):
    watch, cancel = _watch(tmp_path, 1 << 30, 0)
    watch.start()
    (tmp_path / "small").write_bytes(b"x" * 4096)
    assert not cancel.wait(0.8)
    watch.halt.set(), watch.join()
    assert watch.reason is None


def test_the_caller_cancel_still_stops_the_drill():
    outer = execute.Cancel()
    mine = limits.DrillCancel(outer)
    assert not mine.is_set()
    outer.set()
    assert mine.is_set() and mine.wait(5)


def test_guard_releases_the_reserve_empties_the_sandbox_and_names_the_limit(tmp_path):
    box = SimpleNamespace(path=tmp_path / "box")
    box.path.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    spec = DrillSpec(version=1, sandbox={"max_bytes": "1MiB", "min_free": 0}).sandbox
    with pytest.raises(limits.LimitReached, match=r"disk limit of the drill \(1 MiB"):
        with limits.Guard(box, spec, state, execute.Cancel()) as guard:
            assert list(state.glob(".drill-reserve-*")), "the reserve is held during the drill"
            (box.path / "fill").write_bytes(os.urandom(4 << 20))
            end = time.monotonic() + 10
            while not guard.cancel.is_set() and time.monotonic() < end:
                time.sleep(0.05)
            raise execute.Interrupted("stopped")  # what the cancel makes a running restore raise
    assert not list(state.glob(".drill-reserve-*")) and list(box.path.iterdir()) == []


def test_guard_refuses_to_start_without_the_reserve(tmp_path):
    box = SimpleNamespace(path=tmp_path)
    spec = DrillSpec(version=1, sandbox={"min_free": "1000000TiB"}).sandbox
    with pytest.raises(limits.LimitReached, match="did not start"):
        with limits.Guard(box, spec, tmp_path, execute.Cancel()):
            pass


def test_spec_limits_parse_and_bad_values_name_file_and_line(tmp_path):
    spec = DrillSpec(version=1, sandbox={"memory_max": "4GiB", "tasks_max": 512, "cpu": "150%"}).sandbox
    assert (spec.memory_max, spec.tasks_max, spec.cpu) == (4 << 30, 512, 150)
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nsandbox:\n  memory_max: 4GiB\n  cpu: lots\n")
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    assert f"{path}:4" in str(caught.value) and "percentage of one CPU" in str(caught.value)


def test_v2_the_shell_that_runs_backupd_moves_into_the_leaf_with_it(tmp_path):
    unit, mountinfo, proc = _fake_v2(tmp_path, extra_procs=f"{os.getppid()}\n")
    group, why = cgroups.make(LIMITS, str(mountinfo), str(proc))
    assert why is None and group.version == 2 and (unit / cgroups.LEAF).is_dir()


@pytest.mark.parametrize("unit", ["backupd.service", "backupd-verifier.service"])
def test_the_units_that_drill_delegate_their_cgroup_and_bound_the_whole_service(unit):
    text = (Path(__file__).resolve().parents[2] / "deploy" / "systemd" / unit).read_text()
    lines = set(text.splitlines())
    assert {"Delegate=yes", "ProtectControlGroups=no", "MemorySwapMax=0"} <= lines
    for key in ("MemoryMax=", "TasksMax=", "CPUQuota="):
        assert any(line.startswith(key) for line in lines), key


def test_a_drill_without_a_cgroup_says_so_in_its_report(capsys):
    from backupd.render.results import drill_results

    note = "no cgroup for the drill (Read-only file system): the drill's memory, tasks and CPU are bounded ..."
    report = {"target": "t", "kind": "sample", "verdict": "PASS", "status": "ok", "reason": "ok", "probes": [],
              "rto_seconds": None,
              "limits": {"cgroup": None, "note": note}}
    assert drill_results([report], as_json=False) == 0
    captured = capsys.readouterr()
    assert f"limits: {note}" in captured.out + captured.err


def test_a_restore_that_would_leave_less_than_min_free_is_refused_before_it_starts(tmp_path):
    from backupd.drill.sandbox import Sandbox
    from backupd.errors import Finding

    free = shutil.disk_usage(tmp_path).free
    with Sandbox(tmp_path / "sandbox", 1 << 50, min_free=free - (256 << 20)) as box:
        box.reserve(1 << 20)
        with pytest.raises(Finding, match=r"sandbox\.min_free"):
            box.reserve(1 << 30)
