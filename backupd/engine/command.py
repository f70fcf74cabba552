"""Common plumbing for restic subcommands: base argv and running through the executor."""

from __future__ import annotations

from typing import Callable

from backupd import execute
from backupd.engine import exitcodes, feature
from backupd.engine.repository import Repository

DEFAULT_TIMEOUT = 6 * 3600.0


def argv(repo: Repository, subcommand: str, *args: str, json: bool = True) -> list[str]:
    """restic argv for a subcommand. Repository and password travel in the environment."""
    base = [repo.restic_binary, subcommand]
    if json:
        base.append("--json")
    return base + list(args)


def run(
    repo: Repository,
    subcommand: str,
    *args: str,
    what: str,
    json: bool = True,
    timeout: float | None = DEFAULT_TIMEOUT,
    cancel: execute.Cancel | None = None,
    on_stdout_line: Callable[[bytes], None] | None = None,
    keep_stdout: bool = True,
    check: bool = True,
) -> execute.Completed:
    """Run one restic subcommand on repo; raise a classified error unless it succeeded."""
    version = feature.detect(repo.restic_binary)  # cached; DependencyError when missing or too old
    done = execute.run(
        argv(repo, subcommand, *args, json=json), repo.environment(), timeout=timeout,
        cancel=cancel, on_stdout_line=on_stdout_line, keep_stdout=keep_stdout,
    )
    if check:
        exitcodes.classify(done, what, version)
    return done
