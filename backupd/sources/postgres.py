"""PostgreSQL: pg_dump argv and the row counts that describe exactly what a dump holds, so a drill
or a restore can compare a restored database with them.

Plain dumps: rows are counted in the dump's COPY blocks as it streams. Custom-format dumps are a
binary archive, so `PinnedSnapshot` opens a REPEATABLE READ transaction, exports its snapshot, counts
every table under it while pg_dump dumps that same snapshot (`--snapshot`), and keeps the transaction
open until the dump is done.
"""

from __future__ import annotations

import re
import threading

from backupd.errors import DependencyError, Finding
from backupd.sources.stream import StreamFacts

_COPY = re.compile(rb"^COPY ([^ ]+) .*FROM stdin;$")
#: The first bytes of a custom-format archive (pg_dump -Fc).
CUSTOM_MAGIC = b"PGDMP"

#: Tables whose data pg_dump writes (ordinary tables, partitions included; not those of extensions),
#: named as the plain dump's COPY lines name them.
TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def dump_argv(database: str, host: str | None = None, port: int | None = None,
              user: str | None = None, binary: str = "pg_dump", fmt: str = "plain",
              snapshot: str | None = None) -> list[str]:
    """pg_dump argv for a dump to stdout; never a password. `custom` is an uncompressed archive (restic
    compresses and deduplicates; pg_restore -j reads it in parallel); `snapshot` dumps an exported one."""
    argv = [binary, "--format=custom", "--compress=0"] if fmt == "custom" else [binary, "--format=plain"]
    argv += ["--no-password", "--quote-all-identifiers"]
    if snapshot:
        argv += ["--snapshot", snapshot]
    if host:
        argv += ["--host", str(host)]
    if port:
        argv += ["--port", str(port)]
    if user:
        argv += ["--username", str(user)]
    return argv + ["--dbname", database]


class DumpFacts(StreamFacts):
    """StreamFacts plus per-table row counts from the COPY blocks of a plain dump."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, int] = {}
        self._table: str | None = None
        self._tail = b""

    def __call__(self, chunk: bytes) -> None:
        super().__call__(chunk)
        data = self._tail + chunk
        lines = data.split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        if self._table is None:
            match = _COPY.match(line)
            if match:
                self._table = match.group(1).decode("utf-8", "replace").replace('"', "")
                self.rows[self._table] = 0
        elif line == b"\\.":
            self._table = None
        else:
            self.rows[self._table] += 1

    def facts(self) -> dict:
        return {**super().facts(), "rows": dict(sorted(self.rows.items()))}


def conninfo(database: str, host: str | None = None, port: int | None = None,
             user: str | None = None) -> dict:
    """libpq connection parameters (a password comes from ~/.pgpass or PGPASSWORD, never from here)."""
    params = {"dbname": database, "host": host, "port": port, "user": user, "connect_timeout": 30,
              "application_name": "backupd"}
    return {k: v for k, v in params.items() if v is not None}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: After a stopped dump, how long the count's thread gets to end once its query was cancelled.
CANCEL_WAIT_SECONDS = 1.0


class PinnedSnapshot:
    """`with PinnedSnapshot(params) as pin:` -> pin.snapshot (for pg_dump --snapshot); `pin.count()`
    starts counting every table in a thread, `pin.rows()` waits for the counts. The transaction (and so
    the snapshot) lives until the block ends: leave it only after pg_dump finished. Leaving it without
    `pin.rows()` (the dump failed or was stopped) cancels the counting on the server instead of waiting."""

    def __init__(self, params: dict):
        self.params = params
        self.snapshot: str | None = None
        self._conn = None
        self._rows: dict[str, int] = {}
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None
        self._wanted = False  # rows() was asked for

    def __enter__(self) -> PinnedSnapshot:
        import psycopg  # imported here: only custom-format dumps need a connection

        try:
            self._conn = psycopg.connect(**self.params, autocommit=True)  # BEGIN below is ours
        except psycopg.Error as exc:
            where = self.params.get("host") or "the default socket"
            raise DependencyError(f"cannot connect to database {self.params.get('dbname')} on {where}: "
                                  f"{str(exc).strip()[:300]}") from None
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.snapshot = self._conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        return self

    def count(self) -> None:
        """Count the rows of every dumped table under the snapshot, in a thread (overlaps the dump)."""
        self._thread = threading.Thread(target=self._count, daemon=True)
        self._thread.start()

    def _count(self) -> None:
        try:
            for schema, table in self._conn.execute(TABLES_SQL).fetchall():
                sql = f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}"
                self._rows[f"{schema}.{table}"] = self._conn.execute(sql).fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - reported by rows()
            self._error = exc

    def rows(self) -> dict[str, int]:
        """Row counts per schema.table at the snapshot; Finding when counting failed."""
        self._wanted = True
        if self._thread is None:
            self._count()
        else:
            self._thread.join()
        if self._error is not None:
            raise Finding(f"counting rows at the dump's snapshot failed: {str(self._error).strip()[:300]}")
        return dict(sorted(self._rows.items()))

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            if not self._wanted and self._thread.is_alive():
                self._cancel_count()
            self._thread.join(None if self._wanted else CANCEL_WAIT_SECONDS)
        if self._conn is not None:
            self._conn.close()  # ends the read-only transaction

    def _cancel_count(self) -> None:
        """Nobody will read the counts (a stopped dump, a SIGTERM): ask the server to cancel the count."""
        try:
            self._conn.cancel_safe(timeout=CANCEL_WAIT_SECONDS)
        except Exception:  # noqa: BLE001 - best effort: the connection is closed next anyway
            pass
