"""restic copy, and init of a repository that shares another's chunker parameters
(so copied snapshots deduplicate the same way in both)."""

from __future__ import annotations

import re

from backupd.engine import command, exitcodes, feature
from backupd.engine.repository import Repository
from backupd.errors import ConfigError
from backupd.process import execute

_HEX = re.compile(r"[0-9a-f]{64}")
_SAVED = re.compile(r"snapshot ([0-9a-f]{8,64}) saved|saved as ([0-9a-f]{8,64})")


def environment(dest: Repository, source: Repository) -> execute.Environment:
    """dest's environment plus the source as restic's --from-* repository.

    restic takes one set of S3 keys from the environment for both repositories, so two S3
    repositories with different keys cannot be paired in one copy.
    """
    env = dest.environment()
    src = source.environment()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        mine = env.plain.get(key) or env.secret.get(key)
        theirs = src.plain.get(key) or src.secret.get(key)
        if mine and theirs and mine != theirs:
            raise ConfigError(f"{dest.name} and {source.name} use different S3 keys; restic copy takes one "
                              "set for both repositories (use the same identity or a local copy target)")
    env.plain.update({k: v for k, v in src.plain.items() if k.startswith("AWS_")})
    env.secret.update(src.secret)
    env.plain["RESTIC_FROM_REPOSITORY"] = source.url
    env.plain["RESTIC_FROM_PASSWORD_FILE"] = str(source.password_file)
    return env


def _run(dest: Repository, source: Repository, subcommand: str, *args: str, what: str,
         timeout: float) -> execute.Completed:
    version = feature.detect(dest.restic_binary)  # the version gate of every restic call
    done = execute.run(command.argv(dest, subcommand, *args, json=False), environment(dest, source),
                       timeout=timeout)
    exitcodes.classify(done, what, version)
    return done


def init_like(dest: Repository, source: Repository) -> None:
    """Initialise dest with source's chunker parameters."""
    _run(dest, source, "init", "--copy-chunker-params", what=f"init {dest.name} like {source.name}",
         timeout=300)


def copy(dest: Repository, source: Repository, *, tags: list[str], host: str,
         timeout: float = command.DEFAULT_TIMEOUT, ids: list[str] | None = None) -> list[str]:
    """Copy the snapshots carrying all tags on host that dest lacks (or exactly the snapshots `ids`, full
    hex ids); returns the new ids."""
    args = [i for i in ids if _HEX.fullmatch(i)] if ids is not None else ["--host", host, "--tag", ",".join(tags)]
    if ids is not None and not args:
        return []
    done = _run(dest, source, "copy", *args, what=f"copy {source.name} -> {dest.name}", timeout=timeout)
    return [a or b for a, b in _SAVED.findall(done.stdout.decode("utf-8", "replace"))]
