"""Probe logic that needs no database or repository: log continuation, SQL building, commands."""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from backupd.drill.spec import CommandProbe, LogsProbe, PostgresProbe
from backupd.probes import ProbeContext, run
from backupd.probes import logs, postgres


def _entry(path: str, data: bytes) -> dict:
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "type": "file",
            "mode": "0o644"}


def _ctx(tmp_path: Path, files: dict[str, bytes], previous: dict[str, bytes]) -> ProbeContext:
    for path, data in files.items():
        local = tmp_path / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
    entries = [_entry(p, d) for p, d in files.items()]
    return ProbeContext(target=None, sandbox=tmp_path, restore_dir=tmp_path, manifest={"files": entries},
                        restored=entries, snapshot_time=datetime.now(timezone.utc), rpo=None,
                        previous=lambda: {"files": [_entry(p, d) for p, d in previous.items()]})


def test_rotation_names():
    assert logs.successor("/l/app.log") == "/l/app.log.1" and logs.successor("/l/app.log.3") == "/l/app.log.4"
    assert logs.predecessor("/l/app.log.1") == "/l/app.log" and logs.predecessor("/l/app.log") is None


def test_appended_logs_continue(tmp_path):
    ctx = _ctx(tmp_path, {"/l/app.log": b"a\nb\nc\n"}, {"/l/app.log": b"a\nb\n"})
    result = run(LogsProbe(kind="logs"), ctx)
    assert result.status == "ok" and result.details["continued"] == 1


def test_a_log_edited_in_the_middle_fails(tmp_path):
    ctx = _ctx(tmp_path, {"/l/app.log": b"a\nX\nc\nd\n"}, {"/l/app.log": b"a\nb\nc\n"})
    result = run(LogsProbe(kind="logs"), ctx)
    assert result.status == "failed" and result.details["edited"] == ["/l/app.log"]


def test_a_truncated_log_fails(tmp_path):
    ctx = _ctx(tmp_path, {"/l/app.log": b"a\n"}, {"/l/app.log": b"a\nb\n"})
    assert run(LogsProbe(kind="logs"), ctx).status == "failed"


def test_rotation_is_followed_and_dropped_generations_are_listed(tmp_path):
    ctx = _ctx(tmp_path, {"/l/app.log": b"new\n", "/l/app.log.1": b"week2\nmore\n", "/l/app.log.2": b"week1\n"},
               {"/l/app.log": b"week2\n", "/l/app.log.1": b"week1\n", "/l/app.log.2": b"week0\n"})
    result = run(LogsProbe(kind="logs"), ctx)
    assert result.status == "ok", result.problems
    assert result.details["continued"] == 2 and result.details["expired"] == 1


def test_without_a_previous_generation_the_log_probe_is_skipped(tmp_path):
    ctx = _ctx(tmp_path, {"/l/app.log": b"a\n"}, {})
    ctx.previous = lambda: None
    assert run(LogsProbe(kind="logs"), ctx).status == "skipped"


def test_compare_rows_names_a_differing_count_and_a_table_not_counted():
    problems = postgres.compare_rows({"public.a": 5, "public.b": 2, "public.c": 1, "public.d": 3},
                                     {"public.a": 5, "public.b": 1, "public.d": 3}, {"public.d": "a view stands"})
    assert problems == ["public.b: 1 row(s) restored, 2 at backup time",
                        "public.c: not restored (1 row(s) at backup time)",
                        "public.d: a view stands (3 row(s) at backup time)"]


def test_command_probe_checks_exit_output_and_timeout(tmp_path):
    ctx = _ctx(tmp_path, {}, {})
    ok = run(CommandProbe(kind="command", command=["sh", "-c", "echo ready {restore}"], expect_output="^ready "), ctx)
    assert ok.status == "ok" and str(tmp_path) in ok.details["stdout"]
    bad = run(CommandProbe(kind="command", command=["sh", "-c", "exit 4"]), ctx)
    assert bad.status == "failed" and "exited with 4" in bad.problems[0]
    slow = run(CommandProbe(kind="command", command=["sleep", "5"], timeout=1), ctx)
    assert slow.status == "failed" and "timed out" in slow.problems[0]


def test_table_expectations_of_the_drill_spec():
    from backupd.drill.spec import TableExpectation

    tables = {"container_events": TableExpectation(only_grows=True), "public.containers": TableExpectation(min_rows=5),
              "missing": TableExpectation(min_rows=0)}
    found = {"public.container_events": 90, "public.containers": 4}
    problems = postgres.expectation_problems(tables, found, {"public.container_events": 100})
    assert any("container_events: 90 row(s), fewer than the 100" in p for p in problems)
    assert any("public.containers: 4 row(s), the drill spec expects at least 5" in p for p in problems)
    assert any(p.startswith("missing:") for p in problems)
    assert postgres.expectation_problems(tables, {**found, "public.containers": 5, "missing": 1},
                                         {"public.container_events": 90}) == []


def test_a_log_edited_in_an_older_generation_is_found_through_every_generation(tmp_path):
    """Three generations: the edit happened between the oldest and the middle one; the drill of the
    newest still finds it, although the newest continues the middle one."""
    oldest = {"/l/app.log": b"a\nb\nc\n"}
    middle = {"/l/app.log": b"a\nX\nc\nd\n"}
    ctx = _ctx(tmp_path, {"/l/app.log": b"a\nX\nc\nd\ne\n"}, middle)
    ctx.older = lambda: [{"files": [_entry(p, d) for p, d in g.items()]} for g in (middle, oldest)]
    result = run(LogsProbe(kind="logs"), ctx)
    assert result.status == "failed" and result.details["edited"] == ["/l/app.log"]
    assert result.details["generations_checked"] == 2


def test_a_dump_missing_from_the_restored_tree_fails_the_probe_naming_it(tmp_path):
    """A snapshot whose dump is gone (the verify phase reports it missing) still gets a probe verdict, not a
    traceback: what a probe cannot read in the restored tree is a problem of the drill."""
    entry = {"path": "/tos.dump", "size": 10, "sha256": "0" * 64, "type": "stdin", "mode": ""}
    ctx = ProbeContext(target=None, sandbox=tmp_path, restore_dir=tmp_path / "restore", manifest={"files": [entry]},
                       restored=[entry], snapshot_time=datetime.now(timezone.utc), rpo=None, previous=lambda: None)
    result = run(PostgresProbe(kind="postgres"), ctx)
    assert result.status == "failed"
    assert any("tos.dump" in p and "not restored" in p for p in result.problems), result.problems


def test_a_dump_planted_as_a_fifo_or_a_link_to_a_host_file_is_neither_read_nor_patched(tmp_path):
    host = tmp_path / "host-file"
    host.write_bytes(b"PGDMP host bytes")
    entry = {"path": "/tos.dump", "size": 16, "sha256": "0" * 64, "type": "stdin", "mode": ""}
    for plant in ("fifo", "symlink"):
        restore = tmp_path / plant
        restore.mkdir()
        if plant == "fifo":
            os.mkfifo(restore / "tos.dump")
        else:
            (restore / "tos.dump").symlink_to(host)
        ctx = ProbeContext(target=None, sandbox=tmp_path, restore_dir=restore, manifest={"files": [entry]},
                           restored=[entry], snapshot_time=datetime.now(timezone.utc), rpo=None,
                           previous=lambda: None)
        result = _run_bounded(PostgresProbe(kind="postgres"), ctx)
        assert result is not None, f"the probe hung on a {plant}"
        assert result.status == "failed" and "not restored as a regular file" in result.problems[0], plant
    assert host.read_bytes() == b"PGDMP host bytes"


def _run_bounded(probe, ctx, seconds: float = 20):
    """The probe's result, or None when it did not end in `seconds` (a hang)."""
    out = []
    worker = threading.Thread(target=lambda: out.append(run(probe, ctx)), daemon=True)
    worker.start()
    worker.join(seconds)
    return out[0] if out else None


def test_a_planted_fifo_or_symlink_in_the_restored_logs_is_not_read(tmp_path):
    """A snapshot that restores a FIFO or a symlink out of the sandbox where a log was: the probe neither
    hangs on the FIFO nor reads the host file the link points at; the log counts as not continued."""
    outside = tmp_path / "host-secret.log"
    outside.write_bytes(b"a\nb\nmore\n")
    ctx = _ctx(tmp_path / "restore", {"/l/app.log": b"a\nb\nc\n", "/l/other.log": b"a\nb\nmore\n"},
               {"/l/app.log": b"a\nb\n", "/l/other.log": b"a\nb\n"})
    (ctx.restore_dir / "l/app.log").unlink()
    os.mkfifo(ctx.restore_dir / "l/app.log")
    (ctx.restore_dir / "l/other.log").unlink()
    (ctx.restore_dir / "l/other.log").symlink_to(outside)
    result = _run_bounded(LogsProbe(kind="logs"), ctx)
    assert result is not None, "the probe hung on a FIFO"
    assert result.details["continued"] == 0, result.details
