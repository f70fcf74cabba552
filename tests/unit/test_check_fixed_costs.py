"""A check slice runs restic check and little else: the repository's size (`restic stats` walks every
snapshot's tree) is measured again only weekly, and locks are listed only when one is in the way."""

from __future__ import annotations

import time

from backupd.actions import check
from backupd.engine.exitcodes import RepositoryLocked
from backupd.engine.repository import Repository
from backupd.state.runs import State


class _Preflight:
    def __init__(self):
        self.cleared = 0
        self.unlocked: set[str] = set()

    def run_unlocked(self, name, repo, run, *, exclusive_only):
        return run()


def _repo(url="s3:http://h/b/r"):
    return Repository("worm", url, None)


def test_the_size_is_measured_once_a_week_per_repository(tmp_path, monkeypatch):
    state, measured = State(tmp_path), []
    monkeypatch.setattr(check.restic_stats, "raw_size", lambda repo: measured.append(repo.url) or 5 << 30)
    size, when = check._size(state, "worm", _repo(), _Preflight())
    assert size == 5 << 30 and measured == ["s3:http://h/b/r"]
    state.record("check", "worm", "worm", time.time(), "ok", None,
                 {"url": "s3:http://h/b/r", "repository_bytes": size, "size_measured": when})
    assert check._size(state, "worm", _repo(), _Preflight()) == (5 << 30, when) and len(measured) == 1
    assert check._size(state, "worm", _repo("s3:http://h/b/other"), _Preflight())[0] == 5 << 30
    assert len(measured) == 2  # another repository behind the name: measured
    state.record("check", "worm", "worm", time.time(), "failed", None,
                 {"url": "s3:http://h/b/r", "repository_bytes": size, "size_measured": when - check.SIZE_MAX_AGE})
    check._size(state, "worm", _repo(), _Preflight())
    assert len(measured) == 3  # a week old: measured again


def test_a_lock_in_the_way_is_cleared_once_and_the_command_runs_again(tmp_path):
    from backupd.actions.common import Preflight
    from backupd.config.loader import Config

    pre = Preflight(Config(path=None, state_dir=tmp_path))
    calls = []

    def clear(name, repo, *, exclusive_only):
        calls.append(("clear", exclusive_only))
        pre.unlocked.add(name)

    pre.clear_locks = clear

    def restic():
        calls.append("run")
        if len(calls) == 1:
            raise RepositoryLocked("locked exclusively by PID 7")
        return "done"

    assert pre.run_unlocked("worm", _repo(), restic, exclusive_only=False) == "done"
    assert calls == ["run", ("clear", False), "run"]
    calls.clear()
    assert pre.run_unlocked("worm", _repo(), lambda: calls.append("run") or "again", exclusive_only=False) == "again"
    assert calls == ["run"]  # nothing in the way: no lock listing
