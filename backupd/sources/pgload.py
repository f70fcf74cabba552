"""Load a PostgreSQL dump into a database: the argv (psql for a plain dump, `pg_restore -j N` for a
custom-format archive, told apart by its first bytes) and what failed, naming the object."""

from __future__ import annotations

import os
import re
from pathlib import Path

from backupd.sources.postgres import CUSTOM_MAGIC

MAX_PROBLEMS = 5
_ERROR = re.compile(r"^(?:pg_restore: error: could not execute query: |psql:[^ ]*: )?ERROR:\s+(.*)$")
_COMMAND = re.compile(r"^Command was: (.*)$")


def is_custom(path: Path) -> bool:
    """True when path holds a custom-format archive (pg_dump -Fc)."""
    with open(path, "rb") as fh:
        return fh.read(len(CUSTOM_MAGIC)) == CUSTOM_MAGIC


def jobs_for(wanted: int | None) -> int:
    """Parallel restore jobs: the wanted number, else the CPUs this process may use."""
    return wanted or max(1, len(os.sched_getaffinity(0)))


def _connection(host, port, user, database) -> list[str]:
    argv = ["--no-password"]
    for flag, value in (("--host", host), ("--port", port), ("--username", user)):
        if value:
            argv += [flag, str(value)]
    return argv + ["--dbname", database]


def load_argv(bindir: Path, dump: Path, *, database: str, host=None, port=None, user=None,
              jobs: int = 1) -> list[str]:
    """argv loading dump into database: `pg_restore -j jobs` for an archive (every error reported at
    the end, so one drill names every missing role), else psql stopping at the first error."""
    if is_custom(dump):
        return [str(bindir / "pg_restore"), f"--jobs={jobs}", *_connection(host, port, user, database),
                str(dump)]
    return [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
            *_connection(host, port, user, database), "-f", str(dump)]


def failures(stderr: str) -> list[str]:
    """The errors a load reported, each with the statement (and so the object) it failed on."""
    problems: list[str] = []
    error = None
    for line in stderr.splitlines():
        match = _ERROR.match(line.strip())
        if match:
            if error:
                problems.append(error)
            error = match.group(1).strip()
            continue
        command = _COMMAND.match(line.strip())
        if command and error:
            problems.append(f"{error} (at: {command.group(1).strip()[:200]})")
            error = None
    if error:
        problems.append(error)
    if not problems:
        tail = [ln.strip() for ln in stderr.splitlines() if ln.strip() and "warning: errors ignored" not in ln]
        problems = tail[-2:]
    extra = len(problems) - MAX_PROBLEMS
    return problems[:MAX_PROBLEMS] + ([f"and {extra} more error(s)"] if extra > 0 else [])
