"""`backupd restore --into-database`: recover a pg_dump target into an existing, empty PostgreSQL
database (pg_restore -j for a custom-format dump, psql for a plain one), after verifying the dump file
against its backup-time manifest, then compare every table's rows with the counts recorded with it.

The dump is the attacker's (a dormant one decided what was backed up): psql loads it in restricted mode
(pgload), a role that could run programs or touch files on the database server is refused (unless the
operator accepts it), and a setting the load left on the database or role (search_path) is a problem.
Every session backupd opens on the database (before the load too: with --force it may hold anything)
starts with pgcount.SESSION (search_path = pg_catalog, read-only) and names everything pg_catalog.-
qualified, so what the dump planted (`public.unnest`, a `pg_roles` view, its search_path) cannot answer.
The password never reaches argv: a DSN carrying one is refused; it comes from a file or libpq's own."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from backupd.actions import alongside, media
from backupd.actions.restore import _guess as guess_point
from backupd.actions.restore import choose_point
from backupd.actions.snapshot_choice import load_manifest
from backupd.config.loader import Config
from backupd.drill.phases import PhaseTimer
from backupd.drill.sandbox import private_dir
from backupd.errors import ConfigError, DependencyError, Finding
from backupd.files.verify import verify_tree
from backupd.probes.postgres import EarlyOffsets, bindir, compare_rows
from backupd.process import execute
from backupd.sources import pgarchive, pgcount, pgload
from backupd.text import printable

#: What makes a role able to run programs or touch files on the server, itself or through a role it may
#: SET ROLE to (the dump can): superuser, CREATEROLE (grants itself the rest), the pg_*_server_* roles.
POWERS_SQL = """
SELECT pg_catalog.bool_or(r.rolsuper), pg_catalog.bool_or(r.rolcreaterole),
       pg_catalog.pg_has_role(CURRENT_USER, 'pg_execute_server_program', 'MEMBER'),
       pg_catalog.pg_has_role(CURRENT_USER, 'pg_write_server_files', 'MEMBER'),
       pg_catalog.pg_has_role(CURRENT_USER, 'pg_read_server_files', 'MEMBER'), CURRENT_USER
FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'MEMBER')
"""
POWERS = ("superuser (or a member of one)", "CREATEROLE (or a member of such a role)", "a member of pg_execute_server_program",
          "a member of pg_write_server_files", "a member of pg_read_server_files")

#: Relations in user schemas: a database holding any is not empty.
USER_RELATIONS_SQL = """
SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,S,f}'::pg_catalog."char"[])
  AND n.nspname OPERATOR(pg_catalog.<>) 'information_schema'
  AND n.nspname OPERATOR(pg_catalog.!~~) 'pg\\_%'
"""


@dataclass
class Database:
    """Where to restore: libpq parameters; the password (from a DSN) only ever in the environment."""

    dbname: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, spec: str, host=None, port=None, user=None, password_file: Path | None = None) -> Database:
        """A database name (with --db-host/--db-port/--db-user) or a libpq DSN (`postgresql://...` or
        `dbname=... host=...`); the options fill what the DSN leaves out. A DSN carrying a password is
        refused (it sits in backupd's argv); the password comes from password_file, else libpq finds
        it (PGPASSFILE, ~/.pgpass)."""
        params: dict = {"dbname": spec}
        if "=" in spec or "://" in spec:
            from psycopg.conninfo import conninfo_to_dict

            try:
                params = conninfo_to_dict(spec)
            except Exception:  # noqa: BLE001 - psycopg raises ProgrammingError; never echo a password
                raise ConfigError("--into-database: not a valid database name or connection string") from None
            if not params.get("dbname"):
                raise ConfigError("--into-database: the connection string names no database (dbname)")
            if params.get("password"):
                raise ConfigError("--into-database: the connection string carries a password, which any local "
                                  "user can read in backupd's command line; remove it and give it with "
                                  "--db-password-file FILE (mode 0600), PGPASSFILE or ~/.pgpass")
        try:
            port = int(params.get("port") or port) if (params.get("port") or port) else None
        except ValueError:
            raise ConfigError("--into-database: the port is not a number") from None
        return cls(dbname=str(params["dbname"]), host=params.get("host") or host, port=port,
                   user=params.get("user") or user, password=read_password(password_file))

    def connect(self):
        """A session on the database that starts with pgcount.SESSION (search_path = pg_catalog,
        read-only): no setting the dump left on the database or role overrides it."""
        import psycopg

        kwargs = {k: v for k, v in (("dbname", self.dbname), ("host", self.host), ("port", self.port),
                                    ("user", self.user), ("password", self.password)) if v is not None}
        try:
            return psycopg.connect(**kwargs, connect_timeout=30, autocommit=True, application_name="backupd",
                                   options=pgcount.options())
        except psycopg.Error as exc:
            raise DependencyError(f"cannot connect to database {printable(self.dbname, 100)}: "
                                  f"{self.scrub(exc)}") from None

    def scrub(self, exc: BaseException) -> str:
        """An error's text, bounded, printable, the password never in it."""
        text = str(exc).strip()
        if self.password:
            text = text.replace(self.password, "[REDACTED]")
        return printable(text, 300)

    def query(self, conn, sql: str, what: str) -> list[tuple]:
        """sql's rows; a lost server is a DependencyError, a failing query a Finding (never a traceback)."""
        import psycopg

        try:
            return conn.execute(sql).fetchall()
        except psycopg.OperationalError as exc:
            raise DependencyError(f"{what} in database {printable(self.dbname, 100)}: the server went away "
                                  f"or refused ({self.scrub(exc)})") from None
        except psycopg.Error as exc:
            raise Finding(f"{what} in database {printable(self.dbname, 100)} failed: {self.scrub(exc)}") from None

    def environment(self) -> execute.Environment:
        """The password only as PGPASSWORD; libpq's PGPASSFILE passes on (HOME, so ~/.pgpass, always does)."""
        plain = {"PGPASSFILE": os.environ["PGPASSFILE"]} if os.environ.get("PGPASSFILE") else {}
        return execute.Environment(plain=plain, secret={"PGPASSWORD": self.password} if self.password else {})


def read_password(path: Path | None) -> str | None:
    """The first line of a password file only its owner may read (0600), None without one."""
    if path is None:
        return None
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            raise ConfigError(f"--db-password-file {path}: readable by others (mode {mode & 0o777:o}); "
                              f"chmod 600 {path}")
        with open(path, encoding="utf-8") as fh:
            password = fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--db-password-file {path}: cannot read it ({type(exc).__name__})") from None
    if not password:
        raise ConfigError(f"--db-password-file {path}: empty")
    return password


def _check_role(db: Database, conn, allow_superuser: bool) -> list[str]:
    """Refuse (exit 2) a role whose load of a hostile dump could run programs on the server; with
    allow_superuser the warnings instead."""
    row = db.query(conn, POWERS_SQL, "checking the powers of the connecting role")[0]
    powers = [name for name, has in zip(POWERS, row[:5]) if has]
    if row[0]:
        powers = powers[:1]
    if not powers:
        return []
    what = (f"role {printable(row[5])} is {' and '.join(powers)}: a hostile dump it loads could run programs "
            "or touch files on the database server (COPY ... PROGRAM, untrusted languages, ALTER SYSTEM)")
    if not allow_superuser:
        raise ConfigError(f"{what}; connect as the owner of database {printable(db.dbname)}, a role without these "
                          "(e.g. --db-user tos), or pass --allow-superuser to accept the risk")
    return [f"{what}; loaded anyway (--allow-superuser)"]


def _settings(db: Database) -> set[tuple[str, str]]:
    """(scope, name=value) of every setting on the database and on the connecting role (here or
    everywhere): pgcount.settings_sql, the drill's query too."""
    with db.connect() as conn:
        rows = db.query(conn, pgcount.settings_sql(), "reading the database and role settings")
    found = set()
    for database, role, setting in pgcount.settings([str(row[0]) for row in rows]):
        scope = (f"database {database}" if role is None else f"role {role}" if database is None
                 else f"role {role} in database {database}")
        found.add((scope, setting))
    return found


def _added(before: set, after: set) -> list[str]:
    return [f"the load left a setting on {printable(scope, 100)}: {printable(setting)} (it outlives the load "
            "and steers every later session; remove it, e.g. ALTER DATABASE ... RESET name)"
            for scope, setting in sorted(after - before)]


def _preflight(db: Database, force: bool, allow_superuser: bool) -> list[str]:
    """Refuse a non-empty database (without force) and a powerful role; the warnings left."""
    with db.connect() as conn:
        warnings = _check_role(db, conn, allow_superuser)
        relations = db.query(conn, USER_RELATIONS_SQL, "looking for relations")[0][0]
    if relations and not force:
        raise ConfigError(f"database {db.dbname} is not empty ({relations} relation(s)); restore into an "
                          "empty database or pass --force")
    return warnings


def _count(db: Database, tables: list[str]) -> pgcount.Counted:
    """Rows per table now in the database, counted so the loaded dump cannot steer the count (pgcount:
    the catalog names the tables; search_path = pg_catalog and read-only sent at connection start)."""
    with db.connect() as conn:
        def query(sql: str) -> list[str]:
            return [str(row[0]) for row in db.query(conn, sql, "counting the rows")]

        return pgcount.count_rows(query, tables)


def _load(db: Database, dump: Path, jobs: int, timeout: float | None) -> str | None:
    """Load the dump (a plain one through restricted psql); why it failed, None when it did not."""
    try:
        stdin = pgload.load_input(dump)
        if stdin is not None:
            pgload.require_restrict(bindir())
        argv = pgload.load_argv(bindir(), dump, database=db.dbname, host=db.host, port=db.port, user=db.user,
                                jobs=jobs)
        done = execute.run(argv, db.environment(), timeout=timeout, stdin=stdin, max_output=1 << 16)
    except OSError as exc:  # reading the restored dump (psql's input) failed: the load was stopped
        return f"reading the restored dump to load it into {db.dbname} failed: " \
               f"{printable(exc.strerror or str(exc), 200)}; nothing more was loaded"
    if done.timed_out:
        return f"loading the dump into {db.dbname} timed out"
    if done.returncode != 0:
        return f"{Path(argv[0]).name} failed to load the dump into {db.dbname}: " \
               + pgload.load_failure(done.stderr, dump)
    return None


def _dump_entry(doc: dict) -> dict:
    entries = [e for e in doc.get("files", []) if e.get("type") in ("stdin", "file")]
    if len(entries) != 1:
        raise Finding(f"the snapshot holds {len(entries)} files; --into-database needs one database dump")
    return entries[0]


def run(cfg: Config, policy_set, target_name: str, database: Database, *, snapshot_id=None, before=None,
        destination=None, force=False, jobs: int | None = None, timeout: float | None = None,
        allow_superuser: bool = False) -> dict:
    """Restore target's dump into database; returns the choice, verification, load and row comparison."""
    target = policy_set.target(target_name)
    if target.sources.dump is None:
        raise ConfigError(f"target {target_name} is not a database dump; restore it with --to DIR")
    source = media.source_for(cfg, policy_set, target, destination)
    dest_name, repo = source.label, source.repo
    warnings = _preflight(database, force, allow_superuser)
    timer, t0 = PhaseTimer(), time.monotonic()
    hosts = cfg.backup_hosts()

    def choose():
        return choose_point(cfg, policy_set, repo, target.name, snapshot_id, before, source)  # as `restore`

    def read(chosen, early) -> dict:
        return load_manifest(repo, chosen.snap, target.name, hosts, chosen.listing, prefetched=early,
                             announcement=chosen.announcement)

    with timer.phase("select"):  # the likely snapshot from the history: its restore starts at once
        first_guess, holder = guess_point(cfg, target, source, snapshot_id, before)
        selection = None if first_guess else choose()
    parent = private_dir(cfg.state_dir / "restore-db", 0o700) or cfg.state_dir
    with tempfile.TemporaryDirectory(prefix="dump-", dir=parent) as tmp:
        # as `restore --to` (actions.alongside): the choice and the manifest read while restic restores,
        # the dump hashed as restic writes it, and an archive's data blocks looked for meanwhile
        with timer.phase("restore"):
            blocks = EarlyOffsets(Path(tmp), None)
            try:
                selection, doc, early, _first, _waited, confirmed = alongside.restore(
                    repo, Path(tmp), selection, choose, read, first_guess,
                    alongside.manifest_at(cfg.state_dir, target, first_guess, holder), None)
            finally:
                blocks.taken(Path("/"))
        snap, why = selection.snap, selection.explanation
        why = f"{source.note}; {why}" if source.note else why
        entry = _dump_entry(doc)
        result = {"target": target.name, "destination": dest_name, "snapshot_id": snap.id,
                  "snapshot_time": snap.time.isoformat(), "into_database": database.dbname, "explanation": why,
                  "status": "failed", "problems": [], "warnings": warnings}
        if confirmed is not None:
            result["guess"] = {"snapshot": first_guess, "confirmed": confirmed}
        dump = Path(tmp) / entry["path"].lstrip("/")
        # a wrong guess's scan was of another snapshot's file
        located = blocks.located(dump) if confirmed is not False else None
        with timer.phase("verify"):
            check = verify_tree(Path(tmp), {**doc, "files": [entry]}, hashed=early.matched)
        result["verification"] = check.to_dict()
        if not check.ok:
            raise Finding(f"the restored dump differs from its backup-time manifest; nothing was loaded "
                          f"into {database.dbname}")
        result["format"] = "custom" if pgload.is_custom(dump) else "plain"
        result["jobs"] = pgload.jobs_for(jobs) if result["format"] == "custom" else 1
        with timer.phase("load"):
            if result["jobs"] > 1:  # a streamed archive lacks them: each pg_restore worker would step over every row
                result["data_offsets_added"] = pgarchive.add_offsets(dump, located)
            settings = _settings(database)
            failed = _load(database, dump, result["jobs"], timeout)
            added = _added(settings, _settings(database))
        if failed:
            raise Finding("; ".join([failed, *added]))
    expected = doc.get("facts", {}).get("rows") or {}
    with timer.phase("rows"):
        counted = _count(database, sorted(expected))
    result.update(rows=counted.rows, problems=added + compare_rows(expected, counted.rows, counted.problems),
                  phases=timer.phases, duration=round(time.monotonic() - t0, 3))
    if not expected:
        result["notes"] = ["the backup-time facts hold no row counts: nothing to compare with"]
    result["status"] = "ok" if not result["problems"] else "failed"
    return result
