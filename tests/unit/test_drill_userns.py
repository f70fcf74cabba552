"""A non-root daemon's drills in its probe user namespace (backupd.actions.drill_userns)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from backupd.actions import drill_userns
from backupd.process import execute


def test_the_drill_runs_as_its_own_backupd_process_inside_the_namespace():
    cfg = SimpleNamespace(path=Path("/etc/backupd/backupd.yaml"))
    argv = drill_userns.argv(cfg, "tos-db", True, "/run/backupd-userns/backupd")
    assert argv[:3] == ["nsenter", "--user=/run/backupd-userns/backupd", "--"]
    assert argv[4:] == ["-P", "-m", "backupd", "drill", "--target", "tos-db", "--json", "--full",
                        "--config", "/etc/backupd/backupd.yaml"]


def test_only_a_non_root_daemon_with_the_unit_setting_uses_it(monkeypatch):
    monkeypatch.setenv(drill_userns.ENV, "/run/backupd-userns/backupd")
    monkeypatch.setattr(drill_userns.os, "geteuid", lambda: 998)
    assert drill_userns.namespace() == "/run/backupd-userns/backupd"
    monkeypatch.setattr(drill_userns.os, "geteuid", lambda: 0)
    assert drill_userns.namespace() is None  # root drops probes to 65530 itself
    monkeypatch.setattr(drill_userns.os, "geteuid", lambda: 998)
    monkeypatch.delenv(drill_userns.ENV)
    assert drill_userns.namespace() is None


def _ran(monkeypatch, code: int, stdout: bytes, stderr: str = "") -> None:
    monkeypatch.setattr(drill_userns.execute, "run",
                        lambda argv, env, **kw: execute.Completed(argv=argv, returncode=code, stdout=stdout,
                                                                  stderr=stderr))


def test_its_reports_come_back_and_a_failure_is_an_unavailable_report_never_a_traceback(monkeypatch):
    cfg = SimpleNamespace(path=None)
    _ran(monkeypatch, 1, b'{"ok": false, "exit_code": 1, "drills": [{"target": "t", "status": "failed"}]}')
    assert drill_userns.run(cfg, "t", full=False, userns="/x") == [{"target": "t", "status": "failed"}]
    _ran(monkeypatch, 1, b"", "nsenter: reassociate to namespace 'ns/user' failed: Operation not permitted")
    (report,) = drill_userns.run(cfg, "t", full=True, userns="/x")
    assert report["status"] == "unavailable" and "Operation not permitted" in report["reason"]
    _ran(monkeypatch, 2, b'{"ok": false, "exit_code": 2, "error": "no such target t"}')
    (report,) = drill_userns.run(cfg, "t", full=False, userns="/x")
    assert report["status"] == "unavailable" and "no such target t" in report["reason"]


def test_without_the_pinned_namespace_the_drill_is_unavailable_naming_why(tmp_path):
    """The unit's pin failed (its "-" lets the daemon back up anyway): nothing runs as the daemon instead."""
    cfg = SimpleNamespace(path=tmp_path / "backupd.yaml")
    (report,) = drill_userns.run(cfg, "tos-db", full=False, userns=str(tmp_path / "missing"))
    assert report["status"] == "unavailable" and report["target"] == "tos-db"
    assert str(tmp_path / "missing") in report["reason"] and "No such file" in report["reason"], report


def test_a_placeholder_without_a_pinned_namespace_is_named_as_such(tmp_path, monkeypatch):
    """The pin went to a mount namespace the daemon does not see: nsenter would only say "Invalid argument"."""
    placeholder = tmp_path / "backupd"
    placeholder.write_bytes(b"")
    monkeypatch.setattr(drill_userns.execute, "run", lambda *a, **kw: (_ for _ in ()).throw(AssertionError("ran")))
    (report,) = drill_userns.run(SimpleNamespace(path=None), "tos-db", full=False, userns=str(placeholder))
    assert report["status"] == "unavailable" and "only the placeholder file" in report["reason"], report
    _ran(monkeypatch, 0, b'{"drills": [{"target": "tos-db", "status": "ok"}]}')
    assert drill_userns.run(SimpleNamespace(path=None), "tos-db", full=False,
                            userns="/proc/self/ns/user")[0]["status"] == "ok"  # a namespace file: nsenter runs


def test_a_drill_stopped_with_the_daemon_is_reported_cancelled_not_with_its_traceback(monkeypatch):
    monkeypatch.setattr(drill_userns.execute, "run", lambda argv, env, **kw: execute.Completed(
        argv=argv, returncode=-2, stderr='File "<frozen importlib._bootstrap>", line 1\nKeyboardInterrupt',
        cancelled=True))
    (report,) = drill_userns.run(SimpleNamespace(path=None), "t", full=False, userns="/x")
    assert report["status"] == "unavailable" and report["reason"].endswith("failed: cancelled"), report
