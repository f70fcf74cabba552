"""The TOS source database of the database benches, generated once per size and kept in the bench's
work dir (`DIR/tos-source`): a 3M-container database takes minutes to generate, a drill seconds.

`source(workdir)` starts (or restarts) the kept cluster; `database(pg, containers, log)` returns the
database holding that many containers and its row counts, generating it only when its stamp
(`DIR/tos-source/tos_N.json`: seed and rows) is missing. Each size is its own database (`tos_N`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from demo.postgres import PostgresCluster
from demo.tos_data import create_tos_database, row_counts

SEED = 7


class KeptCluster(PostgresCluster):
    """A PostgresCluster whose data directory outlives the run: initdb only the first time; the socket
    and port of this run are appended to postgresql.conf (the last setting wins)."""

    def _prepare_base(self) -> None:
        super()._prepare_base()
        if self._private_base:
            raise RuntimeError(f"{self.workdir}: the postgres user cannot reach it or its socket path is too "
                               "long; use a short --workdir under /tmp")

    def start(self) -> None:
        if not (self.workdir / "pg" / "data" / "PG_VERSION").exists():
            return super().start()
        self._prepare_base()
        with open(self.datadir / "postgresql.conf", "a") as fh:
            fh.write(f"\nunix_socket_directories = '{self.host}'\nport = {self.port}\n")
        import atexit

        atexit.register(self.stop)
        self.started = True
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-w",
                   "-t", str(int(self.start_timeout)), "start"], timeout=self.start_timeout + 10)


def source(workdir: Path) -> KeptCluster:
    """The kept source cluster (a context manager: started on enter, stopped on exit)."""
    return KeptCluster(workdir / "tos-source", start_timeout=120)


def database(pg: KeptCluster, containers: int, log=print) -> tuple[str, dict[str, int], float]:
    """(database name, rows per table, seconds spent generating: 0 when reused) for `containers`."""
    name = f"tos_{containers}"
    stamp = pg.workdir / f"{name}.json"
    try:
        kept = json.loads(stamp.read_text())
    except (OSError, ValueError):
        kept = {}
    if kept.get("seed") == SEED and kept.get("containers") == containers:
        rows = row_counts(pg, name) if _exists(pg, name) else None
        if rows == kept.get("rows"):
            log(f"TOS database {name}: reused ({sum(rows.values())} rows)")
            return name, rows, 0.0
    stamp.unlink(missing_ok=True)
    t0 = time.monotonic()
    rows = create_tos_database(pg, name, containers=containers, seed=SEED)
    seconds = time.monotonic() - t0
    stamp.write_text(json.dumps({"seed": SEED, "containers": containers, "rows": rows}))
    log(f"TOS database {name}: {sum(rows.values())} rows generated in {seconds:.1f}s")
    return name, rows, seconds


def _exists(pg: KeptCluster, name: str) -> bool:
    return bool(pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))
