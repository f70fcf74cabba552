"""Local state in SQLite (WAL): one row per job run, for status and catch-up scheduling."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY,
  job TEXT NOT NULL,
  target TEXT NOT NULL,
  destination TEXT NOT NULL DEFAULT '',
  started REAL NOT NULL,
  finished REAL,
  status TEXT NOT NULL,
  snapshot_id TEXT,
  detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_by_target ON runs(job, target, started);
"""


class State:
    """Job history kept under state_dir/state.sqlite."""

    def __init__(self, state_dir: Path):
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "state.sqlite"
        self.path.touch(mode=0o600, exist_ok=True)  # SQLite gives its -wal/-shm files the same mode
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def record(self, job: str, target: str, destination: str, started: float, status: str,
               snapshot_id: str | None = None, detail: dict | None = None) -> None:
        """Append one finished run."""
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO runs(job, target, destination, started, finished, status, snapshot_id, detail)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (job, target, destination, started, time.time(), status, snapshot_id,
                 json.dumps(detail or {}, sort_keys=True)))

    def last(self, job: str, target: str, status: str | None = None) -> dict | None:
        """The newest run of job on target (optionally with that status)."""
        sql = "SELECT * FROM runs WHERE job=? AND target=?"
        args: list = [job, target]
        if status:
            sql += " AND status=?"
            args.append(status)
        with closing(self._connect()) as db:
            row = db.execute(sql + " ORDER BY started DESC LIMIT 1", args).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["detail"] = json.loads(out["detail"])
        return out

    def history(self, job: str, target: str, status: str = "ok", limit: int = 5) -> list[dict]:
        """Details of the newest `limit` runs with that status, oldest first."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT detail FROM runs WHERE job=? AND target=? AND status=?"
                              " ORDER BY started DESC LIMIT ?", (job, target, status, limit)).fetchall()
        return [json.loads(r["detail"]) for r in reversed(rows)]

    def snapshot_ids(self, job: str, target: str, statuses: tuple[str, ...]) -> set[str]:
        """Snapshot ids of the target's runs of job that ended with one of statuses."""
        marks = ",".join("?" * len(statuses))
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT snapshot_id FROM runs WHERE job=? AND target=? AND status IN ({marks})"
                              " AND snapshot_id IS NOT NULL", (job, target, *statuses)).fetchall()
        return {r["snapshot_id"] for r in rows}

    def runs(self, job: str, target: str, limit: int = 100) -> list[dict]:
        """The newest `limit` runs of job on target (any status), newest first, detail decoded."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT * FROM runs WHERE job=? AND target=? ORDER BY started DESC LIMIT ?",
                              (job, target, limit)).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    def count(self, job: str, target: str) -> int:
        """How many runs of job the target has."""
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM runs WHERE job=? AND target=?", (job, target)).fetchone()[0]
