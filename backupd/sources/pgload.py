"""Load a PostgreSQL dump into a database: the argv (psql for a plain dump, `pg_restore -j N` for a
custom-format archive, told apart by its first bytes) and what failed, naming the object.

A plain dump is a psql script, and the dump is the attacker's: a line `\\! cmd` (or `\\o |cmd`,
`\\copy ... program`, a meta-command mid-line) would run as whoever loads it. So psql starts in its
restricted mode (`\\restrict KEY`, a fresh random key: every later backslash command but
`\\unrestrict KEY` fails) and reads the dump on stdin through `restricted_input`, which blanks the
dump's own `\\restrict`/`\\unrestrict` lines (pg_dump >= 15.14 writes them, and they would fail). The
filter only ever removes a line, so a mistake in it can only make the load fail."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Iterator

from backupd.errors import DependencyError
from backupd.process import execute
from backupd.sources.postgres import CUSTOM_MAGIC
from backupd.text import printable

MAX_PROBLEMS = 5
#: The oldest PostgreSQL major backupd loads dumps with (the drill's probe role needs pg_read_all_data,
#: new in 14); 13 is refused though 13.22 has \restrict.
MIN_MAJOR = 14
#: The first psql release of each supported major that has \restrict (August 2025); every major after
#: 17 has it.
RESTRICT_SINCE = {14: 19, 15: 14, 16: 10, 17: 6}
_VERSION = re.compile(rb"\(PostgreSQL\) (\d+)(?:\.(\d+))?")
_RESTRICT_LINE = re.compile(rb"^\\(?:un)?restrict [A-Za-z0-9]+$")
_COPY_START = re.compile(rb"^COPY .* FROM stdin;$")
_REFUSED = re.compile(r"^psql:<stdin>:(\d+): error: backslash commands are restricted")
_META = re.compile(rb"\\([A-Za-z!?]+|.)")
#: Longest dump line the filter looks at whole; a longer one passes unchanged (it is no \restrict line).
LINE_MAX = 1 << 20
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
            *_connection(host, port, user, database), "-c", f"\\restrict {secrets.token_hex(32)}", "-f", "-"]


def load_input(dump: Path) -> Iterator[bytes] | None:
    """What load_argv's command reads on stdin: the filtered plain dump; None for an archive."""
    return None if is_custom(dump) else restricted_input(dump)


def restricted_input(dump: Path, chunk: int = 1 << 16) -> Iterator[bytes]:
    """The plain dump in chunks, its `\\restrict KEY` and `\\unrestrict KEY` lines outside COPY data
    blanked (the newline kept, so psql's line numbers are the file's). In COPY data such a line is a row
    (`\\r` is an escape there) and stays."""
    in_copy, whole, out, size = False, True, [], 0
    with open(dump, "rb") as fh:
        for line in iter(lambda: fh.readline(LINE_MAX), b""):
            starts, whole = whole, line.endswith(b"\n")
            text = line.rstrip(b"\n").rstrip(b"\r")
            if starts and whole:  # a cut line's pieces are never a line of their own
                if in_copy:
                    in_copy = text != b"\\."
                elif _RESTRICT_LINE.match(text):
                    line = b"\n"
                else:
                    in_copy = bool(_COPY_START.match(text))
            out.append(line)
            size += len(line)
            if size >= chunk:
                yield b"".join(out)
                out, size = [], 0
    if out:
        yield b"".join(out)


def version(output: bytes) -> tuple[int, int]:
    """(major, minor) from a PostgreSQL program's `--version` line; (0, 0) when it names none."""
    found = _VERSION.search(output)
    return (int(found.group(1)), int(found.group(2) or 0)) if found else (0, 0)


def has_restrict(major: int, minor: int) -> bool:
    """True for a supported psql release with \\restrict (RESTRICT_SINCE; every major after 17)."""
    return major > max(RESTRICT_SINCE) or (major >= MIN_MAJOR and minor >= RESTRICT_SINCE.get(major, 1 << 30))


def require_restrict(bindir: Path) -> None:
    """DependencyError unless this psql has \\restrict (14.19, 15.14, 16.10, 17.6 and later): without
    it a plain dump's meta-commands would run, so such a dump is not loaded at all."""
    done = execute.run([str(bindir / "psql"), "--version"], timeout=30)
    if has_restrict(*version(done.stdout)):
        return
    since = ", ".join(f"{major}.{minor}" for major, minor in sorted(RESTRICT_SINCE.items()))
    shown = printable(done.stdout.decode("utf-8", "replace").strip(), 80) or "unknown"
    raise DependencyError(f"{bindir / 'psql'} ({shown}) lacks \\restrict, so it would run the meta-commands "
                          f"a plain dump carries; install PostgreSQL client {since} or later")


def refused(stderr: str, dump: Path) -> str | None:
    """When psql refused a meta-command of the dump: the problem, naming the line and the command."""
    lines = [int(m.group(1)) for m in map(_REFUSED.match, stderr.splitlines()) if m]
    if not lines:
        return None
    return (f"the dump carries a psql meta-command at line {lines[0]} ({_command_at(dump, lines[0])}): "
            "refused, not run; the load stopped there")


def _command_at(dump: Path, number: int) -> str:
    """The first backslash command on line `number` of dump, bounded and printable."""
    line = b""
    try:
        with open(dump, "rb") as fh:
            for _ in range(number):
                line = fh.readline(LINE_MAX)
    except OSError:
        return "?"
    found = _META.search(line)
    return printable(found.group(0).decode("ascii", "replace"), 20) if found else "?"


def load_failure(stderr: str, dump: Path) -> str:
    """Why a load failed: the meta-command psql refused, else each statement that failed."""
    return refused(stderr, dump) or "; ".join(failures(stderr))


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
