"""Common plumbing for restic subcommands: base argv and running through the executor."""

from __future__ import annotations

from typing import Callable

from backupd.engine import exitcodes, feature
from backupd.engine.repository import Repository
from backupd.errors import ConfigError
from backupd.process import execute

DEFAULT_TIMEOUT = 6 * 3600.0
#: Subcommands that only read the repository; with --no-lock they need no write access. restic 0.14
#: accepts the global --no-lock on all of them (without it, 0.14's check even takes an exclusive lock);
#: tests/integration/test_verifier.py runs them with read-only S3 keys and finds no lock object.
READ_ONLY = frozenset({"snapshots", "restore", "dump", "check", "stats", "cat", "list", "ls", "find", "diff"})


def argv(repo: Repository, subcommand: str, *args: str, json: bool = True) -> list[str]:
    """restic argv for a subcommand. Repository and password travel in the environment.

    A read-only repository refuses any subcommand that writes (init, backup, forget, prune, tag, unlock,
    copy, key ...) before restic starts, and reads with --no-lock."""
    base = [repo.restic_binary, subcommand]
    if repo.read_only:
        if subcommand not in READ_ONLY:
            raise ConfigError(f"restic {subcommand} on {repo.name} refused: this is a read-only (verifier) "
                              "identity; writing commands run on the backup host")
        if "--no-lock" not in args:
            base.append("--no-lock")
    if json:
        base.append("--json")
    return base + global_options(repo) + list(args)


def global_options(repo: Repository) -> list[str]:
    """Options that bound restic's own storage requests, where the installed version has them.
    (restic 0.14 has no such option: there backupd's wall-clock deadlines alone bound it.)"""
    if not repo.stuck_request_timeout:
        return []
    if not feature.has("stuck_request_timeout", feature.detect(repo.restic_binary)):
        return []
    return [f"--stuck-request-timeout={max(1, int(repo.stuck_request_timeout))}s"]


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
