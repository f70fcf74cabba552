"""PostgreSQL probe: load the restored plain dump into a throw-away cluster inside the sandbox (unix
socket only, `listen_addresses = ''`), compare row counts with the facts counted at backup time, run the
spec's SQL checks, and stop the cluster. PostgreSQL refuses to run as root: when we are root, every
server and client program runs as the `postgres` user through `runuser`."""

from __future__ import annotations

import glob
import os
import signal
from pathlib import Path

from backupd import execute
from backupd.errors import DependencyError, Finding
from backupd.probes.base import ProbeContext, ProbeResult

OS_USER = "postgres"
PORT = 5432  # only names the socket file: the socket directory is private to this sandbox
DATABASE = "drill"
SOCKET_MAX = 107 - len("/.s.PGSQL.5432")
CONF = f"""
listen_addresses = ''
unix_socket_directories = '{{sock}}'
unix_socket_permissions = 0700
port = {PORT}
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
"""


def bindir() -> Path:
    """Directory of initdb/pg_ctl/psql: `pg_config --bindir` when it has initdb, else the newest
    /usr/lib/postgresql/*/bin (Debian keeps the server programs there)."""
    try:
        done = execute.run(["pg_config", "--bindir"], timeout=10)
        found = Path(done.stdout.decode().strip())
        if done.returncode == 0 and (found / "initdb").exists():
            return found
    except DependencyError:
        pass
    hits = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not hits:
        raise DependencyError("PostgreSQL server programs (initdb, pg_ctl) not found; install postgresql")
    return Path(hits[-1]).parent


def quote_table(name: str) -> str:
    """'public.containers' -> '"public"."containers"' (schema-qualified, identifiers quoted)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split(".", 1))


def row_count_sql(tables: list[str]) -> str:
    """One query: (ordinal, count) per table, in the given order."""
    return " UNION ALL ".join(f"SELECT {i}, count(*) FROM {quote_table(t)}" for i, t in enumerate(tables))


def compare_rows(expected: dict[str, int], found: dict[str, int]) -> list[str]:
    """Problems where a restored table's row count differs from the backup-time fact."""
    return [f"{t}: {found.get(t)} row(s) restored, {n} at backup time"
            for t, n in sorted(expected.items()) if found.get(t) != n]


class Cluster:
    """A throw-away cluster under `base` (which the server user can reach)."""

    def __init__(self, base: Path, cancel: execute.Cancel | None):
        self.base, self.cancel = base, cancel
        self.bin = bindir()
        self.as_root = os.geteuid() == 0
        self.started = False

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def sock(self) -> Path:
        return self.base / "sock"

    def _run(self, argv: list[str], what: str, timeout: float, check: bool = True) -> execute.Completed:
        if self.as_root:
            argv = ["runuser", "-u", OS_USER, "--", *argv]
        done = execute.run(argv, timeout=timeout, cancel=self.cancel, cwd=str(self.base))
        if check and (done.returncode != 0 or done.timed_out):
            why = "timed out" if done.timed_out else f"exited with {done.returncode}"
            raise Finding(f"{what} {why}: {done.stderr.strip()[-500:]}")
        return done

    def start(self) -> None:
        if len(str(self.sock)) > SOCKET_MAX:
            raise Finding(f"socket path {self.sock} is too long for PostgreSQL; use a shorter sandbox dir")
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", OS_USER, "--auth=trust",
                   "--encoding=UTF8", "--locale=C", "--no-sync"], "initdb", 300)
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(CONF.format(sock=self.sock))
        self.started = True
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "server.log"),
                   "-w", "-t", "120", "start"], "pg_ctl start", 150)

    def stop(self) -> None:
        """Stop immediately (the data is thrown away); kill the postmaster if pg_ctl cannot."""
        if not self.started:
            return
        self.started = False
        argv = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop"]
        if self.as_root:
            argv = ["runuser", "-u", OS_USER, "--", *argv]
        done = execute.run(argv, timeout=60, cwd=str(self.base))  # no cancel: stopping must finish
        if done.returncode != 0:
            try:
                os.kill(int((self.data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass

    def psql(self, *args: str, db: str = DATABASE, timeout: float = 600) -> str:
        argv = [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", str(self.sock),
                "-p", str(PORT), "-U", OS_USER, "-d", db, *args]
        return self._run(argv, "psql", timeout).stdout.decode("utf-8", "replace")


def _dump_entry(probe, ctx: ProbeContext) -> dict:
    entries = [e for e in ctx.restored if e.get("type") in ("stdin", "file")]
    if probe.dump:
        entries = [e for e in entries if e["path"].lstrip("/") == probe.dump.lstrip("/")]
    if len(entries) != 1:
        raise Finding(f"cannot tell which restored file is the dump ({len(entries)} candidates); set 'dump'")
    return entries[0]


def _check(cluster: Cluster, check, ctx: ProbeContext) -> str | None:
    """None when the SQL check holds, else a problem."""
    value = cluster.psql("-c", check.sql).strip().splitlines()
    value = value[0] if value else ""
    if check.expect is not None and value != str(check.expect):
        return f"{check.name}: got {value!r}, expected {str(check.expect)!r}"
    numeric = check.min is not None or check.max is not None or check.not_older_than is not None
    try:
        number = float(value) if numeric else 0.0
    except ValueError:
        return f"{check.name}: {value!r} is not a number"
    if check.min is not None and number < check.min:
        return f"{check.name}: {number:g} is below {check.min:g}"
    if check.max is not None and number > check.max:
        return f"{check.name}: {number:g} is above {check.max:g}"
    if check.not_older_than is not None:
        window = ctx.rpo if check.not_older_than == "rpo" else check.not_older_than
        oldest = ctx.snapshot_time.timestamp() - window.total_seconds()
        if number < oldest:
            return f"{check.name}: newest data is {ctx.snapshot_time.timestamp() - number:.0f}s older than " \
                   f"the snapshot, more than {window.total_seconds():.0f}s"
    return None


def run(probe, ctx: ProbeContext, result: ProbeResult) -> None:
    dump = ctx.local(_dump_entry(probe, ctx)["path"])
    base = ctx.sandbox / "pg"
    base.mkdir(mode=0o700)
    (base / "sock").mkdir(mode=0o700)
    ctx.grant(base, base / "sock", dump)
    cluster = Cluster(base, ctx.cancel)
    try:
        cluster.start()
        cluster.psql("-c", f'CREATE DATABASE "{DATABASE}"', db="postgres")
        cluster.psql("-f", str(dump), timeout=probe.timeout.total_seconds())
        expected = ctx.manifest.get("facts", {}).get("rows", {})
        if probe.row_counts:
            if not expected:
                result.problems.append("the backup-time facts hold no row counts to compare with")
            else:
                tables = sorted(expected)
                lines = cluster.psql("-F", "|", "-c", row_count_sql(tables)).splitlines()
                found = {tables[int(i)]: int(n) for i, n in (ln.split("|") for ln in lines if "|" in ln)}
                result.details["rows"] = found
                result.problems += compare_rows(expected, found)
        checks = [c for c in probe.checks if c.enabled]
        for check in checks:
            problem = _check(cluster, check, ctx)
            if problem:
                result.problems.append(problem)
        result.details["checks"] = len(checks)
    finally:
        cluster.stop()
