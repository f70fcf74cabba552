"""Shell completion is click's own (`_BACKUPD_COMPLETE=bash_source backupd`; zsh_source, fish_source): the
completion protocol offers the real commands and options, and the bash script that offline-install.sh puts
into bash-completion's directory completes in a real bash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from backupd.cli import main

BACKUPD = Path(sys.executable).parent / "backupd"  # the console script of this venv


def _complete(words: str, cword: int) -> list[str]:
    """Values offered by the bash_complete protocol for COMP_WORDS/COMP_CWORD."""
    result = CliRunner().invoke(main, [], prog_name="backupd", env={
        "_BACKUPD_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    assert result.exit_code == 0, result.output
    return [line.split(",", 1)[1] for line in result.output.splitlines()]


def test_commands_and_subcommands_complete():
    assert _complete("backupd evid", 1) == ["evidence"]
    assert _complete("backupd evidence ver", 2) == ["verify"]
    assert {"backup", "drill", "restore", "status"} <= set(_complete("backupd ", 1))


def test_options_complete():
    offered = _complete("backupd drill --", 2)
    assert {"--target", "--full", "--snapshot", "--config", "--json"} <= set(offered)
    assert "--into-database" in _complete("backupd restore --in", 2)


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F _backupd_completion backupd"),
                                           ("zsh", "compdef _backupd_completion backupd"),
                                           ("fish", "complete --no-files --command backupd")])
def test_each_shell_gets_its_script(shell, marker):
    result = CliRunner().invoke(main, [], prog_name="backupd", env={"_BACKUPD_COMPLETE": f"{shell}_source"})
    assert result.exit_code == 0 and marker in result.output, result.output


def test_the_installed_script_completes_in_bash():
    assert BACKUPD.is_file(), f"{BACKUPD} missing: scripts/setup.sh installs backupd into .venv"
    script = subprocess.run([str(BACKUPD)], env={"_BACKUPD_COMPLETE": "bash_source", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60, check=True).stdout
    run = (script + '\nCOMP_WORDS=(backupd drill --fu); COMP_CWORD=2\n_backupd_completion backupd\n'
           'printf "%s\\n" "${COMPREPLY[@]}"\n')
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", run], capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{BACKUPD.parent}:/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.split() == ["--full"], (done.stdout, done.stderr)
