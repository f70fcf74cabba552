"""state_dir is private: tightened (with a warning) when found open, refused when another user owns it."""

import os
import stat

import pytest
from click.testing import CliRunner

from backupd.cli import main
from backupd.state import statedir
from backupd.state.runs import State


def _config(tmp_path, state):
    (tmp_path / "policies").mkdir(exist_ok=True)
    path = tmp_path / "backupd.yaml"
    path.write_text(f"policies: [policies/*.yaml]\nstate_dir: '{state}'\n")
    return path


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_open_state_dir_is_made_private_with_a_warning(tmp_path):
    state = tmp_path / "state"
    (state / "manifests").mkdir(parents=True)
    (state / "manifests" / "t.json").write_text("{}")
    (state / "state.sqlite").write_text("")
    for path, mode in ((state, 0o755), (state / "manifests", 0o755), (state / "manifests" / "t.json", 0o644),
                       (state / "state.sqlite", 0o644)):
        os.chmod(path, mode)
    result = CliRunner().invoke(main, ["status", "--config", str(_config(tmp_path, state)), "--json"])
    assert "Traceback" not in result.output
    assert "was readable by group or others (mode 0755" in result.stderr
    assert _mode(state) == _mode(state / "manifests") == 0o700
    assert _mode(state / "manifests" / "t.json") == _mode(state / "state.sqlite") == 0o600
    assert statedir.ensure_private(state) == []  # once private, nothing more to say


def test_files_created_later_are_private(tmp_path):
    old = os.umask(statedir.UMASK)
    try:
        statedir.ensure_private(tmp_path / "new")
        State(tmp_path / "new").record("backup", "t", "d", 0.0, "ok", None, {})
        (tmp_path / "new" / "manifests").mkdir()
    finally:
        os.umask(old)
    modes = {p.name: _mode(p) for p in [tmp_path / "new", *(tmp_path / "new").rglob("*")]}
    assert all(m & 0o077 == 0 for m in modes.values()), modes


def test_state_file_is_private_without_the_cli_umask(tmp_path):
    old = os.umask(0o022)
    try:
        State(tmp_path / "lib").record("backup", "t", "d", 0.0, "ok", None, {})
    finally:
        os.umask(old)
    assert _mode(tmp_path / "lib" / "state.sqlite") == 0o600


def test_state_dir_of_another_user_is_refused(tmp_path, monkeypatch):
    state = tmp_path / "theirs"
    state.mkdir(mode=0o700)
    monkeypatch.setattr(statedir.os, "geteuid", lambda: os.getuid() + 4242)
    result = CliRunner().invoke(main, ["status", "--config", str(_config(tmp_path, state)), "--json"])
    assert result.exit_code == 2 and "belongs to uid" in result.stdout and "not to this user" in result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the directory to another user")
def test_root_on_the_services_state_dir_is_warned_not_refused(tmp_path):
    state = tmp_path / "service"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    (state / statedir.MARKER).touch()
    notes = statedir.ensure_private(state)
    assert len(notes) == 1 and "belongs to uid 65534" in notes[0] and "runuser" in notes[0]
