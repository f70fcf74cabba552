"""A throw-away PostgreSQL cluster listening on a unix socket only (no TCP listener).

Usage::

    with PostgresCluster(workdir) as pg:
        pg.psql("CREATE DATABASE tos")
        psycopg.connect(pg.dsn("tos"))
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from demo._util import Service, free_ports, log_tail, wait_until

PG_OS_USER = "postgres"
_SOCK_MAX = 107 - len("/.s.PGSQL.65535")
_CONF = """
listen_addresses = ''
unix_socket_directories = '{sock}'
unix_socket_permissions = 0777
port = {port}
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 1GB
logging_collector = off
"""


def pg_bindir() -> Path:
    """Directory of initdb/pg_ctl: `pg_config --bindir` when it has initdb, else newest /usr/lib/postgresql/*/bin."""
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    except (OSError, subprocess.SubprocessError):
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    return Path(found[-1]).parent


class PostgresCluster(Service):
    """initdb + pg_ctl in `workdir` (or a private /tmp dir when the postgres user cannot reach it)."""

    user = PG_OS_USER

    def __init__(self, workdir: Path, start_timeout: float = 60.0):
        self.workdir = Path(workdir)
        self.start_timeout = start_timeout
        self.bindir = pg_bindir()
        self.as_root = os.geteuid() == 0
        self.port = free_ports(1)[0]
        self.base: Path | None = None
        self._private_base = False
        self.started = False
        self.startup_seconds = 0.0

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def host(self) -> str:
        """The unix socket directory (use as PGHOST / `-h`)."""
        return str(self.base / "sock")

    @property
    def log(self) -> Path:
        return self.base / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq connection string for `dbname` over the unix socket."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def connect(self, dbname: str = "postgres", **kw) -> psycopg.Connection:
        return psycopg.connect(self.dsn(dbname), connect_timeout=10, **kw)

    def psql(self, sql: str, db: str = "postgres") -> list[tuple]:
        """Run `sql` in autocommit mode; return the rows of the last statement (empty if none)."""
        with self.connect(db, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []

    def start(self) -> None:
        """initdb, write config (unix socket only), pg_ctl start; bounded waits."""
        t0 = time.monotonic()
        self._prepare_base()
        self._run([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user, "--auth=trust",
                   "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"], timeout=120)
        with open(self.datadir / "postgresql.conf", "a") as fh:
            fh.write(_CONF.format(sock=self.host, port=self.port))
        atexit.register(self.stop)
        self.started = True
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-w",
                   "-t", str(int(self.start_timeout)), "start"], timeout=self.start_timeout + 10)
        if not wait_until(lambda: self.psql("SELECT 1") == [(1,)], 20):
            raise RuntimeError(f"PostgreSQL not answering on {self.host}; log tail:\n{log_tail(self.log)}")
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        """pg_ctl stop -m fast (bounded), SIGKILL the postmaster if that fails; remove a private base dir."""
        if self.started:
            self.started = False
            atexit.unregister(self.stop)
            try:
                self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w",
                           "-t", "30", "stop"], timeout=40)
            except (RuntimeError, subprocess.SubprocessError):
                self._kill_postmaster()
        if self._private_base and self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self._private_base = False

    def _prepare_base(self) -> None:
        """Pick the base dir: workdir/pg when reachable by the server user and short enough for a socket."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.base = self.workdir / "pg"
        self._make_dirs()
        if len(self.host) > _SOCK_MAX or not self._reachable():
            self.base = Path(tempfile.mkdtemp(prefix="backupd-pg-"))
            self._private_base = True
            self._make_dirs()

    def _make_dirs(self) -> None:
        (self.base / "sock").mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        os.chmod(self.base / "sock", 0o755)
        if self.as_root:
            pw = pwd.getpwnam(PG_OS_USER)
            for path in (self.base, self.base / "sock"):
                os.chown(path, pw.pw_uid, pw.pw_gid)

    def _reachable(self) -> bool:
        if not self.as_root:
            return True
        probe = ["runuser", "-u", PG_OS_USER, "--", "test", "-w", str(self.base / "sock")]
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0

    def _run(self, argv: list[str], timeout: float) -> None:
        what = f"{Path(argv[0]).name} {argv[-1]}"
        if self.as_root:
            argv = ["runuser", "-u", PG_OS_USER, "--"] + argv
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.base,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            tail = log_tail(self.log) if self.log.exists() else ""
            raise RuntimeError(f"{what} failed ({res.returncode}): {res.stderr.strip()[-2000:]}\n{tail}")

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass
