"""`backupd restore --into-database`: recover a pg_dump target into an existing, empty PostgreSQL
database (pg_restore -j for a custom-format dump, psql for a plain one), after verifying the dump file
against its backup-time manifest, then compare every table's rows with the counts recorded with it."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from backupd import execute
from backupd.actions.common import repository
from backupd.actions.restore import drilled_snapshots, excluded
from backupd.actions.snapshot_choice import choose, data_snapshots, flagged, load_manifest, target_listing
from backupd.config import Config
from backupd.drill.phases import PhaseTimer
from backupd.drill.sandbox import private_dir
from backupd.engine import restore as restic_restore
from backupd.errors import ConfigError, DependencyError, Finding
from backupd.probes.postgres import bindir, compare_rows, row_count_sql
from backupd.sources import pgarchive, pgload
from backupd.verify import verify_tree

#: Relations in user schemas: a database holding any is not empty.
USER_RELATIONS_SQL = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\\_%'
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
    def parse(cls, spec: str, host=None, port=None, user=None) -> Database:
        """A database name (with --db-host/--db-port/--db-user) or a libpq DSN (`postgresql://...` or
        `dbname=... host=...`); the options fill what the DSN leaves out."""
        params: dict = {"dbname": spec}
        if "=" in spec or "://" in spec:
            from psycopg.conninfo import conninfo_to_dict

            try:
                params = conninfo_to_dict(spec)
            except Exception:  # noqa: BLE001 - psycopg raises ProgrammingError; never echo a password
                raise ConfigError("--into-database: not a valid database name or connection string") from None
            if not params.get("dbname"):
                raise ConfigError("--into-database: the connection string names no database (dbname)")
        try:
            port = int(params.get("port") or port) if (params.get("port") or port) else None
        except ValueError:
            raise ConfigError("--into-database: the port is not a number") from None
        return cls(dbname=str(params["dbname"]), host=params.get("host") or host, port=port,
                   user=params.get("user") or user, password=params.get("password"))

    def connect(self):
        import psycopg

        kwargs = {k: v for k, v in (("dbname", self.dbname), ("host", self.host), ("port", self.port),
                                    ("user", self.user), ("password", self.password)) if v is not None}
        try:
            return psycopg.connect(**kwargs, connect_timeout=30, autocommit=True, application_name="backupd")
        except psycopg.Error as exc:
            text = str(exc).strip()[:300]
            if self.password:
                text = text.replace(self.password, "[REDACTED]")
            raise DependencyError(f"cannot connect to database {self.dbname}: {text}") from None

    def environment(self) -> execute.Environment:
        return execute.Environment(secret={"PGPASSWORD": self.password} if self.password else {})


def _check_empty(db: Database, force: bool) -> None:
    with db.connect() as conn:
        relations = conn.execute(USER_RELATIONS_SQL).fetchone()[0]
    if relations and not force:
        raise ConfigError(f"database {db.dbname} is not empty ({relations} relation(s)); restore into an "
                          "empty database or pass --force")


def _count(db: Database, tables: list[str]) -> dict[str, int | None]:
    """Rows per table now in the database (None for a table that is not there)."""
    import psycopg

    found: dict[str, int | None] = {}
    with db.connect() as conn:
        for table in tables:
            try:
                found[table] = conn.execute(row_count_sql([table])).fetchone()[1]
            except psycopg.errors.UndefinedTable:
                found[table] = None
    return found


def _load(db: Database, dump: Path, jobs: int, timeout: float | None) -> None:
    argv = pgload.load_argv(bindir(), dump, database=db.dbname, host=db.host, port=db.port, user=db.user,
                            jobs=jobs)
    done = execute.run(argv, db.environment(), timeout=timeout)
    if done.timed_out:
        raise Finding(f"loading the dump into {db.dbname} timed out")
    if done.returncode != 0:
        raise Finding(f"{Path(argv[0]).name} failed to load the dump into {db.dbname}: "
                      + "; ".join(pgload.failures(done.stderr)))


def _dump_entry(doc: dict) -> dict:
    entries = [e for e in doc.get("files", []) if e.get("type") in ("stdin", "file")]
    if len(entries) != 1:
        raise Finding(f"the snapshot holds {len(entries)} files; --into-database needs one database dump")
    return entries[0]


def run(cfg: Config, policy_set, target_name: str, database: Database, *, snapshot_id=None, before=None,
        destination=None, force=False, jobs: int | None = None, timeout: float | None = None) -> dict:
    """Restore target's dump into database; returns the choice, verification, load and row comparison."""
    target = policy_set.target(target_name)
    if target.sources.dump is None:
        raise ConfigError(f"target {target_name} is not a database dump; restore it with --to DIR")
    dest_name = destination or target.destinations[0]
    if dest_name not in target.destinations:
        raise ConfigError(f"target {target_name} has no destination {dest_name!r}")
    _check_empty(database, force)
    timer, t0 = PhaseTimer(), time.monotonic()
    repo = repository(cfg, dest_name, policy_set.destinations[dest_name])
    with timer.phase("select"):
        listing = target_listing(repo, target.name, cfg.backup_hosts())  # one listing serves all three
        snaps = data_snapshots(repo, target.name, cfg.backup_hosts(), listing)
        bad = excluded(cfg, target.name, flagged(repo, snaps, target.name, cfg.backup_hosts(), listing))
        snap, why = choose(snaps, snapshot_id, before, bad, drilled_snapshots(cfg, target.name))
        doc = load_manifest(repo, snap, target.name, cfg.backup_hosts(), listing)
    entry = _dump_entry(doc)
    result = {"target": target.name, "destination": dest_name, "snapshot_id": snap.id,
              "snapshot_time": snap.time.isoformat(), "into_database": database.dbname, "explanation": why,
              "status": "failed", "problems": []}
    parent = private_dir(cfg.state_dir / "restore-db", 0o700) or cfg.state_dir
    with tempfile.TemporaryDirectory(prefix="dump-", dir=parent) as tmp:
        with timer.phase("restore"):
            restic_restore.restore(repo, snap.id, Path(tmp), includes=[entry["path"]])
        with timer.phase("verify"):
            check = verify_tree(Path(tmp), {**doc, "files": [entry]})
        result["verification"] = check.to_dict()
        if not check.ok:
            raise Finding(f"the restored dump differs from its backup-time manifest; nothing was loaded "
                          f"into {database.dbname}")
        dump = Path(tmp) / entry["path"].lstrip("/")
        result["format"] = "custom" if pgload.is_custom(dump) else "plain"
        result["jobs"] = pgload.jobs_for(jobs) if result["format"] == "custom" else 1
        with timer.phase("load"):
            if result["jobs"] > 1:  # a streamed archive lacks them: each pg_restore worker would step over every row
                result["data_offsets_added"] = pgarchive.add_offsets(dump)
            _load(database, dump, result["jobs"], timeout)
    expected = doc.get("facts", {}).get("rows") or {}
    with timer.phase("rows"):
        found = _count(database, sorted(expected))
    result.update(rows=found, problems=compare_rows(expected, found), phases=timer.phases,
                  duration=round(time.monotonic() - t0, 3))
    if not expected:
        result["notes"] = ["the backup-time facts hold no row counts: nothing to compare with"]
    result["status"] = "ok" if not result["problems"] else "failed"
    return result
