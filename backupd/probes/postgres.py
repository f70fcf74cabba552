"""PostgreSQL probe: load the restored dump (plain: psql; custom format: pg_restore -j) into a throw-away
cluster inside the sandbox (unix socket only, `listen_addresses = ''`), compare row counts with the facts
counted at backup time, run the spec's SQL checks, and stop the cluster. The dump is untrusted, and so are
the server processes it feeds: initdb, postgres, psql and pg_restore run confined (backupd.process.sandbox: an
unprivileged uid, no network, no capabilities, the restored tree read-only, only `pg/` writable, the socket
in `pg/sock`); stopping the server kills its whole PID namespace. A drill may `prepare()` the cluster
while restic restores the dump: initdb and the server start then cost no time to service-ready.

Inside the cluster the dump is no superuser either: LOADER loads it (owner of the database, no other
power), so COPY ... PROGRAM, ALTER SYSTEM, server files and untrusted languages fail the load. Objects
the dump gives to `postgres` still load (OWNER: a plain role LOADER is a member of); any other role is
missing, as it would be on a fresh server. Row counts and the spec's checks run as PROBE, a read-only
role that owns nothing the dump made, in a session pgcount.SESSION sets (search_path = pg_catalog), so
the dump's functions, operators and database settings cannot answer for the catalog's."""

from __future__ import annotations

import glob
import mmap
import os
import re
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from backupd.errors import BackupdError, DependencyError, Finding
from backupd.files.verify import Beneath
from backupd.probes import pglog
from backupd.probes.base import ProbeContext, ProbeResult
from backupd.process import execute
from backupd.process.sandbox import Jail
from backupd.sources import pgarchive, pgcount, pgload
from backupd.sources.postgres import CUSTOM_MAGIC
from backupd.text import printable

ADMIN = "backupd_admin"  # the cluster's superuser: sets the cluster up, never touches the dump
LOADER = "backupd_load"
PROBE = "backupd_probe"
OWNER = "postgres"  # the role a pg_dump names as owner most often; here without any power
#: Roles and grants, run by ADMIN before the load (each its own statement: CREATE DATABASE needs that).
ROLES_SQL = (
    f"CREATE ROLE {LOADER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
    f"CREATE ROLE {OWNER} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
    f"GRANT {OWNER} TO {LOADER}",  # so the dump's OWNER TO postgres works for LOADER
    # BYPASSRLS: a policy the dump put on a table cannot hide rows from the count
    f"CREATE ROLE {PROBE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS",
    f"GRANT pg_read_all_data TO {PROBE}",
    f"ALTER ROLE {PROBE} SET default_transaction_read_only = on",
)
PORT = 5432  # only names the socket file: the socket directory is private to this sandbox
DATABASE = "drill"
SOCKET_MAX = 107 - len("/.s.PGSQL.5432")
#: How ADMIN's sessions start: a setting the dump left on DATABASE (search_path, read-only) cannot steer them.
ADMIN_SESSION = "-c search_path=pg_catalog -c default_transaction_read_only=off"
#: A restore-speed server: the cluster is thrown away after the probe, so nothing needs to survive a crash
#: (no fsync, no full-page images), nothing is replicated (wal_level minimal: data loaded into a table
#: created or truncated in the same transaction, as pg_restore -j does, and every index build write no
#: WAL), no autovacuum and (below 4 GB of WAL: the sandbox's disk) no checkpoint runs during the load, and
#: index builds sort in memory (maintenance_work_mem, set on the database once the dump's format tells how
#: many loaders share it).
CONF = f"""
listen_addresses = ''
unix_socket_directories = '{{sock}}'
unix_socket_permissions = 0700
port = {PORT}
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
archive_mode = off
max_wal_size = 4GB
checkpoint_timeout = 1d
autovacuum = off
logging_collector = off
""" + pglog.CONF
#: maintenance_work_mem bounds in MB; besides, at most half the sandbox's per-process address-space limit
#: (spec `sandbox.memory`, default 2 GiB), which every server process also spends on shared_buffers (128 MB)
#: and its code.
MAINTENANCE_MB = (64, 1024)


def maintenance_mb(jobs: int, memory_limit: int, meminfo: str = "/proc/meminfo") -> int:
    """maintenance_work_mem in MB for `jobs` concurrent index builds: a quarter of the available memory
    shared among them, within MAINTENANCE_MB and half of memory_limit (bytes)."""
    try:
        with open(meminfo, encoding="ascii") as fh:
            kib = next(int(ln.split()[1]) for ln in fh if ln.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        kib = 0
    share = max(MAINTENANCE_MB[0], min(MAINTENANCE_MB[1], kib // 1024 // 4 // max(1, jobs)))
    return max(1, min(share, memory_limit >> 21))


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


def require_server(bin_dir: Path) -> None:
    """DependencyError unless the server programs in bin_dir are PostgreSQL pgload.MIN_MAJOR (14) or
    later: PROBE reads every table through pg_read_all_data, which 13 lacks."""
    done = execute.run([str(bin_dir / "postgres"), "--version"], timeout=30)
    major, minor = pgload.version(done.stdout)
    if major >= pgload.MIN_MAJOR:
        return
    found = f"PostgreSQL {major}.{minor}" if major else "an unknown PostgreSQL version"
    raise DependencyError(f"{bin_dir}: {found}; a postgres drill needs PostgreSQL {pgload.MIN_MAJOR} or later "
                          "(its read-only role reads through pg_read_all_data); install a newer postgresql "
                          "and put its pg_config first on PATH")


def compare_rows(expected: dict[str, int], found: dict[str, int],
                 why: dict[str, str] | None = None) -> list[str]:
    """Problems where a restored table's row count differs from the backup-time fact; `why` a table was
    not counted (pgcount.Counted.problems)."""
    why = why or {}
    problems = []
    for table, rows in sorted(expected.items()):
        if table in why or table not in found:
            problems.append(f"{table}: {why.get(table, 'not restored')} ({rows} row(s) at backup time)")
        elif found[table] != rows:
            problems.append(f"{table}: {found[table]} row(s) restored, {rows} at backup time")
    return problems


def _count(found: dict[str, int], name: str) -> tuple[str, int | None]:
    """The restored count of a table named name or schema.name."""
    for table in (name, f"public.{name}"):
        if table in found:
            return table, found[table]
    return name, None


def expectation_problems(tables: dict, found: dict[str, int], previous_rows: dict[str, int]) -> list[str]:
    """Problems against the drill spec's per-table expectations; only_grows compares with the previous
    generation's backup-time count (a table that lost rows since is what an attacker's DELETE leaves)."""
    problems = []
    for name, want in sorted(tables.items()):
        table, rows = _count(found, name)
        if rows is None:
            problems.append(f"{name}: expected by the drill spec but not restored")
            continue
        if want.min_rows is not None and rows < want.min_rows:
            problems.append(f"{table}: {rows} row(s), the drill spec expects at least {want.min_rows}")
        if want.max_rows is not None and rows > want.max_rows:
            problems.append(f"{table}: {rows} row(s), the drill spec expects at most {want.max_rows}")
        before = previous_rows.get(table)
        if want.only_grows and before is not None and rows < before:
            problems.append(f"{table}: {rows} row(s), fewer than the {before} of the previous generation "
                            "(the drill spec says it only grows)")
    return problems


class Cluster:
    """A throw-away cluster under `base`, every process of it confined by `jail` (base writable)."""

    def __init__(self, base: Path, jail: Jail):
        self.base, self.jail = base, jail
        self.bin = bindir()
        require_server(self.bin)
        self.server = None
        self.started = False
        self.baseline: set[tuple[bool, str]] = set()  # settings before the load: ours only
        self.tuned, self.tuned_mb = 0, 0  # tune(): for how many loaders, how many MB
        self.initdb_nice = 0  # EarlyCluster: INITDB_NICE

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def sock(self) -> Path:
        return self.base / "sock"

    def _run(self, argv: list[str], what: str, timeout: float, check: bool = True) -> execute.Completed:
        done = self.jail.run(argv, timeout=timeout, cwd=str(self.base), writable=(self.base,))
        if check and (done.returncode != 0 or done.timed_out):
            why = "timed out" if done.timed_out else f"exited with {done.returncode}"
            raise Finding(f"{what} {why}: {done.stderr.strip()[-500:]}")
        return done

    def start(self, loaders: int | None = None) -> None:
        """initdb, the server, and the empty database the dump is loaded into (tuned for `loaders`
        concurrent loaders when given: tune())."""
        if len(str(self.sock)) > SOCKET_MAX:
            raise Finding(f"socket path {self.sock} is too long for PostgreSQL; use a shorter sandbox dir")
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-U", ADMIN, "--auth=trust", "--encoding=UTF8",
                  "--locale=C", "--no-sync"]
        _niced(lambda: self._run(initdb, "initdb", 300), self.initdb_nice)
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(CONF.format(sock=self.sock))
        self.started = True
        # the postmaster runs in the foreground of its own sandbox: pg_ctl would daemonise it into a
        # PID namespace that ends with pg_ctl
        self.server = self.jail.start([str(self.bin / "postgres"), "-D", str(self.data)],
                                      cwd=str(self.base), writable=(self.base,))
        if not self.server.wait_for(self._ready, 150):
            done = self.stop()
            raise Finding(f"postgres did not start: {done.stderr.strip()[-500:] if done else ''}")
        self._roles(loaders)

    def _roles(self, loaders: int | None = None) -> None:
        """ROLES_SQL, then DATABASE owned by LOADER; OWNER may create in it (schemas, public's objects);
        tuned for `loaders` when given (tune()); then the settings stored before any load (our own only).
        One psql: it runs while restic restores."""
        mb = maintenance_mb(loaders, self.jail.limits.memory) if loaders else 0
        tune = ("-c", self._tune_sql(mb)) if mb else ()
        lines = self.psql(*(arg for sql in ROLES_SQL for arg in ("-c", sql)),
                          "-c", f'CREATE DATABASE "{DATABASE}" OWNER {LOADER}', *tune,
                          "-c", f'GRANT CREATE ON DATABASE "{DATABASE}" TO {OWNER}',
                          "-c", f"\\connect {DATABASE}", "-c", f"GRANT CREATE ON SCHEMA public TO {OWNER}",
                          "-c", pgcount.settings_sql(LOADER), db="postgres").splitlines()
        self.baseline = _scoped(pgcount.settings(lines))
        if mb:
            self.tuned, self.tuned_mb = loaders, mb

    def tune(self, loaders: int) -> None:
        """Index builds of `loaders` concurrent sessions sort in memory (maintenance_mb()); once per count."""
        if self.tuned == loaders:
            return
        mb = maintenance_mb(loaders, self.jail.limits.memory)
        self.psql("-c", self._tune_sql(mb), db="postgres")
        self.baseline.discard((False, f"maintenance_work_mem={self.tuned_mb}MB"))
        self.baseline.add((False, f"maintenance_work_mem={mb}MB"))  # stored as given: ours, not the dump's
        self.tuned, self.tuned_mb = loaders, mb

    @staticmethod
    def _tune_sql(mb: int) -> str:
        return f"ALTER DATABASE \"{DATABASE}\" SET maintenance_work_mem = '{mb}MB'"

    def settings(self) -> set[tuple[bool, str]]:
        """(on a role?, 'name=value') of every setting stored for DATABASE (on it, or on a role in it) and
        on LOADER anywhere: pg_dump writes none without --create, so one the load adds is the dump's
        doing. Read as PROBE (pgcount.settings_sql: pg_catalog-qualified, search_path = pg_catalog)."""
        return _scoped(pgcount.settings(self.query(pgcount.settings_sql(LOADER))))

    def unset(self, planted: set[tuple[bool, str]]) -> list[str]:
        """A problem per setting the load left; those on the database are reset, so no session inherits
        them (a role's can only be LOADER's own)."""
        problems = []
        for on_role, setting in sorted(planted):
            name = setting.split("=", 1)[0]
            if not on_role:
                self.psql("-c", f'ALTER DATABASE "{DATABASE}" RESET {pgcount.quote_ident(name)}')
            shown = printable(setting)
            problems.append(f"the dump left a setting on the {'loading role' if on_role else 'database'}: "
                            f"{shown} (a pg_dump writes none; recovery would keep it for every later session)")
        return problems

    def _ready(self) -> bool:
        """The postmaster says it accepts connections (line 8 of postmaster.pid, as pg_ctl -w reads it)."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def stop(self) -> execute.Completed | None:
        """Kill the server's sandbox and with it every process of the cluster (the data is thrown away)."""
        if not self.started or self.server is None:
            return None
        self.started = False
        return self.server.stop()

    def load(self, dump: Path, jobs: int, timeout: float) -> None:
        """Load the dump into DATABASE (pg_restore -j jobs for an archive, else psql); a Finding names
        each statement that failed (a missing role or extension, a corrupt archive)."""
        stdin = pgload.load_input(dump)  # a plain dump: psql in restricted mode reads it filtered
        if stdin is not None:
            pgload.require_restrict(self.bin)
        argv = pgload.load_argv(self.bin, dump, database=DATABASE, host=str(self.sock), port=PORT,
                                user=LOADER, jobs=jobs)
        done = self.jail.run(argv, timeout=timeout, cwd=str(self.base), writable=(self.base,), stdin=stdin)
        if done.timed_out:
            raise Finding(f"loading the dump timed out after {timeout:.0f}s")
        if done.returncode != 0:
            raise Finding(f"{Path(argv[0]).name} failed to load the dump: "
                          + pgload.load_failure(done.stderr, dump))

    def psql(self, *args: str, db: str = DATABASE, timeout: float = 600) -> str:
        """psql as ADMIN (setting the cluster up; never for what the dump made)."""
        argv = [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d",
                self._conninfo(ADMIN, db, ADMIN_SESSION), *args]
        return self._run(argv, "psql", timeout).stdout.decode("utf-8", "replace")

    def _conninfo(self, user: str, db: str, options: str) -> str:
        """A conninfo for the cluster's socket, `options` sent at connection start (a database or role
        setting cannot override them)."""
        return " ".join(f"{k}='{_conninfo_value(str(v))}'" for k, v in (
            ("host", self.sock), ("port", PORT), ("user", user), ("dbname", db), ("options", options)))

    def query(self, sql: str, timeout: float = 600) -> list[str]:
        """The lines sql returns, run as PROBE in DATABASE with pgcount.SESSION set at connection start
        (no database or role setting overrides it); Finding with the server's error when it fails."""
        argv = [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d",
                self._conninfo(PROBE, DATABASE, pgcount.options()), "-c", sql]
        done = self._run(argv, "psql", timeout, check=False)
        if done.returncode != 0 or done.timed_out:
            error = "timed out" if done.timed_out else _server_error(done.stderr)
            raise Finding(error)
        return done.stdout.decode("utf-8", "replace").splitlines()


#: initdb of a cluster started while restic restores runs at this niceness: restic comes first on a busy
#: host, initdb takes what it leaves (the server and the load itself run at backupd's own priority).
INITDB_NICE = 10


def _niced(call, nice: int):
    """call() in a thread of its own at `nice` (Linux: a thread's niceness, inherited by what it starts);
    as is when nice is 0 or may not be raised."""
    if not nice:
        return call()
    out: dict = {}

    def body() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, min(os.getpriority(os.PRIO_PROCESS, 0) + nice, 19))
        except OSError:
            pass
        try:
            out["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            out["error"] = exc

    worker = threading.Thread(target=body, name="niced", daemon=True)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _scoped(found) -> set[tuple[bool, str]]:
    """(on a role?, 'name=value') from pgcount.settings()."""
    return {(role is not None, setting) for _, role, setting in found}


def _conninfo_value(value: str) -> str:
    """value escaped for a single-quoted libpq conninfo value."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _server_error(stderr: str) -> str:
    """psql's error message, without its `psql:...:` prefix; bounded."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    first = next((ln for ln in lines if "ERROR:" in ln), lines[0] if lines else "psql failed")
    return first.split("ERROR:", 1)[-1].strip()[:500]


def _base(sandbox: Path) -> Path:
    """The cluster's directory in the sandbox (its socket directory inside)."""
    base = sandbox / "pg"
    base.mkdir(mode=0o700, exist_ok=True)
    (base / "sock").mkdir(mode=0o700, exist_ok=True)
    return base


class EarlyCluster(threading.Thread):
    """A cluster started while restic still restores the dump. Its processes run in a jail without the
    restored tree (none of the dump reaches the server before the probe loads it). `ready()` -> the
    running Cluster, or the error that stopped it; `discard()` stops it if the probe did not."""

    def __init__(self, base: Path, jail: Jail, loaders: int | None = None):
        super().__init__(daemon=True)
        self.cluster = Cluster(base, replace(jail, readonly=()))
        self.cluster.initdb_nice = INITDB_NICE
        self.loaders = loaders  # tuned for them at the start (an archive's); the probe re-tunes a plain dump
        self.error: BackupdError | None = None
        self.offsets: EarlyOffsets | None = None  # set by prepare()
        self._up, self._released = threading.Event(), threading.Event()
        self.start()

    def run(self) -> None:
        try:
            self.cluster.start(self.loaders)
        except Exception as exc:  # noqa: BLE001 - handed to ready(); an OSError too (the conf not written)
            self.error = exc if isinstance(exc, BackupdError) else Finding(f"starting the cluster: {exc}")
            self.cluster.stop()
        finally:
            self._up.set()
        # a child is killed when the thread that spawned it ends (backupd.process.execute): this one outlives the server
        self._released.wait()

    def ready(self) -> Cluster:
        self._up.wait()
        if self.error is not None:
            raise self.error
        return self.cluster

    def discard(self) -> None:
        if self.offsets is not None:
            self.offsets.taken(Path("/"))  # stopped, whatever it found
        self._up.wait()
        self.cluster.stop()
        self._released.set()
        self.join()


class EarlyOffsets(threading.Thread):
    """Looks for the archive's data blocks while restic still writes it (pgarchive.Locator over the
    written prefix: up to the first hole, less a margin), so that only the tail is left to scan once the
    dump is restored and verified. Only reads: run() writes the offsets after the verification, and only
    when the file it scanned is the probe's dump. The restored tree is untrusted: regular files only,
    opened without following a link, never a FIFO."""

    POLL = 0.1
    LOOK_AT = 100  # entries of the restored tree looked at for an archive without the spec's `dump`

    def __init__(self, restore_dir: Path, dump: str | None):
        super().__init__(daemon=True)
        self.restore_dir, self.dump = restore_dir, dump
        self.path: Path | None = None
        self.locator = pgarchive.Locator()
        self.failed = False
        self._halt = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._halt.wait(self.POLL):
            try:
                if self.path is None:
                    self.path = self._candidate()
                if self.path is not None and self._scan(final=False) is not None:
                    return  # every block found
            except (OSError, ValueError, pgarchive.Unsupported):
                self.failed = True
                return

    def _candidate(self) -> Path | None:
        """The spec's dump, else the first regular file of the tree that starts as an archive."""
        if self.dump:
            return self.restore_dir / self.dump.lstrip("/")
        stack, seen = [self.restore_dir], 0
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > self.LOOK_AT:  # a tree, not a dump target: the probe scans after the restore
                        raise ValueError("too many files to look for the dump in")
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False) and _starts_as_archive(Path(entry.path)):
                        return Path(entry.path)
        return None

    def _scan(self, final: bool):
        if not Beneath(str(self.restore_dir))(str(self.path)):  # a planted directory link: not the dump
            raise ValueError(f"{self.path} is not inside the restored tree")
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                return None
            end = st.st_size if final else _written(fd, st.st_size)
            if end <= 0:
                return None
            with mmap.mmap(fd, st.st_size, prot=mmap.PROT_READ) as buf:
                return self.locator.advance(buf, end)
        finally:
            os.close(fd)

    def taken(self, dump: Path) -> pgarchive.Locator | None:
        """Stop looking; the Locator, when it scanned `dump` (resumed by pgarchive.add_offsets), else None."""
        self._halt.set()
        self.join()
        return self.located(dump)

    def located(self, dump: Path) -> pgarchive.Locator | None:
        """After taken(): the Locator when it scanned `dump`, else None."""
        if self.failed or self.path is None or os.path.realpath(self.path) != os.path.realpath(dump):
            return None
        return self.locator


#: Never scan the last MiB before a hole: its page may hold a blob restic is still writing.
MARGIN = 1 << 20


def _written(fd: int, size: int) -> int:
    """Where restic's written data from the start ends, less MARGIN: restic preallocates a file and
    fills it blob by blob, and the unwritten extents read as holes (ext4, xfs). 0 (wait for the whole
    file) on a file system that shows no holes, or while the file is still being filled."""
    try:
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
    except OSError:
        return 0
    return max(hole - MARGIN, 0) if hole < size else 0


def _starts_as_archive(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.pread(fd, len(CUSTOM_MAGIC), 0) == CUSTOM_MAGIC
    finally:
        os.close(fd)


def prepare(probe, sandbox: Path, jail: Jail) -> EarlyCluster:
    """Start the probe's throw-away cluster now, in the background (run() takes it over), and look for
    an archive's data blocks while restic writes it (EarlyOffsets; `sandbox/restore`: the drill's
    restore directory)."""
    early = EarlyCluster(_base(sandbox), jail, pgload.jobs_for(probe.jobs))
    early.offsets = EarlyOffsets(sandbox / "restore", probe.dump)
    return early


def _cluster(probe, ctx: ProbeContext, result: ProbeResult) -> Cluster:
    """The running cluster: the one prepared while restic restored, else one started now."""
    early = ctx.prepared.get(id(probe))  # the drill discards it when its probes are done
    result.details["server"] = "started while restic restored" if early else "started by the probe"
    if early is None:
        cluster = Cluster(_base(ctx.sandbox), ctx.confine())
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        return cluster
    cluster = early.ready()
    cluster.jail = ctx.confine()  # the loader reads the restored dump
    return cluster


def _dump_entry(probe, ctx: ProbeContext) -> dict:
    entries = [e for e in ctx.restored if e.get("type") in ("stdin", "file")]
    if probe.dump:
        entries = [e for e in entries if e["path"].lstrip("/") == probe.dump.lstrip("/")]
    if len(entries) != 1:
        raise Finding(f"cannot tell which restored file is the dump ({len(entries)} candidates); set 'dump'")
    return entries[0]


#: A relation the check names without a schema, which search_path = pg_catalog does not find.
_UNQUALIFIED = re.compile(r'^relation "([^".]+)" does not exist')


def _check(cluster: Cluster, check, ctx: ProbeContext) -> str | None:
    """None when the SQL check holds, else a problem. It runs as PROBE with search_path = pg_catalog."""
    try:
        value = cluster.query(check.sql)
    except Finding as exc:
        hint = " (checks run with search_path = pg_catalog: name tables with their schema, e.g. " \
            "public.containers)" if _UNQUALIFIED.match(str(exc)) else ""
        return f"{check.name}: {exc}{hint}"
    value = value[0].strip() if value else ""
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


class _OffsetsAdded(threading.Thread):
    """pgarchive.add_offsets on the verified dump in the sandbox, in a thread: an archive streamed to
    restic lacks its data offsets, and pg_restore -j would step over every row before a table to find
    it. `join()` -> how many offsets were written (0 when none was needed or the file was left alone)."""

    def __init__(self, dump: Path, located: pgarchive.Locator | None = None):
        super().__init__(daemon=True)
        self.dump, self.located, self.count = dump, located, 0
        self.start()

    def run(self) -> None:
        try:
            self.count = pgarchive.add_offsets(self.dump, self.located)
        except (OSError, ValueError):  # not writable, or vanished: pg_restore finds its tables the slow way
            self.count = 0

    def join(self, timeout: float | None = None) -> int:
        super().join(timeout)
        return self.count


def run(probe, ctx: ProbeContext, result: ProbeResult) -> None:
    entry = _dump_entry(probe, ctx)
    dump = ctx.regular(entry["path"])  # never a FIFO to hang on, nor a link to a host file to patch
    if dump is None:
        raise Finding(f"{entry['path']}: not restored as a regular file inside the sandbox")
    timings = result.details.setdefault("timings", {})  # per phase, for the drill projection
    clock = time.monotonic()
    jobs = pgload.jobs_for(probe.jobs)
    result.details.update(format="custom" if pgload.is_custom(dump) else "plain", jobs=jobs)
    loaders = jobs if result.details["format"] == "custom" else 1
    early = ctx.prepared.get(id(probe))
    located = early.offsets.taken(dump) if early is not None and early.offsets is not None else None
    result.details["data_offsets_scanned_early"] = located is not None
    offsets = _OffsetsAdded(dump, located) if loaders > 1 else None  # while the cluster starts
    ctx.grant(dump)
    cluster = _cluster(probe, ctx, result)
    try:
        cluster.tune(loaders)
        if offsets is not None:
            result.details["data_offsets_added"] = offsets.join()
        timings["start"], clock = round(time.monotonic() - clock, 3), time.monotonic()
        cluster.load(dump, loaders, probe.timeout.total_seconds())
        timings["load"], clock = round(time.monotonic() - clock, 3), time.monotonic()
        with ThreadPoolExecutor(1) as side:  # the settings check beside the counts (sessions fixed at start)
            planted = side.submit(lambda: cluster.unset(cluster.settings() - cluster.baseline))
            _compare_rows(probe, ctx, cluster, result)
            result.problems += planted.result()  # reset before any check runs
        checks = [c for c in probe.checks if c.enabled]
        for check in checks:
            problem = _check(cluster, check, ctx)
            if problem:
                result.problems.append(problem)
        result.details["checks"] = len(checks)
        timings["checks"] = round(time.monotonic() - clock, 3)
    finally:
        done = cluster.stop()
        if done is not None and "load" in timings:  # the post-load span (indexes, constraints) out of load
            timings["index"] = min(pglog.post_load_seconds(done.stderr), timings["load"])
            timings["load"] = round(timings["load"] - timings["index"], 3)


def _compare_rows(probe, ctx: ProbeContext, cluster: Cluster, result: ProbeResult) -> None:
    """Restored row counts against the backup-time facts and the drill spec's expectations."""
    expected = ctx.manifest.get("facts", {}).get("rows", {})
    if not probe.row_counts:
        return
    if not expected:
        result.problems.append("the backup-time facts hold no row counts to compare with")
        return
    # the spec's names too, unless they name a fact's table (their problems are that table's)
    extra = [t for t in probe.tables if t not in expected and f"public.{t}" not in expected]
    counted = pgcount.count_rows(cluster.query, sorted(expected) + sorted(extra))
    found = counted.rows
    result.details["rows"] = {t: n for t, n in found.items() if t in expected}
    result.problems += compare_rows(expected, found, counted.problems)
    result.problems += [f"{t}: {counted.problems[t]}" for t in sorted(extra) if t in counted.problems]
    if probe.tables:
        previous = (ctx.previous() or {}).get("facts", {}).get("rows") or {}
        wanted = {t: want for t, want in probe.tables.items()
                  if t not in counted.problems and f"public.{t}" not in counted.problems}
        result.problems += expectation_problems(wanted, found, previous)
