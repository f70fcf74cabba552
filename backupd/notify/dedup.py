"""Alert state in state.sqlite: which conditions are open (dedup). What is to be sent is in outbox.py."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from backupd.state.runs import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (key TEXT PRIMARY KEY, opened REAL NOT NULL);
"""


class AlertState:
    def __init__(self, state_dir: Path):
        self.path = State(state_dir).path
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def transition(self, key: str, firing: bool, now: float, on_change=None) -> bool:
        """Store the condition; True when it changed (opened or cleared). `on_change(db)` runs in the
        same transaction, so the change and what it queues are committed together or not at all."""
        with closing(self._connect()) as db, db:
            is_open = db.execute("SELECT 1 FROM alerts WHERE key=?", (key,)).fetchone() is not None
            if firing == is_open:
                return False
            if firing:
                db.execute("INSERT INTO alerts(key, opened) VALUES (?,?)", (key, now))
            else:
                db.execute("DELETE FROM alerts WHERE key=?", (key,))
            if on_change is not None:
                on_change(db)
            return True

    def open_keys(self) -> set[str]:
        with closing(self._connect()) as db:
            return {r[0] for r in db.execute("SELECT key FROM alerts")}
