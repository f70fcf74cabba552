"""Drill resource limits: the cgroup made for a drill (v2 in a fake delegated tree, v1 on this host when
root), processes entering it before exec, the disk watchdog and the reserve (backupd.process.cgroups,
backupd.drill.limits)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from backupd.drill import limits
from backupd.drill.spec import DrillSpec, load_spec
from backupd.errors import ConfigError
from backupd.process import cgroups, execute, sandbox

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
    assert group.exceeded() == "memory limit of the drill (200.0 MiB) reached: the probe was killed"
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
    """A real drill cgroup: the suite runs as root with writable cgroups (this machine and CI)."""
    assert os.geteuid() == 0, "these tests make real cgroups and run as root"
    group, why = cgroups.make(LIMITS)
    assert group is not None, why
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
        assert done.exceeded == "memory limit of the drill (200.0 MiB) reached: the probe was killed"
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
    assert watch.reason.startswith("disk limit of the drill (1.0 MiB, sandbox.max_bytes) reached")


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
    with pytest.raises(limits.LimitReached, match=r"disk limit of the drill \(1\.0 MiB"):
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


def _sleeper():
    import subprocess

    return subprocess.Popen(["sleep", "60"])


def _fake_group(path: Path, version: int = 2) -> cgroups.Group:
    path.mkdir(parents=True, exist_ok=True)
    return cgroups.Group(version, {"memory": path, "pids": path}, LIMITS)


def test_removing_a_group_kills_what_still_runs_in_it(tmp_path):
    child = _sleeper()
    try:
        group = _fake_group(tmp_path / "backupd-drill-1-1", version=1)
        (group.dirs["pids"] / "cgroup.procs").write_text(f"{child.pid}\n{os.getpid()}\n")
        assert not group.remove(0.2)  # a fake group's files keep its directory: it stays
        assert child.wait(5) == -9  # SIGKILL; backupd itself, listed too, is spared
    finally:
        child.kill()
    v2 = _fake_group(tmp_path / "backupd-drill-1-2")
    (v2.dirs["memory"] / "cgroup.kill").write_text("0")
    v2.remove(0)
    assert (v2.dirs["memory"] / "cgroup.kill").read_text() == "1"  # v2: the kernel kills the whole group


def test_stale_groups_of_a_dead_backupd_are_killed_and_cleaned_with_one_helper(tmp_path):
    child = _sleeper()
    try:
        stale = tmp_path / "backupd-drill-999999999-3"
        stale.mkdir()
        (stale / "cgroup.procs").write_text(f"{child.pid}\n")
        (tmp_path / f"backupd-drill-{os.getpid()}-9").mkdir()
        cgroups.remove_stale(tmp_path)
        assert child.wait(5) == -9
        (stale / "cgroup.procs").unlink()
        cgroups.remove_stale(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"backupd-drill-{os.getpid()}-9"]
    finally:
        child.kill()


def _no_cgroup(monkeypatch):
    monkeypatch.setattr(cgroups, "make", lambda limits: (None, "no cgroup here"))


def _guard(tmp_path, name="box"):
    box = SimpleNamespace(path=tmp_path / name)
    box.path.mkdir()
    spec = DrillSpec(version=1, sandbox={"min_free": 0}).sandbox
    return limits.Guard(box, spec, tmp_path, execute.Cancel())


def test_a_drill_cgroup_that_stays_is_named_in_the_report_after_the_guard_exits(tmp_path, monkeypatch):
    group = _fake_group(tmp_path / "cg" / "backupd-drill-1-1")
    (group.dirs["memory"] / "cgroup.procs").write_text("")  # keeps the fake directory
    monkeypatch.setattr(cgroups.Group.remove, "__defaults__", (0.2,))
    monkeypatch.setattr(cgroups, "make", lambda limits: (group, None))
    report = {}
    with _guard(tmp_path) as guard:
        guard.describe_into(report)
        assert report["limits"]["cgroup"] == "v2" and report["limits"]["note"] is None
    # the fake group's directory cannot be removed (files in it): a real one, a process surviving SIGKILL
    assert report["limits"]["cgroup"] == "v2"
    assert report["limits"]["note"].startswith("the drill's cgroup could not be removed")
    assert str(group.dirs["memory"]) in report["limits"]["note"]


def test_drills_of_one_process_each_hold_their_own_reserve(tmp_path, monkeypatch):
    _no_cgroup(monkeypatch)
    (tmp_path / ".drill-reserve-999999999").write_text("")  # a dead drill's, named the old way
    (tmp_path / ".drill-reserve-999999999-4").write_text("")  # a dead drill's
    (tmp_path / ".drill-reserve-1-4").write_text("")  # PID 1 lives: kept
    first, second = _guard(tmp_path, "a"), _guard(tmp_path, "b")
    with first:
        with second:
            assert first.reserved != second.reserved and first.reserved.exists() and second.reserved.exists()
            assert not (tmp_path / ".drill-reserve-999999999").exists()
            assert not (tmp_path / ".drill-reserve-999999999-4").exists()
        assert first.reserved.exists()  # the other drill's exit left it alone
    assert sorted(p.name for p in tmp_path.glob(".drill-reserve-*")) == [".drill-reserve-1-4"]


@pytest.mark.parametrize("failure", ["make", "watch"])
def test_a_guard_failing_part_way_undoes_what_it_set_up(tmp_path, monkeypatch, failure):
    removed = []
    group = _fake_group(tmp_path / "cg" / "backupd-drill-1-1")
    monkeypatch.setattr(group.__class__, "remove", lambda self, seconds=5.0: removed.append(self) or True)

    def make(limits):
        if failure == "make":
            raise ValueError("invalid literal for int() with base 10: 'x'")
        return group, None

    def start(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(cgroups, "make", make)
    monkeypatch.setattr(limits.DiskWatch, "start", start)
    with pytest.raises(ValueError if failure == "make" else RuntimeError):
        with _guard(tmp_path):
            pass
    assert not list(tmp_path.glob(".drill-reserve-*"))
    assert removed == ([] if failure == "make" else [group])


def test_a_cgroup_procs_that_is_not_a_list_of_pids_gives_a_reason(tmp_path):
    unit, mountinfo, proc = _fake_v2(tmp_path, extra_procs="garbage\n")
    group, why = cgroups.make(LIMITS, str(mountinfo), str(proc))
    assert group is None and why.startswith("no cgroup for the drill (invalid literal")


def test_v2_a_process_forked_into_the_unit_cgroup_during_the_move_moves_too(tmp_path, monkeypatch):
    import errno

    unit, mountinfo, proc = _fake_v2(tmp_path)
    moved, write = [], cgroups._write

    def racy(path, value):
        if path.name == "cgroup.subtree_control" and moved.count("busy") < 2:
            (unit / "cgroup.procs").write_text(f"{os.getpid()}\n{4000 + moved.count('busy')}\n")  # a fork
            moved.append("busy")
            raise OSError(errno.EBUSY, "Device or resource busy")
        if path.parent.name == cgroups.LEAF:
            moved.append(value)
        write(path, value)

    monkeypatch.setattr(cgroups, "_write", racy)
    group, why = cgroups.make(LIMITS, str(mountinfo), str(proc))
    assert why is None and group.version == 2, why
    assert moved == [str(os.getpid()), "busy", "4000", str(os.getpid()), "busy", "4001", str(os.getpid())]
    assert (unit / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_v2_a_move_that_never_settles_gives_up_with_the_reason(tmp_path, monkeypatch):
    import errno

    _, mountinfo, proc = _fake_v2(tmp_path)
    calls = []

    def busy(path, value):
        if path.name == "cgroup.subtree_control":
            calls.append(value)
            raise OSError(errno.EBUSY, "Device or resource busy")
        path.write_text(value)

    monkeypatch.setattr(cgroups, "_write", busy)
    group, why = cgroups.make(LIMITS, str(mountinfo), str(proc))
    assert group is None and why == "no cgroup for the drill (Device or resource busy)"
    assert len(calls) == cgroups.MOVE_ATTEMPTS


def test_the_watchdog_stops_the_drill_when_it_cannot_read_free_space(tmp_path):
    cancel = limits.DrillCancel(execute.Cancel())
    gone = tmp_path / "state"
    watch = limits.DiskWatch(tmp_path, 1 << 30, 0, [tmp_path, gone], cancel)
    watch.start()
    assert cancel.wait(5), "a watchdog that cannot see must not let the drill run on unwatched"
    watch.join(5)
    assert not watch.is_alive()
    assert watch.reason == (f"the drill's disk watchdog could not read the free space of {gone} "
                            "(No such file or directory); the drill was stopped")


def test_proc_stat_fields_are_read_in_one_place():
    from backupd.actions import locks
    from backupd.process import procs

    assert procs.parent(os.getpid()) == os.getppid()
    assert procs.stat_fields(os.getpid())[0] in ("R", "S")
    assert procs.stat_fields(999999999) is None and procs.parent(999999999) == 0
    assert locks.pid_running(os.getpid()) and locks.pid_started(os.getpid()) is not None
    assert locks.pid_started(999999999) is None
