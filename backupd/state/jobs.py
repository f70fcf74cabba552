"""Persisted schedule: per job its last start, last outcome and next due time (SQLite, beside the run
history in state.sqlite), so a restart knows what it missed while it was down. The daemon writes it;
`backupd status` reads it (so it lives below both)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from backupd.state.runs import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS daemon_jobs (
  job TEXT PRIMARY KEY,
  target TEXT NOT NULL,
  frequency REAL NOT NULL,
  next_due REAL NOT NULL,
  last_started REAL,
  last_finished REAL,
  last_status TEXT
);
"""


def job_name(target_name: str, kind: str = "backup") -> str:
    """The job key of a target's backup (or of another kind of job: check, audit, drill-<kind>)."""
    return f"{kind}:{target_name}"


@dataclass
class Job:
    """One scheduled job: a target's backup, due every `frequency` seconds."""

    job: str
    target: str
    frequency: float
    next_due: float
    last_started: float | None = None
    last_finished: float | None = None
    last_status: str | None = None


class JobStore:
    """The daemon_jobs table in state_dir/state.sqlite."""

    def __init__(self, state_dir: Path):
        self.path = State(state_dir).path  # creates the directory and the runs table
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def all(self) -> dict[str, Job]:
        with closing(self._connect()) as db:
            return {r["job"]: Job(**dict(r)) for r in db.execute("SELECT * FROM daemon_jobs")}

    def save(self, job: Job) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO daemon_jobs(job, target, frequency, next_due, last_started,"
                " last_finished, last_status) VALUES (?,?,?,?,?,?,?)",
                (job.job, job.target, job.frequency, job.next_due, job.last_started,
                 job.last_finished, job.last_status))

    def started(self, job: Job, now: float | None = None) -> None:
        """Mark a start (next_due untouched: a run killed mid-way stays due after a restart)."""
        job.last_started, job.last_status = now or time.time(), "running"
        self.save(job)
